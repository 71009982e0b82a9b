"""The registry API: training jobs, model versions, and moving aliases (promotion, rollback)."""

import pytest
from django.contrib.auth import get_user_model

from apps.governance.models import AuditEvent
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob
from apps.registry.services import model_version_approve
from apps.registry.training import PARAMS
from tests.conftest import SMALL_PARAMS, release, train_version

INVALID_ALIAS = {
    "message": "'Gold_1' is not a valid alias name.",
    "extra": {"fields": {"alias": ["An alias is 1-32 lowercase letters, digits or hyphens, starting with a letter."]}},
}

DEFAULT_PARAMS = {name: spec[3] for name, spec in PARAMS.items()}
JOB_FIELDS = {
    "warnings",
    "warning_count",
    "attempts",
    "trials",
    "cancel_requested_at",
    "id",
    "model",
    "dataset",
    "dataset_version",
    "feature_set",
    "params",
    "status",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "error",
    "model_version",
}


def job_request(**overrides):
    return {"model": "loan-risk", "dataset": "loans", "params": SMALL_PARAMS, **overrides}


def refused(api, token, method, path, body, status, expected):
    """Check a refusal's status and body, and that no job, model, version or alias appeared."""
    counts = [model.objects.count() for model in (TrainingJob, RegisteredModel, ModelVersion, ModelAlias, AliasChange)]
    response = api.call(method, path, token, body)
    assert response.status_code == status, response.content
    assert response.json() == expected
    assert [
        model.objects.count() for model in (TrainingJob, RegisteredModel, ModelVersion, ModelAlias, AliasChange)
    ] == counts


# -- training jobs ---------------------------------------------------------------------------------


def test_a_training_job_is_accepted_then_runs(api, tokens, dataset_version, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = api.call("post", "/api/v1/training-jobs", tokens["write"], job_request())
    assert response.status_code == 202, response.content
    assert len(callbacks) == 1
    queued = response.json()
    assert set(queued) == JOB_FIELDS
    assert response["Location"] == f"/api/v1/training-jobs/{queued['id']}"
    assert {key: queued[key] for key in JOB_FIELDS - {"id", "created_at"}} == {
        "model": "loan-risk",
        "dataset": "loans",
        "dataset_version": 1,
        "feature_set": None,
        "params": {**DEFAULT_PARAMS, **SMALL_PARAMS},
        "status": "queued",
        "progress": 0.0,
        "started_at": None,
        "finished_at": None,
        "error": "",
        "model_version": None,
        "warnings": [],
        "warning_count": 0,
        "attempts": 0,
        "trials": [],
        "cancel_requested_at": None,
    }

    detail = api.call("get", f"/api/v1/training-jobs/{queued['id']}", tokens["read"])
    assert detail.status_code == 200
    job = detail.json()
    assert (job["status"], job["progress"], job["model_version"], job["error"]) == ("succeeded", 1.0, 1, "")
    assert job["started_at"] <= job["finished_at"]
    assert job["params"] == queued["params"]

    # The model did not exist: the job registered it, and its version 1 came from this dataset version.
    model = RegisteredModel.objects.get(name="loan-risk")
    version = ModelVersion.objects.get(registered_model=model)
    assert (version.version, version.dataset_version_id, version.labels) == (1, dataset_version.pk, ["no", "yes"])

    listed = api.call("get", "/api/v1/training-jobs", tokens["read"])
    assert listed.status_code == 200
    assert listed.json() == [job]


def test_a_training_job_on_an_existing_model_adds_a_version(
    api, tokens, registered_model, dataset_version, django_capture_on_commit_callbacks
):
    train_version(registered_model, dataset_version)
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call("post", "/api/v1/training-jobs", tokens["write"], job_request(dataset_version=1))
    assert response.status_code == 202, response.content
    job = api.call("get", f"/api/v1/training-jobs/{response.json()['id']}", tokens["read"]).json()
    assert (job["status"], job["model_version"]) == ("succeeded", 2)
    assert RegisteredModel.objects.count() == 1


@pytest.mark.parametrize(
    ("params", "fields"),
    [
        pytest.param(
            {"bogus": 1},
            {"params.bogus": [f"unknown parameter; known: {', '.join(sorted(PARAMS))}"]},
            id="unknown-key",
        ),
        pytest.param(
            {"learning_rate": 0},
            {"params.learning_rate": ["must be greater than 0.0 and at most 1.0"]},
            id="learning-rate-zero",
        ),
        pytest.param(
            {"learning_rate": 1.5},
            {"params.learning_rate": ["must be greater than 0.0 and at most 1.0"]},
            id="learning-rate-too-high",
        ),
        pytest.param({"learning_rate": "fast"}, {"params.learning_rate": ["must be a number"]}, id="learning-rate-str"),
        pytest.param({"max_depth": 2.5}, {"params.max_depth": ["must be an integer"]}, id="max-depth-fraction"),
        pytest.param({"n_estimators": True}, {"params.n_estimators": ["must be an integer"]}, id="n-estimators-bool"),
        pytest.param(
            {"max_depth": 17, "subsample": 0},
            {
                "params.max_depth": ["must be at least 1 and at most 16"],
                "params.subsample": ["must be greater than 0.0 and at most 1.0"],
            },
            id="two-problems",
        ),
    ],
)
def test_invalid_params_are_400_naming_the_param(api, tokens, dataset_version, params, fields):
    refused(
        api,
        tokens["write"],
        "post",
        "/api/v1/training-jobs",
        job_request(params=params),
        400,
        {"message": "The training parameters are not valid.", "extra": {"fields": fields}},
    )


def test_invalid_params_for_a_new_model_do_not_register_it(api, tokens, dataset_version):
    refused(
        api,
        tokens["write"],
        "post",
        "/api/v1/training-jobs",
        job_request(model="brand-new", params={"learning_rate": 0}),
        400,
        {
            "message": "The training parameters are not valid.",
            "extra": {"fields": {"params.learning_rate": ["must be greater than 0.0 and at most 1.0"]}},
        },
    )
    assert not RegisteredModel.objects.filter(name="brand-new").exists()


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        pytest.param({"dataset": "loans"}, {"model": ["This field is required."]}, id="no-model"),
        pytest.param(
            {"model": "loan-risk", "dataset": "loans", "params": [1]},
            {"params": ['Expected a dictionary of items but got type "list".']},
            id="params-not-object",
        ),
        pytest.param(
            {"model": "loan-risk", "dataset": "loans", "dataset_version": 0},
            {"dataset_version": ["Ensure this value is greater than or equal to 1."]},
            id="dataset-version-zero",
        ),
    ],
)
def test_an_invalid_job_request_is_400(api, tokens, dataset_version, body, fields):
    refused(
        api,
        tokens["write"],
        "post",
        "/api/v1/training-jobs",
        body,
        400,
        {"message": "Invalid input.", "extra": {"fields": fields}},
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"dataset": "nope"}, "No dataset named 'nope'.", id="unknown-dataset"),
        pytest.param({"dataset_version": 7}, "Dataset 'loans' has no version 7.", id="unknown-dataset-version"),
    ],
)
def test_an_unknown_dataset_is_404(api, tokens, dataset_version, overrides, message):
    refused(
        api,
        tokens["write"],
        "post",
        "/api/v1/training-jobs",
        job_request(**overrides),
        404,
        {"message": message, "extra": {}},
    )


def test_training_needs_the_write_scope(api, tokens, dataset_version):
    refused(
        api,
        tokens["read"],
        "post",
        "/api/v1/training-jobs",
        job_request(),
        403,
        {"message": "This token lacks the 'write' scope.", "extra": {}},
    )


def test_an_unknown_job_is_404(api, tokens, db):
    response = api.call("get", "/api/v1/training-jobs/999", tokens["read"])
    assert (response.status_code, response.json()) == (404, {"message": "No training job 999.", "extra": {}})


# -- aliases ---------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(registered_model, dataset_version):
    """Two approved versions (approved by a checker who did not train them), neither holding an alias."""
    checker = get_user_model().objects.create_user("checker", is_staff=True)
    return tuple(
        model_version_approve(version=train_version(registered_model, dataset_version), actor=checker) for _ in range(2)
    )


def alias_url(alias="champion", model="loan-risk"):
    return f"/api/v1/models/{model}/aliases/{alias}"


def test_promotion_needs_the_admin_scope(api, tokens, two_versions):
    first, _ = two_versions
    release(first)
    for persona in ("write", "read", "predict"):
        refused(
            api,
            tokens[persona],
            "put",
            alias_url(),
            {"version": 2},
            403,
            {"message": "This token lacks the 'admin' scope.", "extra": {}},
        )
        refused(
            api,
            tokens[persona],
            "post",
            alias_url() + "/rollback",
            None,
            403,
            {"message": "This token lacks the 'admin' scope.", "extra": {}},
        )
    assert ModelAlias.objects.get(name="champion").version == first


def test_promote_promote_and_roll_back(api, tokens, two_versions):
    admin = tokens["admin"]
    for number in (1, 2):
        response = api.call("put", alias_url(), admin, {"version": number})
        assert (response.status_code, response.json()) == (
            200,
            {"model": "loan-risk", "alias": "champion", "version": number},
        )
        assert ModelAlias.objects.get(name="champion").version.version == number

    response = api.call("post", alias_url() + "/rollback", admin)
    assert (response.status_code, response.json()) == (
        200,
        {"model": "loan-risk", "alias": "champion", "version": 1},
    )
    assert ModelAlias.objects.get(name="champion").version.version == 1
    assert list(
        AliasChange.objects.order_by("id").values_list("kind", "from_version__version", "to_version__version")
    ) == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]


def test_promoting_the_current_version_again_changes_nothing(api, tokens, two_versions):
    api.call("put", alias_url(), tokens["admin"], {"version": 1})
    changes = AliasChange.objects.count()
    response = api.call("put", alias_url(), tokens["admin"], {"version": 1})
    assert (response.status_code, response.json()) == (
        200,
        {"model": "loan-risk", "alias": "champion", "version": 1},
    )
    assert AliasChange.objects.count() == changes


def test_the_challenger_alias_moves_independently(api, tokens, two_versions):
    api.call("put", alias_url(), tokens["admin"], {"version": 1})
    response = api.call("put", alias_url("challenger"), tokens["admin"], {"version": 2})
    assert (response.status_code, response.json()) == (
        200,
        {"model": "loan-risk", "alias": "challenger", "version": 2},
    )
    detail = api.call("get", "/api/v1/models/loan-risk", tokens["read"]).json()
    assert detail["aliases"] == {"champion": 1, "challenger": 2}


def test_rollback_with_no_previous_version_is_409(api, tokens, two_versions):
    api.call("put", alias_url(), tokens["admin"], {"version": 2})
    refused(
        api,
        tokens["admin"],
        "post",
        alias_url() + "/rollback",
        None,
        409,
        {"message": "loan-risk@champion has no previous version to roll back to.", "extra": {}},
    )
    assert ModelAlias.objects.get(name="champion").version.version == 2


def test_a_pending_version_cannot_become_champion(api, tokens, registered_model, dataset_version):
    pending = train_version(registered_model, dataset_version)
    refused(
        api,
        tokens["admin"],
        "put",
        alias_url(),
        {"version": pending.version},
        409,
        {
            "message": "loan-risk v1 is pending manual approval; only an approved version can be champion.",
            "extra": {},
        },
    )


def test_rollback_with_no_champion_is_409(api, tokens, two_versions):
    refused(
        api,
        tokens["admin"],
        "post",
        alias_url() + "/rollback",
        None,
        409,
        {"message": "loan-risk has no champion to roll back.", "extra": {}},
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "expected"),
    [
        pytest.param(
            "put",
            alias_url(),
            {"version": 9},
            404,
            {"message": "loan-risk has no version 9.", "extra": {}},
            id="unknown-version",
        ),
        pytest.param(
            "put",
            alias_url(model="nope"),
            {"version": 1},
            404,
            {"message": "No registered model named 'nope'.", "extra": {}},
            id="unknown-model",
        ),
        pytest.param(
            "put",
            alias_url(),
            {"version": 0},
            400,
            {
                "message": "Invalid input.",
                "extra": {"fields": {"version": ["Ensure this value is greater than or equal to 1."]}},
            },
            id="version-zero",
        ),
        pytest.param(
            "put",
            alias_url(),
            {},
            400,
            {"message": "Invalid input.", "extra": {"fields": {"version": ["This field is required."]}}},
            id="no-version",
        ),
        pytest.param("put", alias_url("Gold_1"), {"version": 1}, 400, INVALID_ALIAS, id="invalid-alias"),
        pytest.param("post", alias_url("Gold_1") + "/rollback", None, 400, INVALID_ALIAS, id="rollback-invalid-alias"),
        pytest.param(
            "post",
            alias_url(model="nope") + "/rollback",
            None,
            404,
            {"message": "No registered model named 'nope'.", "extra": {}},
            id="rollback-unknown-model",
        ),
    ],
)
def test_bad_alias_requests(api, tokens, two_versions, method, path, body, status, expected):
    refused(api, tokens["admin"], method, path, body, status, expected)


# -- reading models and versions -------------------------------------------------------------------


def test_models_and_versions_show_their_aliases(api, tokens, two_versions):
    first, second = two_versions
    api.call("put", alias_url(), tokens["admin"], {"version": 1})
    api.call("put", alias_url("challenger"), tokens["admin"], {"version": 2})
    read = tokens["read"]

    models = api.call("get", "/api/v1/models", read)
    assert models.status_code == 200
    [model] = models.json()
    assert {key: model[key] for key in ("name", "task_type", "favourable_label", "aliases")} == {
        "name": "loan-risk",
        "task_type": "classification",
        "favourable_label": "yes",
        "aliases": {"champion": 1, "challenger": 2},
    }
    assert api.call("get", "/api/v1/models/loan-risk", read).json() == model

    versions = api.call("get", "/api/v1/models/loan-risk/versions", read)
    assert versions.status_code == 200
    listed = versions.json()
    assert [(item["version"], item["aliases"]) for item in listed] == [(2, ["challenger"]), (1, ["champion"])]
    assert listed[1]["artefact_sha256"] == first.artefact_sha256
    assert (listed[1]["dataset"], listed[1]["dataset_version"]) == ("loans", 1)
    assert [item["name"] for item in listed[1]["signature"]["inputs"]] == ["income", "age", "city"]

    detail = api.call("get", "/api/v1/models/loan-risk/versions/2", read)
    assert detail.status_code == 200
    # The list leaves out each version's evaluation (curves, importance, fairness); the detail has it.
    assert set(detail.json()) - set(listed[0]) == {"evaluation"}
    assert {key: detail.json()[key] for key in listed[0]} == listed[0]

    api.call("post", alias_url() + "/rollback", tokens["admin"])
    api.call("put", alias_url(), tokens["admin"], {"version": 2})
    assert api.call("get", "/api/v1/models/loan-risk/versions/2", read).json()["aliases"] == ["challenger", "champion"]
    assert api.call("get", "/api/v1/models/loan-risk/versions/1", read).json()["aliases"] == []
    assert second.version == 2


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/v1/models/nope", "No registered model named 'nope'."),
        ("/api/v1/models/nope/versions", "No registered model named 'nope'."),
        ("/api/v1/models/loan-risk/versions/3", "loan-risk has no version 3."),
    ],
)
def test_reading_what_does_not_exist_is_404(api, tokens, two_versions, path, message):
    response = api.call("get", path, tokens["read"])
    assert (response.status_code, response.json()) == (404, {"message": message, "extra": {}})


def test_reading_the_registry_needs_the_read_scope(api, tokens, two_versions):
    for path in ("/api/v1/models", "/api/v1/models/loan-risk/versions", "/api/v1/training-jobs"):
        response = api.call("get", path, tokens["predict"])
        assert (response.status_code, response.json()) == (
            403,
            {"message": "This token lacks the 'read' scope.", "extra": {}},
        ), path


def test_registering_a_model_with_its_favourable_label(api, tokens):
    body = {"name": "card-risk", "description": "Cards", "task_type": "classification", "favourable_label": "yes"}
    response = api.call("post", "/api/v1/models", tokens["write"], body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert {key: created[key] for key in body} == body
    assert created["aliases"] == {}
    assert (
        AuditEvent.objects.filter(
            action="registered_model.created", object_id=str(RegisteredModel.objects.get(name="card-risk").pk)
        ).count()
        == 1
    )
    duplicate = api.call("post", "/api/v1/models", tokens["write"], body)
    assert (duplicate.status_code, duplicate.json()) == (
        409,
        {"message": "A registered model named 'card-risk' already exists.", "extra": {}},
    )


def test_registering_a_model_is_refused_for_bad_input_or_scope(api, tokens):
    bad = api.call("post", "/api/v1/models", tokens["write"], {"name": "x", "task_type": "ranking"})
    assert bad.status_code == 400
    assert bad.json() == {
        "message": "Invalid input.",
        "extra": {"fields": {"task_type": ['"ranking" is not a valid choice.']}},
    }
    denied = api.call("post", "/api/v1/models", tokens["read"], {"name": "x"})
    assert denied.status_code == 403
    assert not RegisteredModel.objects.exists()
