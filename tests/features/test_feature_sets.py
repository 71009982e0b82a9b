import re

import pytest

from apps.core.errors import Unavailable
from apps.features.models import FeatureSet, FeatureSetVersion
from apps.features.pipeline import FittedPipeline, definition_hash
from apps.governance.models import AuditEvent
from apps.predictions.loader import model_cache
from apps.predictions.models import PredictionRecord
from apps.registry.models import ModelVersion
from apps.registry.services import training_job_create, training_job_run
from tests.conftest import SMALL_PARAMS, release, valid_row

DEFINITION = [
    {"name": "income_log", "transform": "log1p", "source": "income", "description": "Income, log scale"},
    {"name": "age_band", "transform": "bucketise", "source": "age", "params": {"edges": [30, 50, 65]}},
    {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 2}},
    {"name": "income_per_year", "transform": "ratio", "sources": ["income", "age"]},
]


@pytest.fixture
def feature_set(api, tokens, dataset_version):
    response = api.call(
        "post",
        "/api/v1/feature-sets",
        tokens["write"],
        {"name": "loan-features", "dataset": "loans", "definition": DEFINITION},
    )
    assert response.status_code == 201, response.content
    return FeatureSet.objects.get(name="loan-features")


def test_a_feature_set_is_created_with_its_first_version(api, tokens, feature_set):
    assert api.call("get", "/api/v1/feature-sets/loan-features", tokens["read"]).json() == {
        "name": "loan-features",
        "description": "",
        "dataset": "loans",
        "created_at": feature_set.created_at.isoformat().replace("+00:00", "Z"),
        "latest_version": 1,
    }
    version = api.call("get", "/api/v1/feature-sets/loan-features/versions/1", tokens["read"]).json()
    assert version["definition"] == DEFINITION
    assert version["definition_hash"] == definition_hash(DEFINITION)
    assert version["tags"] == {"income_log": [], "age_band": [], "city": [], "income_per_year": []}
    assert list(AuditEvent.objects.filter(action__startswith="feature_set").values_list("action", flat=True)) == [
        "feature_set.created",
        "feature_set_version.created",
    ]


def test_a_definition_that_does_not_fit_the_data_is_refused_naming_each_problem(api, tokens, dataset_version):
    bad = [
        {"name": "a", "transform": "standardise", "source": "city"},
        {"name": "b", "transform": "ratio", "sources": ["income", "nope"]},
        {"name": "c", "transform": "date_part", "source": "income", "params": {"part": "month"}},
    ]
    response = api.call(
        "post", "/api/v1/feature-sets", tokens["write"], {"name": "bad", "dataset": "loans", "definition": bad}
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": "3 problem(s) in the feature set.",
        "extra": {
            "problems": [
                {"feature": "a", "field": "source", "message": "standardise needs a numeric column; 'city' is string"},
                {"feature": "b", "field": "source", "message": "column 'nope' is not in the data"},
                {"feature": "c", "field": "source", "message": "date_part needs a date column; 'income' is float"},
            ]
        },
    }
    assert not FeatureSet.objects.exists()
    denied = api.call(
        "post", "/api/v1/feature-sets", tokens["read"], {"name": "x", "dataset": "loans", "definition": DEFINITION}
    )
    assert denied.status_code == 403


def test_versions_are_immutable_and_a_repeat_is_refused(api, tokens, feature_set):
    again = api.call("post", "/api/v1/feature-sets/loan-features/versions", tokens["write"], {"definition": DEFINITION})
    assert (again.status_code, again.json()["message"]) == (
        409,
        "Version 1 of loan-features already has this definition.",
    )
    changed = [*DEFINITION[:3], {"name": "gap", "transform": "difference", "sources": ["income", "age"]}]
    created = api.call("post", "/api/v1/feature-sets/loan-features/versions", tokens["write"], {"definition": changed})
    assert (created.status_code, created.json()["number"]) == (201, 2)
    assert FeatureSetVersion.objects.get(number=1).definition == DEFINITION


def test_training_and_prediction_run_through_the_feature_set(
    api, tokens, feature_set, registered_model, dataset_version, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call(
            "post",
            "/api/v1/training-jobs",
            tokens["write"],
            {"model": "loan-risk", "dataset": "loans", "feature_set": "loan-features", "params": SMALL_PARAMS},
        )
    assert response.status_code == 202, response.content
    assert response.json()["feature_set"] == "loan-features v1"
    version = ModelVersion.objects.get()
    assert (version.feature_set_version.number, version.feature_definition_hash) == (1, definition_hash(DEFINITION))
    assert [item["name"] for item in version.signature["inputs"]] == ["age", "city", "income"]
    vocabulary = version.feature_state["features"][2]["vocabulary"]
    assert len(vocabulary) == 2
    assert FittedPipeline.from_state(version.feature_state).output_names == [
        "income_log",
        "age_band",
        *(f"city={value}" for value in vocabulary),
        "city=other",
        "income_per_year",
    ]
    assert set(version.feature_state["statistics"]) == set(FittedPipeline.from_state(version.feature_state).names)
    assert version.feature_state["statistics"]["age_band"]["missing"] == 0
    release(version)
    body = {"inputs": [valid_row(), valid_row(city="atlantis")], "explain": True}
    answer = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], body)
    assert answer.status_code == 200, answer.content
    assert len(answer.json()["outputs"]) == 2  # an unseen city is "other", as the one_hot policy says
    assert answer.json()["explanations"][0]["reasons"]
    refused = api.call(
        "post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [{"income": "high", "age": 40}]}
    )
    assert refused.status_code == 400
    assert refused.json()["extra"]["errors"] == [
        {"row": 0, "field": "city", "message": "is required"},
        {"row": 0, "field": "income", "message": "must be a number, not str"},
    ]


def test_a_feature_set_of_another_dataset_is_refused(feature_set, registered_model, csv_upload):
    from apps.core.errors import InvalidInput
    from apps.data.services import dataset_create, dataset_version_create_from_upload

    other = dataset_create(name="other", target_column="repaid", subject_key_column="customer_id")
    other_version = dataset_version_create_from_upload(dataset=other, upload=csv_upload())
    with pytest.raises(
        InvalidInput, match=re.escape("Feature set 'loan-features' reads dataset 'loans', not 'other'.")
    ):
        training_job_create(
            registered_model=registered_model,
            dataset_version=other_version,
            feature_set_version=feature_set.versions.get(),
        )


def test_serving_refuses_a_model_whose_feature_definition_changed(
    api, tokens, feature_set, registered_model, dataset_version
):
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params=SMALL_PARAMS,
        feature_set_version=feature_set.versions.get(),
    )
    version = training_job_run(job_id=job.pk)
    release(version)
    FeatureSetVersion.objects.filter(pk=version.feature_set_version_id).update(
        definition=[{**DEFINITION[0], "transform": "passthrough"}, *DEFINITION[1:]]
    )
    model_cache.clear()
    with pytest.raises(Unavailable, match="its feature set's definition no longer matches"):
        model_cache.get("loan-risk")
    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [valid_row()]})
    assert response.status_code == 503
    assert response.json() == {
        "message": "loan-risk v1 is not served: its feature set's definition no longer "
        "matches the one it was fitted with.",
        "extra": {},
    }
    assert not PredictionRecord.objects.exists()


def test_values_a_feature_cannot_use_are_reported_per_row_in_the_job(db, csv_upload, registered_model):
    from apps.data.services import dataset_create, dataset_version_create_from_upload
    from apps.features.services import feature_set_create

    rows = "".join(f"C{i},{i * 10 % 70},{'yes' if i % 3 else 'no'},{'2024-01-0' + str(i % 9 + 1)}\n" for i in range(60))
    content = ("customer_id,age,repaid,day\n" + rows).encode()
    dataset = dataset_create(name="days", target_column="repaid", subject_key_column="customer_id")
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload(content))
    feature_set = feature_set_create(
        name="day-features",
        dataset=dataset,
        definition=[
            {"name": "per_age", "transform": "ratio", "sources": ["age", "age"]},
            {"name": "month", "transform": "date_part", "source": "day", "params": {"part": "month"}},
        ],
    )
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=version,
        params=SMALL_PARAMS,
        feature_set_version=feature_set.versions.get(),
    )
    training_job_run(job_id=job.pk)
    job.refresh_from_db()
    assert (job.status, job.warning_count) == ("succeeded", 9)  # ages 0: rows 1, 8, 15, ... 57
    assert job.warnings[:2] == [
        {"row": 1, "feature": "per_age", "field": "age", "message": "'age' is 0, so 'per_age' is missing"},
        {"row": 8, "feature": "per_age", "field": "age", "message": "'age' is 0, so 'per_age' is missing"},
    ]
