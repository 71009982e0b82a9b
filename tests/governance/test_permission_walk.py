"""Every operation of the OpenAPI schema, sent by every persona: a session user of each persona group (and a
superuser, a staff member and a signed-in user without one), an anonymous client and a token of each scope.

Each request is refused (401 anonymous, 403 otherwise) exactly when the table below says so, and a refused
request changes nothing: every row of every table and the audit head are the same after it. The objects the
paths name (a dataset with a version, a check, jobs of every kind, a model with a champion and a pending
version, an alert, a logged decision) are made once per module, in a transaction each test rolls back to.
"""

from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test import Client, override_settings
from django.utils import timezone

from apps.data.services import (
    dataset_check_create,
    dataset_create,
    dataset_version_create_from_upload,
    ingest_job_create,
)
from apps.features.models import MaterialisationJob
from apps.features.services import feature_set_create
from apps.governance.models import AuditHead
from apps.governance.services import token_create
from apps.monitoring.models import Alert
from apps.predictions.batch_services import batch_job_create
from apps.registry.services import registered_model_create
from tests.conftest import generated_csv, release, train_version, valid_row

ANONYMOUS = "anonymous"
READ, PREDICT, WRITE, ADMIN = "read", "predict", "write", "admin"


@dataclass(frozen=True)
class Operation:
    """What an operation needs. `scopes`: any one of them (none: public). For a session besides the scope:
    `permission`, the model permission the console uses for the same change, and `owner_rule`, the model's
    owner rule (the walk's model has no owner: product managers and superusers pass it)."""

    scopes: tuple[str, ...]
    permission: str | None = None
    owner_rule: bool = False


PUBLIC = Operation(scopes=())
OPERATIONS: dict[str, Operation] = {
    "GET /api/v1/alerts": Operation((READ,)),
    "GET /api/v1/alerts/{alert_id}": Operation((READ,)),
    "POST /api/v1/alerts/{alert_id}": Operation((WRITE,), "monitoring.change_alert"),
    "GET /api/v1/batch-jobs": Operation((READ,)),
    "POST /api/v1/batch-jobs": Operation((WRITE,), "predictions.add_batchscoringjob"),
    "GET /api/v1/batch-jobs/{job_id}": Operation((READ,)),
    "POST /api/v1/batch-jobs/{job_id}/cancel": Operation((WRITE,), "predictions.change_batchscoringjob"),
    "GET /api/v1/batch-jobs/{job_id}/download": Operation((READ,)),
    "GET /api/v1/datasets": Operation((READ,)),
    "POST /api/v1/datasets": Operation((WRITE,), "data.add_dataset"),
    "GET /api/v1/datasets/{name}": Operation((READ,)),
    "PATCH /api/v1/datasets/{name}": Operation((WRITE,), "data.change_dataset"),
    "GET /api/v1/datasets/{name}/checks": Operation((READ,)),
    "POST /api/v1/datasets/{name}/checks": Operation((WRITE,), "data.add_datasetcheck"),
    "GET /api/v1/datasets/{name}/checks/{check_id}": Operation((READ,)),
    "PATCH /api/v1/datasets/{name}/checks/{check_id}": Operation((WRITE,), "data.change_datasetcheck"),
    "DELETE /api/v1/datasets/{name}/checks/{check_id}": Operation((WRITE,), "data.delete_datasetcheck"),
    "GET /api/v1/datasets/{name}/versions": Operation((READ,)),
    "POST /api/v1/datasets/{name}/versions": Operation((WRITE,), "data.add_datasetversion"),
    "GET /api/v1/datasets/{name}/versions/{number}": Operation((READ,)),
    "GET /api/v1/datasets/{name}/versions/{number}/download": Operation((READ,)),
    "GET /api/v1/feature-sets": Operation((READ,)),
    "POST /api/v1/feature-sets": Operation((WRITE,), "features.add_featureset"),
    "GET /api/v1/feature-sets/{name}": Operation((READ,)),
    "GET /api/v1/feature-sets/{name}/versions": Operation((READ,)),
    "POST /api/v1/feature-sets/{name}/versions": Operation((WRITE,), "features.add_featuresetversion"),
    "GET /api/v1/feature-sets/{name}/versions/{number}": Operation((READ,)),
    "GET /api/v1/ingest-jobs/{job_id}": Operation((READ,)),
    "GET /api/v1/models": Operation((READ,)),
    "POST /api/v1/models": Operation((WRITE,), "registry.add_registeredmodel"),
    "GET /api/v1/models/{name}": Operation((READ,)),
    "PATCH /api/v1/models/{name}": Operation((ADMIN,), "registry.change_registeredmodel", owner_rule=True),
    "PUT /api/v1/models/{name}/aliases/{alias}": Operation((ADMIN,), "registry.change_modelalias", owner_rule=True),
    "GET /api/v1/models/{name}/aliases/{alias}/at": Operation((READ,)),
    "POST /api/v1/models/{name}/aliases/{alias}/rollback": Operation(
        (ADMIN,), "registry.change_modelalias", owner_rule=True
    ),
    "GET /api/v1/models/{name}/compare": Operation((READ,)),
    "GET /api/v1/models/{name}/drift-reports": Operation((READ,)),
    "POST /api/v1/models/{name}/drift-reports": Operation((WRITE,), "monitoring.add_driftreport"),
    "POST /api/v1/models/{name}/invocations": Operation((PREDICT,)),
    "POST /api/v1/models/{name}/predict": Operation((PREDICT,)),
    "GET /api/v1/models/{name}/quality-reports": Operation((READ,)),
    "POST /api/v1/models/{name}/quality-reports": Operation((WRITE,), "monitoring.add_qualityreport"),
    "GET /api/v1/models/{name}/slo": Operation((READ,)),
    "GET /api/v1/models/{name}/traffic": Operation((READ,)),
    "PATCH /api/v1/models/{name}/traffic": Operation((ADMIN,), "predictions.change_trafficpolicy", owner_rule=True),
    "GET /api/v1/models/{name}/versions": Operation((READ,)),
    "GET /api/v1/models/{name}/versions/{version}": Operation((READ,)),
    "POST /api/v1/models/{name}/versions/{version}/approve": Operation(
        (ADMIN,), "registry.approve_modelversion", owner_rule=True
    ),
    "POST /api/v1/models/{name}/versions/{version}/gates": Operation((WRITE,), "registry.change_modelversion"),
    "GET /api/v1/models/{name}/versions/{version}/onnx": Operation((READ,)),
    "POST /api/v1/models/{name}/versions/{version}/reject": Operation(
        (ADMIN,), "registry.approve_modelversion", owner_rule=True
    ),
    "POST /api/v1/models/{name}/versions/import": Operation((WRITE,), "registry.add_modelversion"),
    "GET /api/v1/online-store/{name}/entities/{entity_id}": Operation((READ,)),
    "POST /api/v1/online-store/materialisations": Operation((WRITE,), "features.add_materialisationjob"),
    "GET /api/v1/online-store/materialisations/{job_id}": Operation((READ,)),
    # 'predict' for one's own decisions, 'write' for any (someone else's is answered 404, not 403)
    "POST /api/v1/predictions/{request_id}/feedback": Operation((PREDICT, WRITE)),
    "GET /api/v1/training-jobs": Operation((READ,)),
    "POST /api/v1/training-jobs": Operation((WRITE,), "registry.add_trainingjob"),
    "GET /api/v1/training-jobs/{job_id}": Operation((READ,)),
    "POST /api/v1/training-jobs/{job_id}/cancel": Operation((WRITE,), "registry.change_trainingjob"),
    "GET /v2": PUBLIC,
    "GET /v2/health/live": PUBLIC,
    "GET /v2/health/ready": PUBLIC,
    "GET /v2/models/{name}": Operation((PREDICT,)),
    "POST /v2/models/{name}/infer": Operation((PREDICT,)),
    "GET /v2/models/{name}/ready": Operation((PREDICT,)),
    "GET /v2/models/{name}/versions/{version}": Operation((PREDICT,)),
    "POST /v2/models/{name}/versions/{version}/infer": Operation((PREDICT,)),
    "GET /v2/models/{name}/versions/{version}/ready": Operation((PREDICT,)),
}

# The persona table's API scopes for sessions (apps.governance.roles), written out again: the walk checks the
# code against the table, not against itself.
SESSION_SCOPES: dict[str, set[str]] = {
    "End user": {PREDICT},
    "Data scientist": {READ, PREDICT, WRITE},
    "Product manager": {READ, PREDICT, WRITE, ADMIN},
    "Operator": {READ, PREDICT, WRITE},
    "Auditor": {READ},
    "Data protection officer": {READ},
    "Superuser": {READ, PREDICT, WRITE, ADMIN},
    "Staff without persona": {READ},
    "Signed-in user without persona": set(),
}
PASSES_OWNER_RULE = {"Product manager", "Superuser"}
TOKEN_SCOPES = {f"token:{scope}": scope for scope in (PREDICT, READ, WRITE, ADMIN)}
PRINCIPALS = [*SESSION_SCOPES, ANONYMOUS, *TOKEN_SCOPES]

BODIES: dict[str, Any] = {
    "POST /api/v1/alerts/{alert_id}": {"action": "acknowledge"},
    "POST /api/v1/batch-jobs": {"model": "loan-risk", "dataset": "loans"},
    "POST /api/v1/datasets": {"name": "walked", "description": "Made by the walk", "target_column": "repaid"},
    "PATCH /api/v1/datasets/{name}": {"description": "Changed by the walk"},
    "POST /api/v1/datasets/{name}/checks": {"kind": "not_null", "column": "age"},
    "PATCH /api/v1/datasets/{name}/checks/{check_id}": {"enabled": False},
    "POST /api/v1/feature-sets": {
        "name": "walked",
        "dataset": "loans",
        "definition": [{"name": "income", "transform": "standardise", "source": "income"}],
    },
    "POST /api/v1/feature-sets/{name}/versions": {
        "definition": [{"name": "age", "transform": "standardise", "source": "age"}]
    },
    "POST /api/v1/models": {"name": "walked", "task_type": "classification"},
    "PATCH /api/v1/models/{name}": {"description": "Changed by the walk"},
    "PUT /api/v1/models/{name}/aliases/{alias}": {"version": 1},
    "POST /api/v1/models/{name}/drift-reports": {},
    "POST /api/v1/models/{name}/invocations": {
        "dataframe_split": {"columns": ["income", "age", "city"], "data": [[5200.5, 41, "north"]]}
    },
    "POST /api/v1/models/{name}/predict": {"inputs": [valid_row()]},
    "POST /api/v1/models/{name}/quality-reports": {},
    "PATCH /api/v1/models/{name}/traffic": {"canary_percent": 5},
    "POST /api/v1/models/{name}/versions/{version}/approve": {"note": "Walked."},
    "POST /api/v1/models/{name}/versions/{version}/reject": {"note": "Walked."},
    "POST /api/v1/online-store/materialisations": {"dataset": "loans"},
    "POST /api/v1/predictions/{request_id}/feedback": {"actuals": ["yes"]},
    "POST /api/v1/training-jobs": {"model": "loan-risk", "dataset": "loans", "params": {"n_estimators": 5}},
}
V2_BODY = {
    "inputs": [
        {"name": "income", "shape": [1], "datatype": "FP64", "data": [5200.5]},
        {"name": "age", "shape": [1], "datatype": "INT64", "data": [41]},
        {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["north"]},
    ]
}
MULTIPART = {"POST /api/v1/datasets/{name}/versions", "POST /api/v1/models/{name}/versions/import"}
QUERIES = {
    "GET /api/v1/models/{name}/compare": "?versions=1,2",
    "GET /api/v1/models/{name}/aliases/{alias}/at": "?at=2030-01-01T00:00:00Z",
}


def expected_refusal(operation: str, principal: str, user: Any) -> int | None:
    """401 or 403 when the table refuses `principal`, else None."""
    needs = OPERATIONS[operation]
    if not needs.scopes:
        return None
    if principal == ANONYMOUS:
        return 401
    if principal in TOKEN_SCOPES:
        scope = TOKEN_SCOPES[principal]
        return None if scope == ADMIN or scope in needs.scopes else 403
    if not SESSION_SCOPES[principal] & set(needs.scopes):
        return 403
    if needs.permission and not user.has_perm(needs.permission):
        return 403
    if needs.owner_rule and principal not in PASSES_OWNER_RULE:
        return 403
    return None


# -- the objects the paths name, once per module --------------------------------------------------------------


@pytest.fixture(autouse=True)
def _artefact_root():
    """Replaces the per-test artefact root of conftest: the module's model and data live in the module's."""


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    root = tmp_path_factory.mktemp("walk-artefacts")
    with django_db_blocker.unblock(), override_settings(FARO_ARTEFACT_ROOT=root), transaction.atomic():
        built = _build()
        yield built
        transaction.set_rollback(True)


def _upload(content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("loans.csv", content, content_type="text/csv")


def _build() -> dict[str, Any]:
    User = get_user_model()
    users: dict[str, Any] = {}
    for name in SESSION_SCOPES:
        username = name.lower().replace(" ", "-")
        if name == "Superuser":
            users[name] = User.objects.create_superuser(username, password="pw")
            continue
        staff = name not in ("End user", "Signed-in user without persona")  # the console's personas are staff
        users[name] = User.objects.create_user(username, password="pw", is_staff=staff)
        if Group.objects.filter(name=name).exists():
            users[name].groups.add(Group.objects.get(name=name))
    tokens = {principal: token_create(name=principal, scopes=[scope])[1] for principal, scope in TOKEN_SCOPES.items()}

    dataset = dataset_create(
        name="loans", description="Generated loans", target_column="repaid", subject_key_column="customer_id"
    )
    dataset_version = dataset_version_create_from_upload(dataset=dataset, upload=_upload(generated_csv()))
    check = dataset_check_create(dataset=dataset, kind="not_null", column="income")
    ingest_job = ingest_job_create(dataset=dataset, upload=_upload(generated_csv(seed=8)))  # queued, never run
    feature_set = feature_set_create(
        name="loan-features",
        dataset=dataset,
        definition=[
            {"name": "income", "transform": "standardise", "source": "income"},
            {"name": "city", "transform": "one_hot", "source": "city"},
        ],
    )
    materialisation = MaterialisationJob.objects.create(dataset_version=dataset_version, store="database")

    model = registered_model_create(name="loan-risk", task_type="classification", favourable_label="yes")
    champion = release(train_version(model, dataset_version))
    pending = train_version(model, dataset_version, max_depth=2)
    assert (champion.version, pending.version, pending.status) == (1, 2, "pending_manual_approval")
    batch_job = batch_job_create(model_version=champion, dataset_version=dataset_version)  # queued, never run
    alert = Alert.objects.create(
        key="drift:loan-risk", kind="drift", severity="warning", title="Drifted", last_seen_at=timezone.now()
    )
    answer = Client().post(
        "/api/v1/models/loan-risk/predict",
        orjson.dumps({"inputs": [valid_row()]}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {tokens['token:predict']}",
    )
    assert answer.status_code == 200, answer.content
    sessions = {}
    for name, user in users.items():  # signed in once: a test only sends the session's cookie
        browser = Client()
        browser.force_login(user)
        sessions[name] = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return {
        "users": users,
        "sessions": sessions,
        "tokens": tokens,
        "params": {
            "check_id": check.pk,
            "alert_id": alert.pk,
            "alias": "champion",
            "entity_id": "C0001",
            "request_id": answer.json()["request_id"],
            "feature_set": feature_set.name,
            "jobs": {
                "batch-jobs": batch_job.pk,
                "ingest-jobs": ingest_job.pk,
                "training-jobs": champion.training_job.pk,
                "materialisations": materialisation.pk,
            },
        },
    }


def _path(operation: str, params: dict[str, Any]) -> str:
    path = operation.split(" ", 1)[1]
    segments = path.strip("/").split("/")
    values = {
        "check_id": params["check_id"],
        "alert_id": params["alert_id"],
        "alias": params["alias"],
        "entity_id": params["entity_id"],
        "request_id": params["request_id"],
        "number": 1,
        "version": 2 if path.endswith(("/approve", "/reject")) else 1,
        "name": {"datasets": "loans", "online-store": "loans", "feature-sets": params["feature_set"]}.get(
            segments[2] if segments[0] == "api" else "", "loan-risk"
        ),
        "job_id": next((pk for prefix, pk in params["jobs"].items() if f"/{prefix}/" in path), None),
    }
    for key, value in values.items():
        path = path.replace("{" + key + "}", str(value))
    assert "{" not in path, path
    return path + QUERIES.get(operation, "")


def _snapshot() -> tuple[list[tuple[str, int]], list[tuple[int, str]]]:
    """The row count of every model's table (in one query), and the audit head. Every change a service makes is
    audited in the same transaction, so an update that adds no row still moves the head."""
    tables = sorted({model._meta.db_table for model in apps.get_models(include_auto_created=True)})
    quote = connection.ops.quote_name
    sql = " UNION ALL ".join(f"SELECT '{table}', COUNT(*) FROM {quote(table)}" for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(sql)
        counts = sorted(cursor.fetchall())
    return counts, list(AuditHead.objects.values_list("seq", "hash"))


# -- the walk -----------------------------------------------------------------------------------------------


def test_the_walk_covers_every_operation_of_the_served_schema(db, client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = orjson.loads(response.content)
    served = {
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "patch", "delete")
    }
    assert served == set(OPERATIONS), {
        "not walked": sorted(served - set(OPERATIONS)),
        "no longer served": sorted(set(OPERATIONS) - served),
    }


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_every_operation_for_every_persona(world, db, operation, principal):
    method = operation.split(" ", 1)[0]
    path = _path(operation, world["params"])
    user = world["users"].get(principal)
    browser = Client()
    extra: dict[str, str] = {}
    if user is not None:
        browser.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"][principal]
    elif principal in TOKEN_SCOPES:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {world['tokens'][principal]}"
    before = _snapshot()

    if operation in MULTIPART:
        response = browser.post(path, {}, **extra)
    else:
        body = V2_BODY if operation.endswith("/infer") else BODIES.get(operation)
        data = orjson.dumps(body) if body is not None and method != "GET" else b""
        response = browser.generic(method, path, data=data, content_type="application/json", **extra)

    refused = expected_refusal(operation, principal, user)
    if refused is None:
        assert response.status_code not in (401, 403), response.content[:300]
        return
    assert response.status_code == refused, response.content[:300]
    assert {"message", "extra"} <= set(orjson.loads(response.content))  # the API's one error body
    assert _snapshot() == before, "a refused request changed something"
