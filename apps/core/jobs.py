"""Leases for long jobs: a worker claims a queued job for a while, renews the claim while it works, and a
reaper takes back the jobs whose claim lapsed (the worker died, or was killed).

Each claim bumps the job's attempt counter; that number fences the attempt, so a worker that wakes up after
its job was taken back cannot finish it. The reaper requeues a lapsed job until it has used its attempts,
then fails it with the reason.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q
from django.utils import timezone

from apps.core.models import JobStatus


def lease_seconds() -> float:
    return float(settings.FARO_JOB_LEASE_SECONDS)


def max_attempts() -> int:
    return int(settings.FARO_JOB_MAX_ATTEMPTS)


@dataclass
class Lease:
    """A worker's claim on one attempt of a job. `renew` keeps it and tells whether to go on."""

    model: type[models.Model]
    job_id: int
    attempt: int
    renew_every: float = 1.0
    _last: float = field(default=0.0, init=False)
    stopped: bool = field(default=False, init=False)

    def _mine(self) -> models.QuerySet:
        return self.model.objects.filter(pk=self.job_id, status=JobStatus.RUNNING, attempts=self.attempt)

    def renew(self, *, progress: float | None = None, force: bool = False) -> bool:
        """Extend the lease (throttled to `renew_every`), recording progress; False once the job is no
        longer this attempt's to finish (taken back by the reaper, or a cancel was asked for)."""
        if self.stopped:
            return False
        now = time.monotonic()
        if not force and now - self._last < self.renew_every:
            return True
        self._last = now
        changes: dict = {"lease_expires_at": timezone.now() + timedelta(seconds=lease_seconds())}
        if progress is not None:
            changes["progress"] = round(min(max(progress, 0.0), 0.99), 3)
        query = self._mine()
        if hasattr(self.model, "cancel_requested_at"):
            query = query.filter(cancel_requested_at__isnull=True)
        if not query.update(**changes):
            self.stopped = True
        return not self.stopped

    def finish(self, **changes) -> bool:
        """Conditionally end this attempt (succeeded, failed or cancelled): False if it is no longer ours."""
        return bool(self._mine().update(lease_expires_at=None, finished_at=timezone.now(), **changes))


def job_claim(model: type[models.Model], job_id: int) -> Lease | None:
    """Claim a queued job for one attempt; None if it is not queued (another delivery has it, or it ended)."""
    now = timezone.now()
    with transaction.atomic():
        claimed = model.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(
            status=JobStatus.RUNNING,
            started_at=now,
            progress=0.0,
            attempts=F("attempts") + 1,
            lease_expires_at=now + timedelta(seconds=lease_seconds()),
        )
        if not claimed:
            return None
        attempt = model.objects.filter(pk=job_id).values_list("attempts", flat=True).get()
    return Lease(model=model, job_id=job_id, attempt=attempt, renew_every=min(1.0, lease_seconds() / 4))


@dataclass(frozen=True)
class Reaped:
    job_id: int
    attempt: int
    requeued: bool
    reason: str


def jobs_reap(model: type[models.Model], *, now: datetime | None = None) -> list[Reaped]:
    """Take back every running job whose lease lapsed: requeue it, or fail it after the last attempt.

    Each job is changed by one conditional update on its status, attempt and lapsed lease, so two reapers
    (or a reaper and a late worker) never both act on the same attempt. The caller audits and re-enqueues.
    """
    now = now or timezone.now()
    lapsed = model.objects.filter(status=JobStatus.RUNNING).filter(
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
    )
    limit = max_attempts()
    reaped: list[Reaped] = []
    for job_id, attempt in lapsed.values_list("pk", "attempts"):
        mine = model.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt).filter(
            Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True)
        )
        if attempt < limit:
            reason = (
                f"The worker stopped during attempt {attempt} of {limit} (its lease lapsed); the job was queued again."
            )
            if mine.update(status=JobStatus.QUEUED, lease_expires_at=None, progress=0.0, error=reason):
                reaped.append(Reaped(job_id, attempt, True, reason))
        else:
            reason = f"The worker stopped during each of {limit} attempts (its lease lapsed); the job was not retried."
            if mine.update(status=JobStatus.FAILED, lease_expires_at=None, finished_at=now, error=reason):
                reaped.append(Reaped(job_id, attempt, False, reason))
    return reaped


def jobs_reap_and_requeue(
    model: type[models.Model],
    *,
    audit: Callable[..., Any],
    action_prefix: str,
    requeue: Callable[[int], Any],
    on_failed: Callable[[int], Any] | None = None,
    now: datetime | None = None,
) -> list[int]:
    """`jobs_reap`, and for each job taken back, in the same transaction: an audit event
    (`<action_prefix>.requeued` or `.failed`, by "system", with the attempt and the reason), then once
    committed `requeue(job_id)` for a requeued job or `on_failed(job_id)` for a failed one. The ids taken
    back. `audit` is the audit trail's recorder (apps.governance.services.audit_record), passed in because
    this module sits below the one that keeps it."""
    with transaction.atomic():
        reaped = jobs_reap(model, now=now)
        for item in reaped:
            audit(
                actor="system",
                action=f"{action_prefix}.{'requeued' if item.requeued else 'failed'}",
                target=model(pk=item.job_id),
                data={"attempt": item.attempt, "reason": item.reason},
            )
            then = requeue if item.requeued else on_failed
            if then is not None:
                transaction.on_commit(functools.partial(then, item.job_id))
    return [item.job_id for item in reaped]


def job_start(model: type[models.Model], job_id: int, *, audit: Callable[..., Any], action: str) -> Lease | None:
    """Claim a queued job (`job_claim`) and record `action` by "system" with the attempt, in one transaction;
    None when the job is not queued (a duplicate delivery, or it ended)."""
    with transaction.atomic():
        lease = job_claim(model, job_id)
        if lease is not None:
            audit(actor="system", action=action, target=model(pk=job_id), data={"attempt": lease.attempt})
    return lease
