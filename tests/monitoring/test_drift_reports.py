"""Drift reports over the decision log: the champion's served inputs in a window against its training data."""

import csv
import io
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.core.errors import InvalidInput, NotFound
from apps.governance.models import AuditEvent
from apps.monitoring.models import DriftReport
from apps.monitoring.services import drift_report_run
from apps.predictions.models import PredictionRecord
from apps.predictions.services import prediction_make
from tests.conftest import generated_csv


def training_rows() -> list[dict]:
    """The rows the champion was trained on (the conftest's generated table), as a client sends them."""
    return [
        {"income": float(row["income"]), "age": int(row["age"]), "city": row["city"]}
        for row in csv.DictReader(io.StringIO(generated_csv().decode()))
    ]


def importance_by_input(version) -> dict[str, float]:
    """The version's mean |SHAP| per input, one-hot columns (city=north) counted for their input: what weighs
    each input in the verdict."""
    weights: dict[str, float] = {}
    for row in version.evaluation["importance"]:
        source = row["feature"].split("=", 1)[0]
        weights[source] = weights.get(source, 0.0) + row["mean_abs_shap"]
    return weights


def serve(rows: list[dict]) -> None:
    prediction_make(model_name="loan-risk", rows=rows)


def report(**overrides) -> DriftReport:
    return drift_report_run(model_name="loan-risk", now=timezone.now() + timedelta(seconds=1), hours=1, **overrides)


def by_feature(found: DriftReport) -> dict[str, dict]:
    return {feature["feature"]: feature for feature in found.features}


def test_the_training_data_served_again_has_not_drifted(champion):
    serve(training_rows())
    found = report()
    assert (found.model_version_id, found.rows, found.status, found.reference) == (champion.pk, 300, "ok", "training")
    features = by_feature(found)
    assert list(features) == ["income", "age", "city"]
    for name, feature in features.items():
        assert (feature["status"], feature["psi"], feature["js_distance"]) == ("ok", 0.0, 0.0), name
        assert (feature["n_reference"], feature["n_current"]) == (300, 300)
        assert (feature["missing_rate_reference"], feature["missing_rate_current"]) == (0.0, 0.0)
    assert features["income"]["ks_statistic"] == 0.0
    assert features["city"]["unseen_rate"] == 0.0
    weights = importance_by_input(champion)
    assert set(weights) == {"income", "age", "city"} and max(weights, key=weights.get) == "income"
    assert found.verdict == {
        "status": "ok",
        "drift_share": 0.0,
        "drifted": [],
        "assessed": 3,
        "reason": "0 of 3 assessed features drifted, weighted share 0 < 0.5 and the most important feature "
        "'income' did not drift.",
        "weighted_by": "feature importance",
    }
    assert found.excluded == {}
    assert found.requested_by == "system"
    event = AuditEvent.objects.get(action="drift_report.created")
    assert (event.object_id, event.data) == (str(found.pk), {"rows": 300, "status": "ok"})


def test_shifted_inputs_drift_and_the_report_names_them(champion):
    rows = training_rows()
    serve(
        [
            {**row, "income": row["income"] * 3, "city": "north" if index % 2 else row["city"]}
            for index, row in enumerate(rows)
        ]
    )
    found = report()
    features = by_feature(found)
    assert {name: feature["status"] for name, feature in features.items()} == {
        "income": "drifted",
        "age": "ok",
        "city": "drifted",
    }
    assert features["city"]["unseen_rate"] == 0.0  # a model without a feature set refuses unseen categories
    assert features["income"]["ks_p_value"] < 0.01
    weights = importance_by_input(champion)
    assert (found.status, found.verdict["drifted"], found.verdict["drift_share"]) == (
        "drifted",
        sorted(["city", "income"], key=lambda name: -weights[name]),
        round((weights["income"] + weights["city"]) / sum(weights.values()), 6),
    )


def test_a_window_without_traffic_says_so_and_gives_no_numbers(champion):
    serve(training_rows()[:5])
    found = drift_report_run(model_name="loan-risk", now=timezone.now() - timedelta(hours=2), hours=1)
    assert (found.rows, found.status, found.features) == (0, "insufficient_data", [])
    assert found.verdict["reason"] == "v1 logged no decisions in the window."


def test_too_few_rows_is_insufficient_data_not_a_verdict(champion):
    serve(training_rows()[:10])
    found = report()
    assert found.status == "insufficient_data"
    assert {feature["status"] for feature in found.features} == {"insufficient_data"}


def test_personal_inputs_are_not_compared(champion):
    dataset = champion.dataset_version.dataset
    dataset.column_tags = {"age": ["personal"]}
    dataset.save(update_fields=["column_tags"])
    serve(training_rows())
    found = report()
    assert list(by_feature(found)) == ["income", "city"]
    assert found.excluded == {"age": "personal data: the decision log keeps only pseudonyms of it"}


@pytest.mark.parametrize("hours", [0, -1, 24 * 367, True, "24"])
def test_a_bad_window_is_refused_and_nothing_is_stored(champion, hours):
    with pytest.raises(InvalidInput) as refused:
        drift_report_run(model_name="loan-risk", hours=hours)
    assert refused.value.extra == {"fields": {"hours": ["Must be a number of hours in (0, 8784]."]}}
    assert DriftReport.objects.count() == 0


def test_an_unknown_model_or_version_is_not_found(champion):
    with pytest.raises(NotFound):
        drift_report_run(model_name="nope")
    with pytest.raises(NotFound):
        drift_report_run(model_name="loan-risk", version=9)
    assert DriftReport.objects.count() == 0


def test_the_command_prints_the_report(champion):
    serve(training_rows())
    out = io.StringIO()
    call_command("drift_report", "loan-risk", "--hours", "1", stdout=out)
    found = DriftReport.objects.get()
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        f"Drift report {found.pk} for loan-risk v1: ok (300 decisions). "
        "0 of 3 assessed features drifted, weighted share 0 < 0.5 and the most important feature 'income' "
        "did not drift."
    )
    assert [line.split(":")[0] for line in lines[1:]] == ["  income", "  age", "  city"]


def test_the_command_names_what_is_wrong(champion):
    with pytest.raises(CommandError) as unknown:
        call_command("drift_report", "nope")
    assert str(unknown.value) == "No registered model named 'nope'."
    with pytest.raises(CommandError) as window:
        call_command("drift_report", "loan-risk", "--hours", "0")
    assert str(window.value) == "The window must be more than 0 and at most 8784 hours."


# -- the API and the schedule -----------------------------------------------------------------------------

URL = "/api/v1/models/loan-risk/drift-reports"


def test_run_now_and_list_through_the_api(api, tokens, champion):
    serve(training_rows())
    created = api.call("post", URL, tokens["write"], {"hours": 1})
    assert created.status_code == 201, created.content
    body = created.json()
    assert (body["version"], body["rows"], body["status"], body["reference"]) == (1, 300, "ok", "training")
    assert [feature["feature"] for feature in body["features"]] == ["income", "age", "city"]
    assert body["requested_by"].startswith("token:")
    listed = api.call("get", URL, tokens["read"])
    assert listed.status_code == 200
    assert [report["id"] for report in listed.json()] == [body["id"]]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"hours": 0}, {"hours": ["Must be a number of hours in (0, 8784]."]}),
        ({"hours": "a day"}, {"hours": ["Must be a number of hours in (0, 8784]."]}),
        ({"version": "1"}, {"version": ["Must be an integer."]}),
        ({"window": 3}, {"window": ["Unknown field."]}),
        ([1, 2], {"body": ["Expected an object."]}),
    ],
)
def test_bad_requests_are_refused_naming_the_field(api, tokens, champion, body, fields):
    response = api.call("post", URL, tokens["write"], body)
    assert response.status_code == 400
    assert response.json()["extra"] == {"fields": fields}
    assert DriftReport.objects.count() == 0


def test_scopes_and_unknown_models(api, tokens, champion):
    assert api.call("post", URL, tokens["read"], {}).status_code == 403
    assert api.call("get", URL, tokens["predict"]).status_code == 403
    missing = api.call("get", "/api/v1/models/nope/drift-reports", tokens["read"])
    assert (missing.status_code, missing.json()["message"]) == (404, "No registered model named 'nope'.")
    assert api.call("post", URL, tokens["write"], {"version": 7}).status_code == 404


def test_the_scheduled_task_reports_on_every_champion(champion, settings):
    from apps.monitoring.tasks import drift_reports_run

    serve(training_rows())
    settings.FARO_DRIFT_WINDOW_HOURS = 1.0
    drift_reports_run()
    found = DriftReport.objects.get()
    assert (found.model_version_id, found.rows, found.requested_by) == (champion.pk, 300, "system")
    assert "monitoring.drift_reports_run" in settings.CELERY_BEAT_SCHEDULE


def test_a_busy_window_is_read_up_to_its_newest_rows(champion, settings):
    rows = training_rows()
    serve(rows[:200])
    serve([{**row, "income": row["income"] * 3} for row in rows[200:]])  # the newest 100: all shifted
    settings.FARO_DRIFT_MAX_ROWS = 100
    found = report()
    assert found.rows == 100
    assert by_feature(found)["income"]["n_current"] == 100
    assert by_feature(found)["income"]["status"] == "drifted"


def test_an_input_absent_from_the_live_data_is_not_given_a_number(champion):
    serve(training_rows()[:100])
    for record in PredictionRecord.objects.all():  # as if the clients had stopped sending age
        record.inputs.pop("age")
        record.save(update_fields=["inputs"])
    found = report()
    age = by_feature(found)["age"]
    assert (age["status"], age["n_current"], age["missing_rate_current"], age["psi"]) == (
        "insufficient_data",
        0,
        1.0,
        None,
    )
    assert age["reason"] == (
        "Only 0 non-missing current rows (300 reference and 0 current rows); at least 30 are needed on each side."
    )
    assert (found.verdict["assessed"], found.status) == (2, "ok")


def test_a_model_whose_training_data_is_gone_gets_a_clear_error_and_no_report(champion, api, tokens, settings):
    serve(training_rows()[:50])
    (Path(settings.FARO_ARTEFACT_ROOT) / champion.dataset_version.file_path).unlink()
    response = api.call("post", "/api/v1/models/loan-risk/drift-reports", tokens["write"], {"hours": 1})
    assert response.status_code == 503
    assert response.json()["message"] == (f"Artefact {champion.dataset_version.file_path} is missing from storage")
    assert DriftReport.objects.count() == 0
