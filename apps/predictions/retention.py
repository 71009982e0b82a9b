"""Retention: dataset versions past their dataset's retention, and the decision log past its own, purged.

The decision log lives here, in predictions, above data in the layering; so the run that purges both stores
(beat's `predictions.retention_purge`, `manage.py retention_purge`) is here too, and the dataset part is
`apps.data.services.dataset_versions_purge`.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.data.services import DatasetPurge, dataset_versions_purge
from apps.governance.models import ReviewRequest
from apps.governance.services import audit_record
from apps.predictions.models import PredictionRecord, ScoringFailure

logger = logging.getLogger(__name__)

# Rows deleted per statement, each statement its own transaction: a purge of millions of rows never holds
# its locks (or a long transaction's snapshot) for more than one batch.
DELETE_BATCH_ROWS = 10_000
# A decision a person asked to have reviewed is kept while the review is not decided: the reviewer needs it.
REVIEW_OPEN_STATUSES = (ReviewRequest.Status.OPEN, ReviewRequest.Status.IN_REVIEW)


@dataclass
class DecisionLogPurge:
    """What a retention run did to the decision log (or would do, in a dry run). `cutoff` None: kept forever."""

    retention_days: int
    cutoff: datetime | None = None
    prediction_records: int = 0
    scoring_failures: int = 0
    kept_for_review: int = 0  # rows older than the cut-off kept because their decision's review is open
    kept_requests: list[str] = field(default_factory=list)  # their request ids


@dataclass
class RetentionResult:
    now: datetime
    dry_run: bool
    datasets: DatasetPurge
    decision_log: DecisionLogPurge
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What went (or would go), for people: the management command prints these."""
        verb = "would be" if self.dry_run else "were"
        lines = [f"Dry run at {self.now:%Y-%m-%d %H:%M} UTC: nothing was changed."] if self.dry_run else []
        versions = self.datasets.versions
        lines.append(f"Dataset versions past their retention: {len(versions)} {verb} purged.")
        lines += [
            f"  {item.dataset} v{item.number}, created {item.created_at:%Y-%m-%d}, {item.retention_days}-day retention"
            for item in versions
        ]
        lines.append(f"Files {verb} removed from artefact storage: {len(self.datasets.files_removed)}.")
        lines += [f"  {path}" for path in self.datasets.files_removed]
        for path, users in self.datasets.files_kept.items():
            lines.append(f"  kept {path}: still used by {', '.join(users)}")
        log = self.decision_log
        if log.cutoff is None:
            lines.append("Decision log: kept forever (FARO_DECISION_LOG_RETENTION_DAYS is 0).")
        else:
            lines.append(
                f"Decision log, older than {log.cutoff:%Y-%m-%d %H:%M} UTC ({log.retention_days}-day retention): "
                f"{log.prediction_records} decision row(s) and {log.scoring_failures} scoring failure(s) {verb} purged."
            )
            if log.kept_for_review:
                lines.append(
                    f"  kept {log.kept_for_review} decision row(s) of {len(log.kept_requests)} request(s) whose "
                    f"review is open: {', '.join(log.kept_requests)}"
                )
        lines += [f"Failed: {error}" for error in self.errors]
        return lines


def _delete_batch(queryset: QuerySet, rows: int) -> int:
    """Delete at most `rows` rows of `queryset` in one statement (DELETE ... WHERE id IN (SELECT ... LIMIT))."""
    return queryset.model.objects.filter(pk__in=queryset.values("pk")[:rows]).delete()[0]


def decision_log_purge(
    *, now: datetime | None = None, dry_run: bool = False, batch_rows: int = DELETE_BATCH_ROWS
) -> DecisionLogPurge:
    """Delete decisions (PredictionRecord rows) and scoring failures older than FARO_DECISION_LOG_RETENTION_DAYS
    (0: keep forever), `batch_rows` per statement and transaction.

    Every row of a request whose review (governance's ReviewRequest, by request id) is open or in review is
    kept, and counted in the result. One `decision_log.purged` audit event per run that deleted anything, with
    the counts and the cut-off, in the transaction of the last batch; a run stopped by an error records what
    it deleted so far (`"complete": false`) before the error goes on. `dry_run` counts and changes nothing.
    """
    now = now or timezone.now()
    days = settings.FARO_DECISION_LOG_RETENTION_DAYS
    result = DecisionLogPurge(retention_days=days)
    if not days:
        return result
    cutoff = now - timedelta(days=days)
    result.cutoff = cutoff
    under_review = ReviewRequest.objects.filter(status__in=REVIEW_OPEN_STATUSES).values("request_id")
    old = PredictionRecord.objects.filter(created_at__lt=cutoff)
    kept = old.filter(request_id__in=under_review)
    result.kept_requests = sorted({str(request_id) for request_id in kept.values_list("request_id", flat=True)})
    result.kept_for_review = kept.count()
    # The exclusion is a subquery, evaluated by each DELETE: a review opened during the run still protects.
    records = old.exclude(request_id__in=under_review).order_by()
    failures = ScoringFailure.objects.filter(created_at__lt=cutoff).order_by()
    if dry_run:
        result.prediction_records = records.count()
        result.scoring_failures = failures.count()
        return result

    def audit(complete: bool) -> None:
        audit_record(
            actor="system",
            action="decision_log.purged",
            data={
                "cutoff": cutoff.isoformat(),
                "retention_days": days,
                "prediction_records": result.prediction_records,
                "scoring_failures": result.scoring_failures,
                "kept_for_review": result.kept_for_review,
                "complete": complete,
            },
        )

    try:
        while True:
            with transaction.atomic():
                deleted = _delete_batch(failures, batch_rows)
            result.scoring_failures += deleted
            if deleted < batch_rows:
                break
        while True:
            with transaction.atomic():
                deleted = _delete_batch(records, batch_rows)
                result.prediction_records += deleted
                done = deleted < batch_rows
                if done and (result.prediction_records or result.scoring_failures):
                    audit(complete=True)
            if done:
                return result
    except Exception:
        if result.prediction_records or result.scoring_failures:
            with transaction.atomic():
                audit(complete=False)
        raise


def retention_purge(*, now: datetime | None = None, dry_run: bool = False) -> RetentionResult:
    """Purge what is past its retention: dataset versions (`dataset_versions_purge`) and the decision log
    (`decision_log_purge`), with one cut-off time. The two are independent: a failure of one is logged and
    listed in `errors`, and the other still runs."""
    now = now or timezone.now()
    errors: list[str] = []
    try:
        datasets = dataset_versions_purge(now=now, dry_run=dry_run)
    except Exception as exc:
        logger.exception("Retention: purging dataset versions failed")
        errors.append(f"dataset versions: {exc}")
        datasets = DatasetPurge()
    try:
        log = decision_log_purge(now=now, dry_run=dry_run)
    except Exception as exc:
        logger.exception("Retention: purging the decision log failed")
        errors.append(f"decision log: {exc}")
        log = DecisionLogPurge(retention_days=settings.FARO_DECISION_LOG_RETENTION_DAYS)
    result = RetentionResult(now=now, dry_run=dry_run, datasets=datasets, decision_log=log, errors=errors)
    if not dry_run:
        logger.info(
            "Retention purge: %d dataset version(s), %d file(s), %d decision row(s), %d scoring failure(s); "
            "%d decision row(s) kept for open reviews",
            len(datasets.versions),
            len(datasets.files_removed),
            log.prediction_records,
            log.scoring_failures,
            log.kept_for_review,
        )
    return result
