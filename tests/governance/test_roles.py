"""Personas: the groups and their permissions, the API scopes of sessions, and the owner rule for changing a
registered model or its releases, alike in the API, on the pages and in the console."""

from io import StringIO

import pytest
from django.apps import apps
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.urls import reverse

from apps.data.models import Dataset
from apps.governance import roles
from apps.governance.models import AuditEvent, AuditHead
from apps.predictions.models import PredictionRecord, TrafficPolicy
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel
from tests.conftest import join_persona, train_version, valid_row

FARO_APPS = {"core", "governance", "events", "data", "features", "registry", "predictions", "monitoring"}


def _codenames(persona: str) -> set[str]:
    group = Group.objects.get(name=persona)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def _state() -> tuple:
    """What a refused change must leave as it was."""
    return (
        list(AuditHead.objects.values_list("seq", "hash")),
        list(ModelAlias.objects.order_by("pk").values_list("name", "version_id")),
        list(ModelVersion.objects.order_by("pk").values_list("status", "decided_by_id")),
        list(RegisteredModel.objects.order_by("pk").values_list("description", "owner_id")),
        list(TrafficPolicy.objects.order_by("pk").values_list("revision", "window_minutes")),
        AliasChange.objects.count(),
    )


def _person(username: str, *personas: str, **flags):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=flags.pop("is_staff", True), **flags)
    for persona in personas:
        join_persona(user, persona)
    return get_user_model().objects.get(pk=user.pk)  # no cached personas


# -- the groups ----------------------------------------------------------------------------------------------


def test_migrate_made_every_persona_group_and_the_sync_is_idempotent(db):
    assert set(Group.objects.values_list("name", flat=True)) >= set(roles.PERSONAS_BY_NAME)
    assert roles.roles_sync() == []
    assert roles.roles_sync() == []


def test_the_sync_repairs_a_group_and_says_what_it_changed(db):
    analyst = Group.objects.get(name="Data scientist")
    analyst.permissions.remove(Permission.objects.get(codename="add_trainingjob"))
    analyst.permissions.add(Permission.objects.get(codename="approve_modelversion"))
    Group.objects.filter(name="Auditor").delete()
    view_audit = Permission.objects.get(codename="view_auditevent")

    out = StringIO()
    call_command("roles_sync", stdout=out)
    lines = out.getvalue().splitlines()
    auditor_lines = [line for line in lines if line.startswith("Auditor: ")]
    assert auditor_lines[0] == "Auditor: group created"
    assert "Auditor: + governance.view_auditevent" in auditor_lines
    assert [line for line in lines if line.startswith("Data scientist: ")] == [
        "Data scientist: + registry.add_trainingjob",
        "Data scientist: - registry.approve_modelversion",
    ]
    assert lines[-1] == f"{len(lines) - 1} change(s) to 6 persona group(s)."
    assert view_audit in Group.objects.get(name="Auditor").permissions.all()

    out = StringIO()
    call_command("roles_sync", stdout=out)
    assert out.getvalue() == "The 6 persona groups already match the table; nothing changed.\n"


def test_each_persona_has_exactly_its_permissions(db):
    assert _codenames("End user") == set()
    assert _codenames("Data scientist") == {
        *(f"data.{a}_dataset" for a in ("view", "add", "change")),
        *(f"data.{a}_datasetversion" for a in ("view", "add")),
        *(f"data.{a}_datasetcheck" for a in ("view", "add", "change", "delete")),
        *(f"data.{a}_ingestjob" for a in ("view", "add")),
        *(f"features.{a}_featureset" for a in ("view", "add", "change")),
        *(f"features.{a}_featuresetversion" for a in ("view", "add")),
        *(f"features.{a}_materialisationjob" for a in ("view", "add")),
        "features.view_onlinefeaturerow",
        *(f"registry.{a}_registeredmodel" for a in ("view", "add")),
        *(f"registry.{a}_modelversion" for a in ("view", "add", "change")),
        "registry.view_modelalias",
        "registry.view_aliaschange",
        *(f"registry.{a}_trainingjob" for a in ("view", "add", "change")),
        *(f"predictions.{a}_batchscoringjob" for a in ("view", "add", "change")),
        "predictions.view_trafficpolicy",
        *(f"monitoring.{a}_driftreport" for a in ("view", "add")),
        *(f"monitoring.{a}_qualityreport" for a in ("view", "add")),
        "monitoring.view_sloreport",
        "monitoring.view_alert",
        "monitoring.view_monitoredmodel",
    }
    assert _codenames("Product manager") == {
        *(f"data.view_{m}" for m in ("dataset", "datasetversion", "datasetcheck", "ingestjob")),
        *(f"features.view_{m}" for m in ("featureset", "featuresetversion", "materialisationjob", "onlinefeaturerow")),
        *(f"registry.{a}_registeredmodel" for a in ("view", "add", "change")),
        *(f"registry.{a}_modelversion" for a in ("view", "change")),
        "registry.approve_modelversion",
        *(f"registry.{a}_modelalias" for a in ("view", "add", "change")),
        "registry.view_aliaschange",
        "registry.view_trainingjob",
        *(f"predictions.{a}_trafficpolicy" for a in ("view", "add", "change")),
        "predictions.view_batchscoringjob",
        *(f"monitoring.{a}_alert" for a in ("view", "change")),
        *(f"monitoring.view_{m}" for m in ("driftreport", "qualityreport", "sloreport", "monitoredmodel")),
    }
    assert _codenames("Operator") == {
        *(f"monitoring.{a}_alert" for a in ("view", "change")),
        *(f"monitoring.{a}_driftreport" for a in ("view", "add")),
        *(f"monitoring.{a}_qualityreport" for a in ("view", "add")),
        "monitoring.view_sloreport",
        "monitoring.view_monitoredmodel",
        "predictions.view_batchscoringjob",
        "predictions.view_trafficpolicy",
        "data.view_ingestjob",
        "features.view_materialisationjob",
        "registry.view_trainingjob",
        "registry.view_registeredmodel",
        "registry.view_modelversion",
        *(f"events.{a}_webhookdelivery" for a in ("view", "change")),
        "events.view_webhook",
        "events.view_outboxevent",
    }
    every_view = {
        f"{model._meta.app_label}.view_{model._meta.model_name}"
        for model in apps.get_models()
        if model._meta.app_label in FARO_APPS
    }
    assert "governance.view_auditevent" in every_view
    assert _codenames("Auditor") == every_view
    privacy_models = [
        model
        for model in apps.get_app_config("governance").get_models()
        if any(part in model._meta.model_name for part in ("subjectrequest", "erasure", "restriction"))
    ]
    privacy = {
        f"governance.{codename}"
        for codename in Permission.objects.filter(
            content_type__app_label="governance", content_type__model__in=[m._meta.model_name for m in privacy_models]
        ).values_list("codename", flat=True)
    }
    assert _codenames("Data protection officer") == {
        "data.view_dataset",
        "data.change_dataset",
        "governance.view_auditevent",
        "governance.view_reviewrequest",
        "governance.review_decision",
        *privacy,
    }


def test_a_session_has_its_personas_scopes(db):
    superuser = get_user_model().objects.create_superuser("root", password="pw")
    assert roles.session_scopes(superuser) == {"predict", "read", "write", "admin"}
    assert roles.session_scopes(_person("both", "Data scientist", "Auditor")) == {"read", "predict", "write"}
    assert roles.session_scopes(_person("customer", "End user", is_staff=False)) == {"predict"}
    assert roles.session_scopes(_person("pm", "Product manager")) == {"read", "predict", "write", "admin"}
    assert roles.session_scopes(_person("ops", "Operator")) == {"read", "predict", "write"}
    assert roles.session_scopes(_person("dpo", "Data protection officer")) == {"read"}
    assert roles.session_scopes(_person("staff")) == {"read"}  # staff alone: what the staff pages show, no write
    assert roles.session_scopes(_person("nobody", is_staff=False)) == set()
    assert roles.session_scopes(_person("gone", "Product manager", is_active=False)) == set()
    assert roles.session_scopes(None) == set()


def test_every_unsafe_api_operation_names_an_existing_permission_for_sessions(db):
    for view_name, methods in roles.SESSION_API_PERMISSIONS.items():
        for method, permission in methods.items():
            assert method in ("POST", "PUT", "PATCH", "DELETE"), view_name
            if permission is not None:
                app_label, codename = permission.split(".")
                assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists()
    assert roles.session_api_permission("api:data:dataset-list", "post") == "data.add_dataset"
    assert roles.session_api_permission("api:predictions:predict", "POST") is None
    assert roles.session_api_permission("api:governance:anything-new", "POST") is roles.UNLISTED


# -- the owner rule ------------------------------------------------------------------------------------------


@pytest.fixture
def people(db):
    return {
        "owner": _person("owner-pm", "Product manager"),
        "other_pm": _person("other-pm", "Product manager"),
        "ds": _person("scientist", "Data scientist"),
        "root": get_user_model().objects.create_superuser("root", password="pw"),
    }


@pytest.fixture
def owned(champion, people):
    """The champion's model, owned by one product manager; v2 pending, trained by someone else."""
    model = champion.registered_model
    model.owner = people["owner"]
    model.save()
    pending = train_version(model, champion.dataset_version, max_depth=2)
    return {"model": model, "champion": champion, "pending": pending}


def test_the_owner_rule(people, owned):
    model = owned["model"]
    assert roles.may_change_model(people["owner"], model)
    assert roles.may_change_model(people["root"], model)
    assert not roles.may_change_model(people["other_pm"], model)
    assert not roles.may_change_model(people["ds"], model)
    assert not roles.may_change_model(None, model)
    unowned = RegisteredModel(name="unowned")
    assert roles.may_change_model(people["other_pm"], unowned)
    assert roles.may_change_model(people["root"], unowned)
    assert not roles.may_change_model(people["ds"], unowned)
    people["owner"].is_active = False  # an owner who left: the model is the product managers' again
    people["owner"].save()
    assert roles.may_change_model(people["other_pm"], RegisteredModel.objects.get(pk=model.pk))
    scientists = RegisteredModel(name="scientists", owner=people["ds"])  # made by a data scientist's training
    assert roles.may_change_model(people["ds"], scientists)
    assert roles.may_change_model(people["other_pm"], scientists)  # the product managers release it


def _api_calls(owned) -> list[tuple[str, str, dict | None, str]]:
    """(method, path, body, what succeeds) for every release change of the model."""
    return [
        ("PATCH", "/api/v1/models/loan-risk", {"description": "Owned."}, "model"),
        ("PUT", "/api/v1/models/loan-risk/aliases/challenger", {"version": 1}, "alias"),
        ("PATCH", "/api/v1/models/loan-risk/traffic", {"window_minutes": 30}, "traffic"),
        ("POST", f"/api/v1/models/loan-risk/versions/{owned['pending'].version}/approve", {"note": "Fine."}, "approve"),
        ("POST", "/api/v1/models/loan-risk/aliases/champion/rollback", None, "rollback"),
    ]


def test_the_api_refuses_release_changes_to_anyone_but_the_owner(api, people, owned):
    for user in (people["other_pm"], people["ds"]):
        api.force_login(user)
        before = _state()
        for method, path, body, _ in _api_calls(owned):
            response = api.call(method, path, body=body)
            assert response.status_code == 403, (user, path)
            assert set(response.json()) == {"message", "extra"}
        assert _state() == before
    api.force_login(people["other_pm"])
    response = api.call("PATCH", "/api/v1/models/loan-risk", body={"description": "Owned."})
    assert response.json()["message"] == (
        "loan-risk is owned by a product manager: only they or a superuser may change it or its releases."
    )


@pytest.mark.parametrize("who", ["owner", "root"])
def test_the_owner_and_a_superuser_make_release_changes_through_the_api(api, people, owned, who):
    api.force_login(people[who])
    statuses = [api.call(method, path, body=body).status_code for method, path, body, _ in _api_calls(owned)]
    assert statuses == [200, 200, 200, 200, 409]  # nothing to roll back to: refused for the state, not the person
    model = RegisteredModel.objects.get(pk=owned["model"].pk)
    assert model.description == "Owned."
    assert ModelAlias.objects.get(name="challenger").version == owned["champion"]
    assert TrafficPolicy.objects.get(registered_model=model).window_minutes == 30
    assert ModelVersion.objects.get(pk=owned["pending"].pk).status == "approved"


def test_tokens_are_checked_by_their_scope_only(api, tokens, people, owned):
    before = _state()
    response = api.call("PUT", "/api/v1/models/loan-risk/aliases/challenger", tokens["write"], body={"version": 1})
    assert response.status_code == 403
    assert _state() == before
    response = api.call("PUT", "/api/v1/models/loan-risk/aliases/challenger", tokens["admin"], body={"version": 1})
    assert response.status_code == 200
    assert ModelAlias.objects.get(name="challenger").version == owned["champion"]


def test_a_product_manager_changes_a_model_without_owner(api, people, champion):
    api.force_login(people["other_pm"])
    response = api.call("PUT", "/api/v1/models/loan-risk/aliases/challenger", body={"version": 1})
    assert response.status_code == 200
    api.force_login(people["ds"])  # a data scientist has neither the scope nor the permission
    before = _state()
    response = api.call("PUT", "/api/v1/models/loan-risk/aliases/shadow-a", body={"version": 1})
    assert (response.status_code, response.json()["message"]) == (403, "Your roles do not include the 'admin' scope.")
    assert _state() == before


def test_a_session_writes_only_with_the_consoles_permission(api, people, dataset_version):
    auditor = _person("auditor", "Auditor")
    operator = _person("ops", "Operator")
    api.force_login(operator)  # write scope, but no permission to upload or train
    response = api.call("POST", "/api/v1/training-jobs", body={"model": "m", "dataset": "loans"})
    assert (response.status_code, response.json()["message"]) == (
        403,
        "Your roles do not include the permission 'registry.add_trainingjob'.",
    )
    api.force_login(auditor)
    assert api.call("GET", "/api/v1/datasets").status_code == 200
    assert api.call("PATCH", "/api/v1/datasets/loans", body={"description": "x"}).status_code == 403
    api.force_login(people["ds"])
    response = api.call("PATCH", "/api/v1/datasets/loans", body={"description": "Changed by a data scientist."})
    assert response.status_code == 200


def test_an_end_user_gives_feedback_on_their_own_decisions_only(api, champion, tokens):
    customer = _person("customer", "End user", is_staff=False)
    api.force_login(customer)
    mine = api.call("POST", "/api/v1/models/loan-risk/predict", body={"inputs": [valid_row()]})
    assert mine.status_code == 200
    theirs = api.call("POST", "/api/v1/models/loan-risk/predict", tokens["predict"], body={"inputs": [valid_row()]})
    api.force_login(customer)
    assert api.call("GET", "/api/v1/datasets").status_code == 403  # predict only
    response = api.call("POST", f"/api/v1/predictions/{theirs.json()['request_id']}/feedback", body={"actuals": ["no"]})
    assert response.status_code == 404
    assert PredictionRecord.objects.filter(actual__isnull=False).count() == 0
    response = api.call("POST", f"/api/v1/predictions/{mine.json()['request_id']}/feedback", body={"actuals": ["no"]})
    assert response.status_code == 200


# -- the pages -----------------------------------------------------------------------------------------------


def _page_calls(owned) -> list[tuple[str, dict]]:
    version = owned["pending"].version
    return [
        (reverse("registry:version-promote", args=["loan-risk", 1]), {"alias": "challenger"}),
        (reverse("registry:version-approve", args=["loan-risk", version]), {"note": "Fine."}),
        (reverse("registry:version-reject", args=["loan-risk", version]), {"note": "No."}),
        (reverse("registry:alias-rollback", args=["loan-risk", "champion"]), {}),
    ]


def test_the_pages_refuse_release_changes_to_anyone_but_the_owner(client, people, owned):
    client.force_login(people["other_pm"])
    before = _state()
    for url, form in _page_calls(owned):
        assert client.post(url, form).status_code == 403, url
    assert _state() == before
    page = client.get(reverse("registry:version-detail", args=["loan-risk", owned["pending"].version]))
    content = page.content.decode()
    assert "/approve/" not in content and "/promote/" not in content
    assert "Pending approval by someone allowed to approve model versions." in content
    page = client.get(reverse("registry:model-detail", args=["loan-risk"])).content.decode()
    assert "/rollback/" not in page

    client.force_login(people["ds"])  # without the console's permissions, whatever the owner
    for url, form in _page_calls(owned):
        assert client.post(url, form).status_code == 403, url
    assert _state() == before


def test_the_owner_changes_releases_on_the_pages(client, people, owned):
    client.force_login(people["owner"])
    promote, approve, _, _ = _page_calls(owned)
    response = client.post(*promote)
    assert (response.status_code, response["Location"]) == (302, "/models/loan-risk/versions/1/")
    assert ModelAlias.objects.get(name="challenger").version == owned["champion"]
    response = client.post(*approve)
    assert response.status_code == 302
    assert ModelVersion.objects.get(pk=owned["pending"].pk).status == "approved"
    page = client.get(reverse("registry:model-detail", args=["loan-risk"])).content.decode()
    assert 'action="/models/loan-risk/aliases/champion/rollback/"' in page


def test_pages_that_change_something_need_the_consoles_permission(client, people, dataset_version, csv_upload):
    auditor = _person("auditor", "Auditor")
    dpo = _person("dpo", "Data protection officer")
    client.force_login(auditor)
    assert client.get(reverse("data:dataset-list")).status_code == 200  # reading: staff
    before = AuditEvent.objects.count()
    refused = [
        client.post(reverse("data:dataset-list"), {"name": "x"}),
        client.post(reverse("data:dataset-detail", args=["loans"]), {"description": "x"}),
        client.post(reverse("data:dataset-upload", args=["loans"]), {"file": csv_upload()}, HTTP_ACCEPT="text/html"),
        client.post(reverse("features:feature-set-list"), {"name": "x"}),
        client.get(reverse("registry:training-new")),
        client.post(reverse("registry:version-import", args=["loan-risk"])),
        client.post(reverse("batch-list"), {}),
    ]
    assert [response.status_code for response in refused] == [403] * len(refused)
    response = client.post(reverse("data:dataset-upload", args=["loans"]), {"file": csv_upload()})
    assert (response.status_code, response.json()["message"]) == (403, "You may not upload dataset versions.")
    assert AuditEvent.objects.count() == before

    client.force_login(dpo)  # may change a dataset's description, retention and tags
    response = client.post(
        reverse("data:dataset-detail", args=["loans"]),
        {"description": "Reviewed by the DPO", "target_column": "repaid", "subject_key_column": "customer_id"},
    )
    assert (response.status_code, response["Location"]) == (302, reverse("data:dataset-detail", args=["loans"]))
    assert Dataset.objects.get(name="loans").description == "Reviewed by the DPO"
    assert client.get(reverse("registry:training-new")).status_code == 403
    client.force_login(people["ds"])
    assert client.get(reverse("registry:training-new")).status_code == 200


# -- the console ---------------------------------------------------------------------------------------------


def _model_form(model: RegisteredModel, **changes) -> dict:
    form = {
        "description": model.description,
        "task_type": model.task_type,
        "favourable_label": model.favourable_label,
        "owner": model.owner_id or "",
        "latency_p95_ms_target": "",
        "availability_target": "",
        "quality_metric": "",
        "quality_minimum": "",
        "max_relative_drop": str(model.max_relative_drop),
        "fairness_limits": "{}",
        "erasure_policy": model.erasure_policy,
    }
    form.update(changes)
    return form


def _policy_form(model: RegisteredModel, **changes) -> dict:
    form = {
        "registered_model": model.pk,
        "canary_percent": "0",
        "sticky_by": "subject",
        "max_error_rate_increase": "0.01",
        "max_p95_latency_increase": "0.5",
        "min_requests": "50",
        "window_minutes": "15",
    }
    form.update(changes)
    return form


def test_the_console_shows_another_owners_model_read_only(client, people, owned):
    model = owned["model"]
    url = reverse("admin:registry_registeredmodel_change", args=[model.pk])
    client.force_login(people["other_pm"])
    page = client.get(url)
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert 'name="_save"' not in page.content.decode()
    before = _state()
    assert client.post(url, _model_form(model, description="Taken over.")).status_code == 403

    changelist = reverse("admin:registry_modelversion_changelist")
    for action, version in (("promote_challenger", owned["champion"]), ("approve", owned["pending"])):
        response = client.post(
            changelist,
            {"action": action, helpers.ACTION_CHECKBOX_NAME: [version.pk], "confirm": "1", "note": "x"},
            follow=True,
        )
        assert "Loan-risk is owned by a product manager: only they or a superuser may change it or its releases." in (
            response.content.decode()
        )
    response = client.post(
        reverse("admin:registry_registeredmodel_changelist"),
        {"action": "rollback_champion", helpers.ACTION_CHECKBOX_NAME: [model.pk]},
        follow=True,
    )
    assert "Loan-risk is owned by a product manager: only they or a superuser may change it or its releases." in (
        response.content.decode()
    )
    response = client.post(reverse("admin:predictions_trafficpolicy_add"), _policy_form(model, window_minutes="99"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["registered_model"] == [
        "loan-risk is owned by a product manager: only they or a superuser may change it or its releases."
    ]
    assert _state() == before


def test_the_owner_changes_the_model_and_its_policy_in_the_console(client, people, owned):
    model = owned["model"]
    client.force_login(people["owner"])
    url = reverse("admin:registry_registeredmodel_change", args=[model.pk])
    assert client.get(url).context["has_change_permission"] is True
    response = client.post(url, _model_form(model, description="The owner's words."))
    assert response.status_code == 302
    assert RegisteredModel.objects.get(pk=model.pk).description == "The owner's words."
    response = client.post(reverse("admin:predictions_trafficpolicy_add"), _policy_form(model, window_minutes="20"))
    assert response.status_code == 302
    policy = TrafficPolicy.objects.get(registered_model=model)
    assert policy.window_minutes == 20

    client.force_login(people["other_pm"])  # the policy of another owner's model: read-only
    policy_url = reverse("admin:predictions_trafficpolicy_change", args=[policy.pk])
    assert client.get(policy_url).context["has_change_permission"] is False
    assert client.post(policy_url, _policy_form(model, window_minutes="99")).status_code == 403
    assert TrafficPolicy.objects.get(pk=policy.pk).window_minutes == 20


def test_console_actions_need_the_same_permissions_as_the_pages(client, people, owned):
    auditor = _person("auditor", "Auditor")
    client.force_login(auditor)
    changelist = reverse("admin:registry_modelversion_changelist")
    page = client.get(changelist)
    assert (page.status_code, page.context["action_form"]) == (200, None)  # no action offered
    before = _state()
    client.post(changelist, {"action": "promote_challenger", helpers.ACTION_CHECKBOX_NAME: [owned["champion"].pk]})
    assert _state() == before
    client.force_login(people["owner"])
    actions = {name for name, _ in client.get(changelist).context["action_form"].fields["action"].choices}
    assert actions == {"", "approve", "reject", "promote_champion", "promote_challenger", "evaluate_gates"}
