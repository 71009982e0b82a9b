"""Live quality, SLOs and alerts over the real decision log: reports, their alerts, notifications, the API,
and the metrics read from them at scrape time."""

import csv
import io
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone
from sklearn.metrics import roc_auc_score

from apps.core.errors import InvalidInput
from apps.events.models import OutboxEvent
from apps.governance.models import ApiToken, AuditEvent
from apps.monitoring.models import Alert, DriftReport, QualityReport
from apps.monitoring.services import (
    checks_run,
    drift_report_run,
    failed_job_alerts,
    quality_report_run,
    slo_report_run,
)
from apps.predictions.models import PredictionRecord, ScoringFailure
from apps.predictions.services import feedback_record, prediction_make, traffic_policy_set
from apps.registry.models import TrainingJob
from tests.conftest import generated_csv, release, train_version


def table() -> list[dict]:
    return list(csv.DictReader(io.StringIO(generated_csv().decode())))


def inputs(row: dict) -> dict:
    return {"income": float(row["income"]), "age": int(row["age"]), "city": row["city"]}


def serve_one_by_one(rows: list[dict]) -> list[str]:
    return [prediction_make(model_name="loan-risk", rows=[inputs(row)]).request_id for row in rows]


def logged(champion) -> list[PredictionRecord]:
    return list(PredictionRecord.objects.filter(model_version=champion).order_by("created_at", "pk"))


# -- live quality ------------------------------------------------------------------------------------------


def test_quality_from_labels_equals_the_hand_computed_figures(champion):
    rows = table()[:60]
    request_ids = serve_one_by_one(rows)
    for request_id, row in zip(request_ids, rows, strict=True):
        feedback_record(request_id=uuid.UUID(request_id), actuals=[row["repaid"]], actor=None)
    report = quality_report_run(model_name="loan-risk", hours=1)

    records = logged(champion)
    positive = str(champion.labels[1])
    probability = np.array([record.output["probabilities"][positive] for record in records])
    truth = np.array([record.actual == positive for record in records])
    predicted = probability >= 0.5
    delays = [(record.actual_at - record.created_at).total_seconds() for record in records]
    assert (report.rows, report.labelled, report.metric, report.status) == (60, 60, "auc", "no_sla")
    assert report.value == pytest.approx(roc_auc_score(truth, probability), abs=1e-12)
    assert report.measured["accuracy"] == pytest.approx(float(np.mean(predicted == truth)), abs=1e-12)
    assert report.measured["true_positives"] == int(np.sum(predicted & truth))
    assert report.label_delay_seconds == pytest.approx(float(np.median(delays)), abs=1e-9)
    assert report.estimated["rows"] == 60 and report.estimated_value is not None
    assert report.reason == ""
    event = AuditEvent.objects.get(action="quality_report.created")
    assert event.data == {"status": "no_sla", "rows": 60, "labelled": 60}


def test_before_labels_arrive_the_estimate_judges_the_sla_and_raises_a_warning(
    champion, settings, django_capture_on_commit_callbacks
):
    settings.FARO_ALERT_EMAILS = ["oncall@example.test"]
    champion.registered_model.quality_minimum = 0.999
    champion.registered_model.save()
    serve_one_by_one(table()[:40])
    with django_capture_on_commit_callbacks(execute=True):  # the e-mail leaves once the alert commits
        report = quality_report_run(model_name="loan-risk", hours=1)
    assert (report.rows, report.labelled, report.value) == (40, 0, None)
    assert report.status == "below_sla"
    assert report.reason == "No labels have arrived for the window's decisions yet."
    alert = Alert.objects.get()
    assert (alert.key, alert.kind, alert.severity, alert.status) == (
        "quality:loan-risk:v1",
        "quality",
        "warning",
        "open",
    )
    assert alert.title == "loan-risk v1: auc below the SLA"
    assert f"auc = {report.estimated_value:.4f} (estimated without labels (CBPE)) over 40 decisions" in alert.detail
    assert [message.to for message in mail.outbox] == [["oncall@example.test"]]
    assert mail.outbox[0].subject == "[Faro warning] loan-risk v1: auc below the SLA"
    assert OutboxEvent.objects.filter(kind="alert.opened").count() == 1

    with django_capture_on_commit_callbacks(execute=True):  # the same cause again: one alert, counted
        quality_report_run(model_name="loan-risk", hours=1)
    alert.refresh_from_db()
    assert (alert.occurrences, len(mail.outbox), Alert.objects.count()) == (2, 1, 1)

    champion.registered_model.quality_minimum = 0.1
    champion.registered_model.save()
    quality_report_run(model_name="loan-risk", hours=1)
    alert.refresh_from_db()
    assert (alert.status, alert.resolved_by) == ("resolved", "system")
    assert OutboxEvent.objects.filter(kind="alert.resolved").count() == 1
    assert list(AuditEvent.objects.filter(action__startswith="alert.").values_list("action", flat=True)) == [
        "alert.opened",
        "alert.resolved",
    ]


def test_a_window_without_decisions_has_no_numbers(champion):
    serve_one_by_one(table()[:3])
    report = quality_report_run(model_name="loan-risk", hours=1, now=timezone.now() - timedelta(hours=3))
    assert (report.rows, report.labelled, report.value, report.estimated_value, report.status) == (
        0,
        0,
        None,
        None,
        "insufficient_data",
    )
    assert report.reason == "v1 logged no decisions in the window."
    assert Alert.objects.count() == 0


def test_bad_windows_are_refused_and_store_nothing(champion):
    for hours in (0, -1, "24", True, 24 * 367):
        with pytest.raises(InvalidInput):
            quality_report_run(model_name="loan-risk", hours=hours)
    assert QualityReport.objects.count() == 0


# -- SLOs -------------------------------------------------------------------------------------------------


def test_slos_measure_latency_availability_and_quality_with_their_budgets(champion):
    model = champion.registered_model
    serve_one_by_one(table()[:30])  # 30 decisions: enough for the quality estimate
    ScoringFailure.objects.create(model_version=champion, route="champion", error="boom")
    ScoringFailure.objects.create(model_version=champion, route="canary", error="a canary's: not counted")
    latencies = sorted(PredictionRecord.objects.filter(model_version=champion).values_list("latency_ms", flat=True))
    model.latency_p95_ms_target = latencies[-1] + 1000.0  # every request within the target
    model.availability_target = 99.0
    model.quality_minimum = 0.5
    model.save()
    quality_report_run(model_name="loan-risk", hours=1)
    report = slo_report_run(registered_model=model, days=30)

    assert report.requests == 31
    latency, availability, quality = report.objectives
    assert latency == {
        "objective": "latency",
        "target": latencies[-1] + 1000.0,
        "measured": round(float(np.quantile(latencies, 0.95)), 3),
        "met": True,
        "budget_remaining": 1.0,
        "burn_rate_1h": 0.0,
        "unit": "ms",
        "bad": 0,
        "total": 30,
    }
    allowed = 1 - 99.0 / 100
    assert availability == {
        "objective": "availability",
        "target": 99.0,
        "measured": round(100 * 30 / 31, 4),
        "met": False,
        "budget_remaining": round(1 - (1 / 31) / allowed, 6),
        "burn_rate_1h": round((1 / 31) / allowed, 6),
        "unit": "%",
        "bad": 1,
        "total": 31,
    }
    assert (quality["objective"], quality["met"], quality["budget_remaining"]) == ("quality", True, 1.0)
    alert = Alert.objects.get(kind="slo")
    assert (alert.key, alert.severity, alert.title) == (
        "slo:loan-risk:availability",
        "critical",
        "loan-risk: availability SLO error budget spent",
    )

    ScoringFailure.objects.filter(route="champion").delete()
    slo_report_run(registered_model=model, days=30)
    alert.refresh_from_db()
    assert alert.status == "resolved"


def test_a_model_without_an_sla_has_no_objectives_and_no_traffic_gives_no_budget(registered_model):
    report = slo_report_run(registered_model=registered_model, days=30)
    assert (report.requests, report.objectives) == (0, [])
    registered_model.availability_target = 99.9
    registered_model.save()
    report = slo_report_run(registered_model=registered_model, days=30)
    assert report.objectives[0]["measured"] is None and report.objectives[0]["budget_remaining"] is None
    assert Alert.objects.count() == 0


# -- failed jobs and the scheduled checks -------------------------------------------------------------------


def test_a_failed_job_raises_one_alert_once(champion):
    job = TrainingJob.objects.create(
        registered_model=champion.registered_model,
        dataset_version=champion.dataset_version,
        status="failed",
        finished_at=timezone.now(),
        error="The target column is gone.",
    )
    assert failed_job_alerts() == 1
    assert failed_job_alerts() == 0
    alert = Alert.objects.get(kind="job")
    assert (alert.key, alert.title, alert.detail, alert.registered_model_id) == (
        f"job:training:{job.pk}",
        f"Training job {job.pk} failed",
        "The target column is gone.",
        champion.registered_model_id,
    )


def test_the_scheduled_checks_store_a_quality_and_an_slo_report_per_model(champion):
    serve_one_by_one(table()[:5])
    checks_run()
    assert QualityReport.objects.filter(model_version=champion).count() == 1
    assert champion.registered_model.slo_reports.count() == 1


# -- drift against a production window, prediction drift --------------------------------------------------


def test_drift_against_an_earlier_production_window(champion):
    rows = table()
    serve_one_by_one(rows[:120])
    three_hours_ago = timezone.now() - timedelta(hours=3)
    PredictionRecord.objects.update(created_at=three_hours_ago)
    prediction_make(
        model_name="loan-risk", rows=[{**inputs(row), "income": float(row["income"]) * 3} for row in rows[:120]]
    )
    now = timezone.now()
    report = drift_report_run(model_name="loan-risk", hours=2, now=now, reference="window")
    assert (report.reference, report.reference_start, report.reference_end) == (
        "window",
        now - timedelta(hours=4),
        now - timedelta(hours=2),
    )
    features = {item["feature"]: item for item in report.features}
    assert (features["income"]["status"], features["income"]["n_reference"]) == ("drifted", 120)
    assert (features["age"]["status"], features["age"]["psi"]) == ("ok", 0.0)
    assert report.prediction["feature"] == "prediction" and report.prediction["n_reference"] == 120
    assert report.status == "drifted"
    alert = Alert.objects.get(kind="drift")
    assert alert.key == "drift:loan-risk:v1" and "income" in alert.detail

    empty = drift_report_run(
        model_name="loan-risk",
        hours=2,
        now=now,
        reference="window",
        reference_start=(now - timedelta(days=9)).isoformat(),
        reference_end=(now - timedelta(days=8)).isoformat(),
    )
    assert empty.prediction == {
        "feature": "prediction",
        "status": "insufficient_data",
        "reason": "the reference window has no decisions",
    }


def test_prediction_drift_against_the_training_rows(champion):
    serve_one_by_one(table()[:80])
    report = drift_report_run(model_name="loan-risk", hours=1)
    assert (report.prediction["status"], report.prediction["n_reference"], report.prediction["n_current"]) == (
        "ok",
        300,
        80,
    )


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"reference": "yesterday"}, "reference"),
        ({"reference_start": "2026-01-01T00:00:00Z"}, "reference"),
        ({"reference": "window", "reference_start": "not a date"}, "reference_start"),
        (
            {"reference": "window", "reference_start": "2026-01-02T00:00:00Z", "reference_end": "2026-01-01T00:00:00Z"},
            "reference_start",
        ),
    ],
)
def test_bad_reference_windows_are_refused(champion, options, field):
    with pytest.raises(InvalidInput) as refused:
        drift_report_run(model_name="loan-risk", hours=1, **options)
    assert field in refused.value.extra["fields"]
    assert DriftReport.objects.count() == 0


# -- API -------------------------------------------------------------------------------------------------


def test_quality_and_alerts_over_the_api(champion, api, tokens):
    champion.registered_model.quality_minimum = 0.999
    champion.registered_model.save()
    serve_one_by_one(table()[:40])
    made = api.call("post", "/api/v1/models/loan-risk/quality-reports", tokens["write"], {"hours": 1})
    assert made.status_code == 201, made.content
    assert (made.json()["rows"], made.json()["status"]) == (40, "below_sla")
    listed = api.call("get", "/api/v1/models/loan-risk/quality-reports", tokens["read"])
    assert [item["id"] for item in listed.json()] == [made.json()["id"]]
    assert api.call("post", "/api/v1/models/loan-risk/quality-reports", tokens["read"], {}).status_code == 403
    refused = api.call("post", "/api/v1/models/loan-risk/quality-reports", tokens["write"], {"window": 1})
    assert (refused.status_code, refused.json()["extra"]["fields"]) == (400, {"window": ["Unknown field."]})

    alerts = api.call("get", "/api/v1/alerts?status=unresolved&model=loan-risk", tokens["read"]).json()
    assert [(item["kind"], item["status"], item["model"]) for item in alerts] == [("quality", "open", "loan-risk")]
    path = f"/api/v1/alerts/{alerts[0]['id']}"
    acknowledged = api.call("post", path, tokens["write"], {"action": "acknowledge"})
    assert (acknowledged.status_code, acknowledged.json()["status"]) == (200, "acknowledged")
    assert api.call("post", path, tokens["write"], {"action": "acknowledge"}).status_code == 409
    resolved = api.call("post", path, tokens["write"], {"action": "resolve", "reason": "threshold reviewed"})
    writer = ApiToken.objects.get(name="write-client")
    assert (resolved.json()["status"], resolved.json()["resolved_by"]) == ("resolved", f"token:{writer.pk}")
    assert AuditEvent.objects.get(action="alert.resolved").data["reason"] == "threshold reviewed"
    assert api.call("post", path, tokens["write"], {"action": "resolve"}).status_code == 409
    assert api.call("get", "/api/v1/alerts/999999", tokens["read"]).status_code == 404
    bad = api.call("get", "/api/v1/alerts?status=loud", tokens["read"])
    assert (bad.status_code, list(bad.json()["extra"]["fields"])) == (400, ["status"])
    assert api.call("post", path, tokens["write"], {"action": "snooze"}).status_code == 400


def test_slo_and_drift_window_over_the_api(champion, api, tokens):
    champion.registered_model.availability_target = 99.0
    champion.registered_model.save()
    serve_one_by_one(table()[:4])
    slo = api.call("get", "/api/v1/models/loan-risk/slo", tokens["read"])
    assert slo.status_code == 200
    assert (slo.json()["requests"], slo.json()["objectives"][0]["measured"]) == (4, 100.0)
    drift = api.call(
        "post", "/api/v1/models/loan-risk/drift-reports", tokens["write"], {"hours": 1, "reference": "window"}
    )
    assert drift.status_code == 201, drift.content
    assert (drift.json()["reference"], drift.json()["status"]) == ("window", "insufficient_data")
    bad = api.call("post", "/api/v1/models/loan-risk/drift-reports", tokens["write"], {"reference": 3})
    assert (bad.status_code, bad.json()["extra"]["fields"]) == (400, {"reference": ["Must be a string."]})


# -- metrics read at scrape time ----------------------------------------------------------------------------


def sample(text: str, name: str, **labels) -> float | None:
    wanted = "{" + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}" if labels else ""
    for line in text.splitlines():
        if line.startswith(name + wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_show_state_stages_and_cpu(champion, client, api, tokens):
    before = client.get("/metrics").content.decode()
    log_count = sample(before, "faro_prediction_stage_seconds_count", model="loan-risk", stage="log") or 0.0
    parse_count = sample(before, "faro_prediction_stage_seconds_count", model="loan-risk", stage="parse") or 0.0
    for _ in range(3):
        response = api.call(
            "post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [inputs(table()[0])]}
        )
        assert response.status_code == 200
    serve_one_by_one(table()[:30])  # no body to parse: no parse stage
    drift_report_run(model_name="loan-risk", hours=1)
    quality_report_run(model_name="loan-risk", hours=1)
    TrainingJob.objects.create(
        registered_model=champion.registered_model, dataset_version=champion.dataset_version, status="failed"
    )
    Alert.objects.create(key="k", kind="drift", severity="warning", title="t", last_seen_at=timezone.now())

    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    for stage in ("validate", "features", "predict"):
        assert sample(text, "faro_prediction_stage_seconds_count", model="loan-risk", stage=stage) >= 33
    assert sample(text, "faro_prediction_stage_seconds_count", model="loan-risk", stage="log") == log_count + 33
    assert sample(text, "faro_prediction_stage_seconds_count", model="loan-risk", stage="parse") == parse_count + 3
    assert sample(text, "faro_prediction_cpu_seconds_total", model="loan-risk", version="1") > 0
    assert sample(text, "faro_training_jobs", status="failed") == 1.0
    assert sample(text, "faro_training_jobs", status="running") == 0.0
    assert sample(text, "faro_drift_status", model="loan-risk", version="1") == 0.0
    report = DriftReport.objects.get()
    income = next(item for item in report.features if item["feature"] == "income")
    assert (
        sample(text, "faro_drift_score", model="loan-risk", version="1", feature="income", measure="psi")
        == (income["psi"])
    )
    js = sample(text, "faro_drift_score", model="loan-risk", version="1", feature="income", measure="js")
    assert js == income["js_distance"]
    quality = QualityReport.objects.get()
    assert sample(text, "faro_live_quality", model="loan-risk", version="1", metric="auc", source="estimate") == (
        pytest.approx(quality.estimated["auc"], abs=1e-12)
    )
    assert sample(text, "faro_alerts_open", kind="drift", severity="warning") == 1.0
    assert sample(text, "faro_alerts_open", kind="slo", severity="critical") == 0.0
    assert sample(text, "faro_cpu_price_per_hour") is None  # not configured: no made-up price


def test_the_cpu_price_is_exported_when_configured(db, client, settings):
    settings.FARO_CPU_PRICE_PER_HOUR = 0.048
    assert sample(client.get("/metrics").content.decode(), "faro_cpu_price_per_hour") == 0.048


# -- replaying shifted traffic --------------------------------------------------------------------------------


def test_replaying_shifted_training_rows_drifts_and_opens_an_alert(champion):
    out = io.StringIO()
    call_command("traffic_replay", "loan-risk", "--rows", "120", "--batch", "40", "--scale", "income=3", stdout=out)
    lines = out.getvalue().splitlines()
    report = DriftReport.objects.get()
    alert = Alert.objects.get(kind="drift")
    assert lines[0] == "Sent 120 rows to loan-risk in 3 requests."
    assert lines[1] == f"Drift report {report.pk}: drifted (drifted inputs: {', '.join(report.verdict['drifted'])})."
    assert "income" in report.verdict["drifted"]
    assert lines[-1] == f"Open alert {alert.pk} (warning): loan-risk v1: inputs drifted"
    assert PredictionRecord.objects.filter(client="replay").count() == 120
    first = (
        PredictionRecord.objects.filter(client="replay").order_by("request_id", "row").values_list("inputs", flat=True)
    )
    assert {round(row["income"] / 3, 2) for row in first} <= {float(row["income"]) for row in table()}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--scale", "salary=2"], "'salary' is not an input of loan-risk; inputs: income, age, city"),
        (["--scale", "city=2"], "--scale city: city is category, not a number"),
        (["--scale", "income=lots"], "--scale income=lots: the factor is not a number"),
        (["--set", "city"], "--set 'city': expected NAME=VALUE"),
        (["--rows", "0"], "--rows must be at least 1 and --batch between 1 and 1000."),
    ],
)
def test_bad_replay_options_are_refused_before_anything_is_sent(champion, options, message):
    with pytest.raises(CommandError) as refused:
        call_command("traffic_replay", "loan-risk", *options)
    assert str(refused.value) == message
    assert PredictionRecord.objects.count() == 0


def test_a_running_canary_is_measured_and_exported_beside_the_champion(
    registered_model, dataset_version, champion, client
):
    canary = release(train_version(registered_model, dataset_version, max_depth=2), alias="challenger")
    traffic_policy_set(
        registered_model=registered_model, changes={"canary_version": 2, "canary_percent": 100.0}, actor="system"
    )
    serve_one_by_one(table()[:35])
    checks_run()
    measured = dict(QualityReport.objects.values_list("model_version__version", "rows"))
    assert measured == {1: 0, 2: 35}
    text = client.get("/metrics").content.decode()
    estimate = QualityReport.objects.get(model_version=canary).estimated["auc"]
    assert sample(text, "faro_live_quality", model="loan-risk", version="2", metric="auc", source="estimate") == (
        pytest.approx(estimate, abs=1e-12)
    )
    assert sample(text, "faro_live_quality", model="loan-risk", version="1", metric="auc", source="estimate") is None
