"""Personas: who may do what, in the console (admin), on the pages and through the API.

A persona is a Django group of that name. Its members get the group's model permissions (the console and the
pages check those) and, when they use the API with their browser session, the persona's API scopes. API
tokens are unchanged: a token is checked by its scopes only (no model permission, no owner rule), whoever
created it.

=========================  ==========================  ======================================================
Persona                    API scopes (sessions)       Model permissions (console and pages)
=========================  ==========================  ======================================================
End user                   predict                     none (not staff: no console, no staff pages)
Data scientist             read, predict, write        datasets, versions (upload), checks, ingest jobs;
                                                       feature sets, their versions, materialisations;
                                                       registered models view/add; model versions
                                                       view/add/change (import, re-measure gates; never
                                                       approve); training jobs view/add/change (cancel);
                                                       batch jobs view/add/change (cancel); drift and
                                                       quality reports view/add; the rest of monitoring,
                                                       aliases and traffic policies view
Product manager            read, predict, write,       registry: registered models view/add/change, model
                           admin                       versions view/change + approve_modelversion, aliases
                                                       view/add/change, alias history and training jobs
                                                       view; traffic policies view/add/change; alerts
                                                       view/change; everything else model-related view
                                                       (datasets, features, batch jobs, monitoring)
Operator                   read, predict, write        alerts view/change; drift and quality reports
                                                       view/add; SLO reports, monitored models view; batch,
                                                       ingest, training and materialisation jobs view;
                                                       webhook deliveries view/change, webhooks and outbox
                                                       view; traffic policies, registered models and
                                                       versions view
Auditor                    read                        view on every model of Faro's apps, the audit log
                                                       (governance.auditevent) included
Data protection officer    read                        datasets view/change (retention, tags); audit log
                                                       view; review cases view + review_decision; every
                                                       permission of the governance models whose name holds
                                                       "subjectrequest", "erasure" or "restriction"
=========================  ==========================  ======================================================

Superusers have every permission and every scope. A signed-in user with no persona has no API scope, except
that staff keep `read` (what the staff-only read pages already show them); `is_staff` alone grants no write.
The decision page needs nothing: it is open to anonymous visitors.

Changes from the first draft of this table, each because a persona could not otherwise do its job: the
operator has `write` instead of `admin` (acknowledging alerts and running drift and quality reports need
`write`; every `admin` operation is a release decision, which operators do not make); the data scientist may
also add drift and quality reports and re-measure a version's release gates (`registry.change_modelversion`,
which approves nothing: approval is `registry.approve_modelversion`).

**A session writes through the API only with the model permission the console uses for the same change**
(`SESSION_API_PERMISSIONS`, by URL name): the scope says how far a persona reaches through the API, the
permission which rows it may change, so the console, the pages and the API agree. An unsafe operation missing
from that table is refused to sessions (tokens are unaffected), so a new endpoint is closed until someone
decides who may use it.

**Owner rule** (`may_change_model`): changing a registered model's settings or its release state (approving or
rejecting a version, moving an alias: promotion and rollback, the traffic policy) is for the model's owner,
for superusers, and for product managers unless the owner is an active product manager (or superuser): an owned
model's product manager has it to themselves, while a model owned by the data scientist who trained it first,
or by nobody, is released by the product managers. It comes on top of the permission or scope of the operation:
an owner still needs them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS

from apps.governance.models import ApiToken

Scope = ApiToken.Scope
ALL_SCOPES = frozenset(Scope.values)

END_USER = "End user"
DATA_SCIENTIST = "Data scientist"
PRODUCT_MANAGER = "Product manager"
OPERATOR = "Operator"
AUDITOR = "Auditor"
DATA_PROTECTION_OFFICER = "Data protection officer"

# Faro's own apps: "everything" for the auditor.
FARO_APPS = ("core", "governance", "events", "data", "features", "registry", "predictions", "monitoring")
ACTIONS = {"v": "view", "a": "add", "c": "change", "d": "delete"}


@dataclass(frozen=True)
class Persona:
    """One row of the table above.

    `grants`: app label -> model name -> actions ("v" view, "a" add, "c" change, "d" delete); `extra`: other
    permissions as "app_label.codename"; `view_apps`: apps whose every model the persona may view;
    `models_named`: app label -> name fragments: every permission of that app's models whose name holds one.
    """

    name: str
    scopes: frozenset[str]
    grants: dict[str, dict[str, str]] = field(default_factory=dict)
    extra: tuple[str, ...] = ()
    view_apps: tuple[str, ...] = ()
    models_named: dict[str, tuple[str, ...]] = field(default_factory=dict)


PERSONAS: tuple[Persona, ...] = (
    Persona(name=END_USER, scopes=frozenset({Scope.PREDICT})),
    Persona(
        name=DATA_SCIENTIST,
        scopes=frozenset({Scope.READ, Scope.PREDICT, Scope.WRITE}),
        grants={
            "data": {"dataset": "vac", "datasetversion": "va", "datasetcheck": "vacd", "ingestjob": "va"},
            "features": {
                "featureset": "vac",
                "featuresetversion": "va",
                "materialisationjob": "va",
                "onlinefeaturerow": "v",
            },
            "registry": {
                "registeredmodel": "va",
                "modelversion": "vac",
                "modelalias": "v",
                "aliaschange": "v",
                "trainingjob": "vac",
            },
            "predictions": {"batchscoringjob": "vac", "trafficpolicy": "v"},
            "monitoring": {
                "driftreport": "va",
                "qualityreport": "va",
                "sloreport": "v",
                "alert": "v",
                "monitoredmodel": "v",
            },
        },
    ),
    Persona(
        name=PRODUCT_MANAGER,
        scopes=frozenset({Scope.READ, Scope.PREDICT, Scope.WRITE, Scope.ADMIN}),
        grants={
            "data": {"dataset": "v", "datasetversion": "v", "datasetcheck": "v", "ingestjob": "v"},
            "features": {
                "featureset": "v",
                "featuresetversion": "v",
                "materialisationjob": "v",
                "onlinefeaturerow": "v",
            },
            "registry": {
                "registeredmodel": "vac",
                "modelversion": "vc",
                "modelalias": "vac",
                "aliaschange": "v",
                "trainingjob": "v",
            },
            "predictions": {"trafficpolicy": "vac", "batchscoringjob": "v"},
            "monitoring": {
                "alert": "vc",
                "driftreport": "v",
                "qualityreport": "v",
                "sloreport": "v",
                "monitoredmodel": "v",
            },
        },
        extra=("registry.approve_modelversion",),
    ),
    Persona(
        name=OPERATOR,
        scopes=frozenset({Scope.READ, Scope.PREDICT, Scope.WRITE}),
        grants={
            "monitoring": {
                "alert": "vc",
                "driftreport": "va",
                "qualityreport": "va",
                "sloreport": "v",
                "monitoredmodel": "v",
            },
            "predictions": {"batchscoringjob": "v", "trafficpolicy": "v"},
            "data": {"ingestjob": "v"},
            "features": {"materialisationjob": "v"},
            "registry": {"trainingjob": "v", "registeredmodel": "v", "modelversion": "v"},
            "events": {"webhookdelivery": "vc", "webhook": "v", "outboxevent": "v"},
        },
    ),
    Persona(name=AUDITOR, scopes=frozenset({Scope.READ}), view_apps=FARO_APPS),
    Persona(
        name=DATA_PROTECTION_OFFICER,
        scopes=frozenset({Scope.READ}),
        grants={
            "data": {"dataset": "vc"},
            "governance": {"auditevent": "v", "reviewrequest": "v"},
        },
        extra=("governance.review_decision",),
        models_named={"governance": ("subjectrequest", "erasure", "restriction")},
    ),
)
PERSONAS_BY_NAME = {persona.name: persona for persona in PERSONAS}

# The model permission a browser session needs, besides the scope, for each unsafe API operation: URL name ->
# method -> "app_label.codename", or None for operations that are the scope's alone (scoring, feedback).
SESSION_API_PERMISSIONS: dict[str, dict[str, str | None]] = {
    "api:data:dataset-list": {"POST": "data.add_dataset"},
    "api:data:dataset-detail": {"PATCH": "data.change_dataset"},
    "api:data:version-list": {"POST": "data.add_datasetversion"},
    "api:data:check-list": {"POST": "data.add_datasetcheck"},
    "api:data:check-detail": {"PATCH": "data.change_datasetcheck", "DELETE": "data.delete_datasetcheck"},
    "api:features:feature-set-list": {"POST": "features.add_featureset"},
    "api:features:version-list": {"POST": "features.add_featuresetversion"},
    "api:online_store:materialisation-list": {"POST": "features.add_materialisationjob"},
    "api:registry:model-list": {"POST": "registry.add_registeredmodel"},
    "api:registry:model-detail": {"PATCH": "registry.change_registeredmodel"},
    "api:registry:approve": {"POST": "registry.approve_modelversion"},
    "api:registry:reject": {"POST": "registry.approve_modelversion"},
    "api:registry:gates": {"POST": "registry.change_modelversion"},
    "api:registry:version-import": {"POST": "registry.add_modelversion"},
    "api:registry:alias": {"PUT": "registry.change_modelalias"},
    "api:registry:alias-rollback": {"POST": "registry.change_modelalias"},
    "api:registry:training-job-list": {"POST": "registry.add_trainingjob"},
    "api:registry:training-job-cancel": {"POST": "registry.change_trainingjob"},
    "api:predictions:predict": {"POST": None},
    "api:predictions:invocations": {"POST": None},
    "api:predictions:feedback": {"POST": None},
    "api:predictions:batch-job-list": {"POST": "predictions.add_batchscoringjob"},
    "api:predictions:batch-job-cancel": {"POST": "predictions.change_batchscoringjob"},
    "api:predictions:traffic-policy": {"PATCH": "predictions.change_trafficpolicy"},
    "api:monitoring:drift-reports": {"POST": "monitoring.add_driftreport"},
    "api:monitoring:quality-reports": {"POST": "monitoring.add_qualityreport"},
    "api:monitoring:alert": {"POST": "monitoring.change_alert"},
    "v2:infer": {"POST": None},
    "v2:version-infer": {"POST": None},
}
UNLISTED = object()


def session_api_permission(view_name: str, method: str) -> Any:
    """The model permission a session needs for an unsafe API operation, None if the scope suffices, or
    UNLISTED when the operation is not in the table (refused to sessions)."""
    return SESSION_API_PERMISSIONS.get(view_name, {}).get(method.upper(), UNLISTED)


# -- who is who --------------------------------------------------------------------------------------------


def _signed_in(user: Any) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def persona_names(user: Any) -> frozenset[str]:
    """The personas `user` belongs to (group names in the table), read once per user object."""
    if not _signed_in(user) or not hasattr(user, "groups"):
        return frozenset()
    cached = getattr(user, "_faro_personas", None)
    if cached is None:
        cached = frozenset(user.groups.filter(name__in=PERSONAS_BY_NAME).values_list("name", flat=True))
        user._faro_personas = cached
    return cached


def has_persona(user: Any, name: str) -> bool:
    return name in persona_names(user)


def session_scopes(user: Any) -> frozenset[str]:
    """The API scopes of a signed-in user: all for a superuser, else the union of their personas' scopes, plus
    `read` for staff (who see the staff-only read pages anyway). Inactive and anonymous users have none."""
    if not _signed_in(user):
        return frozenset()
    if getattr(user, "is_superuser", False):
        return ALL_SCOPES
    scopes: set[str] = set()
    for name in persona_names(user):
        scopes |= PERSONAS_BY_NAME[name].scopes
    if getattr(user, "is_staff", False):
        scopes.add(Scope.READ)
    return frozenset(scopes)


def may_change_model(user: Any, registered_model: Any) -> bool:
    """The owner rule for changing a registered model or its release state (see the module docstring).

    `registered_model` is duck-typed (`owner_id`, `owner`): governance sits below the registry. This is the
    object rule only; the caller checks the operation's permission or scope as well.
    """
    if not _signed_in(user) or getattr(user, "pk", None) is None:
        return False
    if getattr(user, "is_superuser", False):
        return True
    owner_id = getattr(registered_model, "owner_id", None)
    if owner_id is not None:
        if owner_id == user.pk:
            return True
        owner = getattr(registered_model, "owner", None)
        if owner is not None and owner.is_active and (owner.is_superuser or has_persona(owner, PRODUCT_MANAGER)):
            return False
    return has_persona(user, PRODUCT_MANAGER)


def model_change_refusal(registered_model: Any) -> str:
    """Why the owner rule refused, in the same words on every edge."""
    if getattr(registered_model, "owner_id", None) is not None:
        return (
            f"{registered_model} is owned by a product manager: only they or a superuser may change it or its releases."
        )
    return f"{registered_model} has no owner: only a product manager or a superuser may change it or its releases."


# -- the groups --------------------------------------------------------------------------------------------


def _persona_permission_ids(persona: Persona, permissions: Iterable[Any]) -> set[int]:
    """The ids of the persona's permissions among `permissions` (rows with their content type)."""
    by_key = {(p.content_type.app_label, p.codename): p for p in permissions}
    wanted: set[int] = set()
    missing: list[str] = []
    for app_label, models in persona.grants.items():
        for model, actions in models.items():
            for letter in actions:
                key = (app_label, f"{ACTIONS[letter]}_{model}")
                if key in by_key:
                    wanted.add(by_key[key].pk)
                else:
                    missing.append(".".join(key))
    for name in persona.extra:
        key = tuple(name.split(".", 1))
        if key in by_key:
            wanted.add(by_key[key].pk)
        else:
            missing.append(name)
    if missing:
        raise LookupError(f"The persona {persona.name!r} names unknown permissions: {', '.join(sorted(missing))}.")
    for (app_label, codename), permission in by_key.items():
        model = permission.content_type.model
        if app_label in persona.view_apps and codename == f"view_{model}":
            wanted.add(permission.pk)
        if any(fragment in model for fragment in persona.models_named.get(app_label, ())):
            wanted.add(permission.pk)
    return wanted


def roles_sync(*, using: str = DEFAULT_DB_ALIAS) -> list[str]:
    """Create or update one group per persona with exactly the table's permissions. Idempotent: a second run
    changes nothing and returns no lines; otherwise one line per group created, permission added or removed
    (a permission added to a persona's group by hand is removed: the table is the reference)."""
    from django.apps import apps
    from django.contrib.auth.management import create_permissions
    from django.contrib.auth.models import Group, Permission

    for app_config in apps.get_app_configs():  # other apps' permissions may not exist yet during migrate
        create_permissions(app_config, verbosity=0, using=using)
    permissions = list(Permission.objects.using(using).select_related("content_type"))
    label = {p.pk: f"{p.content_type.app_label}.{p.codename}" for p in permissions}
    changes: list[str] = []
    for persona in PERSONAS:
        wanted = _persona_permission_ids(persona, permissions)
        group, created = Group.objects.using(using).get_or_create(name=persona.name)
        if created:
            changes.append(f"{persona.name}: group created")
        current = set(group.permissions.values_list("pk", flat=True))
        added, removed = wanted - current, current - wanted
        if added:
            group.permissions.add(*added)
        if removed:
            group.permissions.remove(*removed)
        changes += [f"{persona.name}: + {name}" for name in sorted(label[pk] for pk in added)]
        changes += [f"{persona.name}: - {name}" for name in sorted(label[pk] for pk in removed)]
    return changes


def _sync_after_migrate(sender: Any, using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    roles_sync(using=using)


def connect() -> None:
    """Keep the persona groups in step with the table after every `migrate` (and test database flush)."""
    from django.apps import apps
    from django.db.models.signals import post_migrate

    post_migrate.connect(
        _sync_after_migrate, sender=apps.get_app_config("governance"), dispatch_uid="governance.roles_sync"
    )
