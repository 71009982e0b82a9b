"""Decision-log retention (batched deletes, decisions under review kept, one audit event per run) and the
retention run of both stores: the service, the beat task and `manage.py retention_purge`."""

import uuid
from datetime import UTC, datetime, timedelta
from io import StringIO

from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.artefacts import artefact_path
from apps.data.models import DatasetVersion
from apps.data.services import dataset_update
from apps.governance.models import AuditEvent, ReviewRequest
from apps.predictions.models import PredictionRecord, ScoringFailure
from apps.predictions.retention import decision_log_purge, retention_purge
from apps.predictions.tasks import retention_purge as retention_purge_task

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def decisions(version, *, days_old: float, rows: int = 1, now: datetime = NOW) -> uuid.UUID:
    """One request's decisions (`rows` rows), made `days_old` days before `now`."""
    request_id = uuid.uuid4()
    PredictionRecord.objects.bulk_create(
        PredictionRecord(request_id=request_id, row=row, model_version=version, channel="api", inputs={}, output={})
        for row in range(rows)
    )
    PredictionRecord.objects.filter(request_id=request_id).update(created_at=now - timedelta(days=days_old))
    return request_id


def failure(version, *, days_old: float, now: datetime = NOW) -> None:
    made = ScoringFailure.objects.create(model_version=version, route="canary", error="boom")
    ScoringFailure.objects.filter(pk=made.pk).update(created_at=now - timedelta(days=days_old))


def review(request_id: uuid.UUID, status: str) -> None:
    made = ReviewRequest.objects.create(request_id=request_id, model_name="loan-risk", model_version=1)
    ReviewRequest.objects.filter(pk=made.pk).update(status=status)


def log_events() -> list[tuple[str, dict]]:
    return list(AuditEvent.objects.filter(action="decision_log.purged").order_by("seq").values_list("actor", "data"))


def test_old_decisions_go_in_batches_except_those_under_review(champion, settings):
    settings.FARO_DECISION_LOG_RETENTION_DAYS = 730
    old = [decisions(champion, days_old=731) for _ in range(5)] + [decisions(champion, days_old=800, rows=3)]
    recent = [decisions(champion, days_old=729), decisions(champion, days_old=1)]
    opened = decisions(champion, days_old=900, rows=2)
    in_review = decisions(champion, days_old=731)
    upheld = decisions(champion, days_old=731)
    review(opened, ReviewRequest.Status.OPEN)
    review(in_review, ReviewRequest.Status.IN_REVIEW)
    review(upheld, ReviewRequest.Status.UPHELD)  # decided: its decision follows the retention like any other
    for days in (731, 1000, 3):
        failure(champion, days_old=days)

    with CaptureQueriesContext(connection) as queries:
        result = decision_log_purge(now=NOW, batch_rows=4)

    assert (result.retention_days, result.cutoff) == (730, datetime(2024, 12, 1, 12, 0, tzinfo=UTC))
    assert (result.prediction_records, result.scoring_failures) == (9, 2)
    assert (result.kept_for_review, result.kept_requests) == (3, sorted([str(opened), str(in_review)]))
    deletes = [query["sql"] for query in queries if query["sql"].startswith("DELETE")]
    assert [sql.split()[2].strip('"') for sql in deletes] == [
        "predictions_scoringfailure",
        "predictions_predictionrecord",  # 4 rows
        "predictions_predictionrecord",  # 4 rows
        "predictions_predictionrecord",  # the last row: fewer than a batch, so the end
    ]
    remaining = set(PredictionRecord.objects.values_list("request_id", flat=True))
    assert remaining == {*recent, opened, in_review}
    assert PredictionRecord.objects.count() == 5
    assert not set(old) & remaining
    assert ScoringFailure.objects.count() == 1
    assert log_events() == [
        (
            "system",
            {
                "cutoff": "2024-12-01T12:00:00+00:00",
                "retention_days": 730,
                "prediction_records": 9,
                "scoring_failures": 2,
                "kept_for_review": 3,
                "complete": True,
            },
        )
    ]
    assert decision_log_purge(now=NOW).prediction_records == 0
    assert len(log_events()) == 1  # a run that deletes nothing records nothing


def test_a_dry_run_counts_and_changes_nothing(champion, settings):
    settings.FARO_DECISION_LOG_RETENTION_DAYS = 730
    dataset_update(dataset=champion.dataset_version.dataset, retention_days=365)
    DatasetVersion.objects.filter(pk=champion.dataset_version_id).update(created_at=NOW - timedelta(days=400))
    kept = decisions(champion, days_old=800, rows=2)
    review(kept, ReviewRequest.Status.OPEN)
    for _ in range(3):
        decisions(champion, days_old=731)
    failure(champion, days_old=731)
    events = AuditEvent.objects.count()

    result = retention_purge(now=NOW, dry_run=True)

    version = champion.dataset_version
    assert result.lines() == [
        "Dry run at 2026-12-01 12:00 UTC: nothing was changed.",
        "Dataset versions past their retention: 1 would be purged.",
        f"  loans v1, created {NOW - timedelta(days=400):%Y-%m-%d}, 365-day retention",
        "Files would be removed from artefact storage: 1.",
        f"  {version.file_path}",
        "Decision log, older than 2024-12-01 12:00 UTC (730-day retention): 3 decision row(s) and 1 scoring "
        "failure(s) would be purged.",
        f"  kept 2 decision row(s) of 1 request(s) whose review is open: {kept}",
    ]
    assert (PredictionRecord.objects.count(), ScoringFailure.objects.count()) == (5, 1)
    assert DatasetVersion.objects.get(pk=version.pk).purged_at is None
    assert artefact_path(version.file_path).exists()
    assert AuditEvent.objects.count() == events


def test_zero_keeps_the_decision_log_forever(champion, settings):
    settings.FARO_DECISION_LOG_RETENTION_DAYS = 0
    decisions(champion, days_old=10_000)
    failure(champion, days_old=10_000)

    result = retention_purge(now=NOW)

    assert result.decision_log.cutoff is None
    assert result.lines()[-1] == "Decision log: kept forever (FARO_DECISION_LOG_RETENTION_DAYS is 0)."
    assert (PredictionRecord.objects.count(), ScoringFailure.objects.count()) == (1, 1)
    assert log_events() == []


def test_beat_runs_the_purge_daily_and_the_command_prints_what_went(champion, settings):
    assert django_settings.CELERY_BEAT_SCHEDULE["predictions.retention_purge"] == {
        "task": "predictions.retention_purge",
        "schedule": timedelta(seconds=86400),
        "options": {"expire_seconds": 86400},
    }
    settings.FARO_DECISION_LOG_RETENTION_DAYS = 730
    now = timezone.now()
    dataset_update(dataset=champion.dataset_version.dataset, retention_days=365)
    DatasetVersion.objects.filter(pk=champion.dataset_version_id).update(created_at=now - timedelta(days=400))
    decisions(champion, days_old=731, rows=2, now=now)
    decisions(champion, days_old=1, now=now)

    out = StringIO()
    call_command("retention_purge", "--dry-run", stdout=out)
    assert "Dataset versions past their retention: 1 would be purged." in out.getvalue()
    assert "2 decision row(s) and 0 scoring failure(s) would be purged." in out.getvalue()
    assert PredictionRecord.objects.count() == 3

    out = StringIO()
    call_command("retention_purge", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "Dataset versions past their retention: 1 were purged."
    assert "2 decision row(s) and 0 scoring failure(s) were purged." in lines[-1]
    assert PredictionRecord.objects.count() == 1
    assert DatasetVersion.objects.get(pk=champion.dataset_version_id).purged_at is not None
    assert [action for (action,) in AuditEvent.objects.filter(action__endswith=".purged").values_list("action")] == [
        "dataset_version.purged",
        "decision_log.purged",
    ]

    decisions(champion, days_old=800, now=now)
    retention_purge_task.delay()  # what beat sends (eager in the tests)
    assert PredictionRecord.objects.count() == 1
    assert len(log_events()) == 2
