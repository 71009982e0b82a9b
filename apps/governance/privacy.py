"""Data-subject requests (GDPR Arts. 15-21): receipt, identity check, deadline and extension, and carrying each kind
out — access and a portable copy, erasure through the personal-data handler registry with a resumable ledger and
a receipt, restriction and objection — plus `gdpr_replay`, which erases every erased subject again after a backup
restore brought their data back.

Everything is audited under the subject's pseudonymous reference (`subject:<digest prefix>`), never its key.
"""

import calendar
import csv
import hashlib
import io
import json
import logging
import secrets
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core import personal_data
from apps.core.errors import Conflict, FaroError, InvalidInput
from apps.core.personal_data import StepState, Subject
from apps.governance.models import DataSubjectRequest, ErasureStep, SubjectRestriction
from apps.governance.services import acting_user, audit_record

logger = logging.getLogger(__name__)

HANDLE_PERMISSION = "governance.handle_subjectrequest"
SUBJECT_ID_MAX_CHARS = 200
CONTACT_MAX_CHARS = 200
DETAILS_MAX_CHARS = 4000
MAX_EXTENSION_MONTHS = 2
REPLAN_ROUNDS = 3
Kind = DataSubjectRequest.Kind
Status = DataSubjectRequest.Status


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, or the month's last day when it has none (31 Jan + 1: end of Feb)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def link_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _handler_check(actor: Any) -> None:
    user = acting_user(actor)
    if user is None or not user.is_active or not user.has_perm(HANDLE_PERMISSION):
        raise PermissionDenied("Handling data-subject requests needs the data protection officer's permission.")


def _audit(request: DataSubjectRequest, action: str, actor: Any, **data: Any) -> None:
    audit_record(
        actor=actor,
        action=action,
        target=request,
        data={"kind": request.kind, "subject": request.subject_ref, "status": request.status, **data},
    )


def subject_request_create(
    *,
    kind: str,
    subject_id: str,
    contact: str = "",
    details: str = "",
    actor: Any = None,
    received_at: datetime | None = None,
) -> tuple[DataSubjectRequest, str]:
    """Record a request as received; returns it and the person's private link token (shown once).

    A second open request of the same kind for the same subject is refused, naming the first. Nothing is said here
    about whether Faro holds data on the subject: that is for the person whose identity has been verified.
    """
    problems: dict[str, list[str]] = {}
    subject_id, contact, details = str(subject_id or "").strip(), str(contact or "").strip(), str(details or "")
    if kind not in Kind.values:
        problems["kind"] = [f"Choose one of: {', '.join(Kind.values)}."]
    if not subject_id:
        problems["subject_id"] = ["This field is required."]
    elif len(subject_id) > SUBJECT_ID_MAX_CHARS:
        problems["subject_id"] = [f"Ensure this value has at most {SUBJECT_ID_MAX_CHARS} characters."]
    if len(contact) > CONTACT_MAX_CHARS:
        problems["contact"] = [f"Ensure this value has at most {CONTACT_MAX_CHARS} characters."]
    if len(details) > DETAILS_MAX_CHARS:
        problems["details"] = [f"Ensure this value has at most {DETAILS_MAX_CHARS} characters."]
    if problems:
        raise InvalidInput("The request is not valid.", extra={"fields": problems})
    subject = Subject.of(subject_id)
    received_at = received_at or timezone.now()
    token = secrets.token_urlsafe(32)
    request = DataSubjectRequest(
        kind=kind,
        subject_id=subject_id,
        subject_digest=subject.digest,
        contact=contact,
        details=details,
        received_at=received_at,
        due_at=add_months(received_at, 1),
        link_digest=link_digest(token),
        created_by="subject" if acting_user(actor) is None else f"user:{actor.pk}",
    )
    try:
        with transaction.atomic():
            request.save()
            _audit(request, "subject_request.received", actor, due_at=request.due_at.isoformat())
    except IntegrityError:
        existing = DataSubjectRequest.objects.filter(
            kind=kind, subject_digest=subject.digest, status__in=DataSubjectRequest.OPEN
        ).first()
        number = f": request {existing.pk}, due {existing.due_at:%Y-%m-%d}" if existing else ""
        raise Conflict(
            f"This person already has an open request of this kind ({Kind(kind).label}){number}.",
            extra={"request": existing.pk if existing else None},
        ) from None
    return request, token


def subject_request_by_link(token: str) -> DataSubjectRequest | None:
    if not token or len(token) > 100:
        return None
    return DataSubjectRequest.objects.filter(link_digest=link_digest(token)).first()


def _locked(request: DataSubjectRequest) -> DataSubjectRequest:
    return DataSubjectRequest.objects.select_for_update().get(pk=request.pk)


def subject_request_verify(*, request: DataSubjectRequest, actor: Any, method: str) -> DataSubjectRequest:
    """Record how the person's identity was checked (Art. 12(6)); the request can then be carried out."""
    _handler_check(actor)
    method = (method or "").strip()
    if not method:
        raise InvalidInput("Say how the identity was verified.", extra={"fields": {"verification": ["Required."]}})
    with transaction.atomic():
        request = _locked(request)
        if request.status != Status.RECEIVED:
            raise Conflict(f"Request {request.pk} is {request.get_status_display().lower()}: nothing to verify.")
        request.status, request.verified_at = Status.VERIFIED, timezone.now()
        request.verification, request.handler = method[:200], acting_user(actor)
        request.save(update_fields=["status", "verified_at", "verification", "handler"])
        _audit(request, "subject_request.verified", actor)
    return request


def subject_request_extend(*, request: DataSubjectRequest, actor: Any, months: int, reason: str) -> DataSubjectRequest:
    """Extend the deadline once, by one or two months, with the reason the person is told (Art. 12(3))."""
    _handler_check(actor)
    reason = (reason or "").strip()
    if months not in range(1, MAX_EXTENSION_MONTHS + 1):
        raise InvalidInput(
            f"Extend by 1 to {MAX_EXTENSION_MONTHS} months.", extra={"fields": {"months": ["Out of range."]}}
        )
    if not reason:
        raise InvalidInput("Give the reason for the extension.", extra={"fields": {"reason": ["Required."]}})
    with transaction.atomic():
        request = _locked(request)
        if not request.is_open:
            raise Conflict(f"Request {request.pk} is closed.")
        if request.extended_at is not None:
            raise Conflict(f"Request {request.pk} was already extended on {request.extended_at:%Y-%m-%d}.")
        request.due_at = add_months(request.due_at, months)
        request.extended_at, request.extension_reason = timezone.now(), reason
        request.save(update_fields=["due_at", "extended_at", "extension_reason"])
        _audit(request, "subject_request.extended", actor, months=months, due_at=request.due_at.isoformat())
    return request


def subject_request_refuse(*, request: DataSubjectRequest, actor: Any, reason: str) -> DataSubjectRequest:
    """Close a request without carrying it out (identity not established, manifestly unfounded), saying why."""
    _handler_check(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give the reason for the refusal.", extra={"fields": {"reason": ["Required."]}})
    with transaction.atomic():
        request = _locked(request)
        if not request.is_open or request.status == Status.IN_PROGRESS:
            raise Conflict(f"Request {request.pk} is {request.get_status_display().lower()}: it cannot be refused.")
        request.status, request.outcome, request.completed_at = Status.REFUSED, reason, timezone.now()
        request.save(update_fields=["status", "outcome", "completed_at"])
        _audit(request, "subject_request.refused", actor)
    return request


def _verified(request: DataSubjectRequest) -> DataSubjectRequest:
    request = _locked(request)
    if request.status != Status.VERIFIED:
        raise Conflict(
            f"Request {request.pk} is {request.get_status_display().lower()}: "
            "only a request whose identity check is recorded can be carried out."
        )
    return request


def subject_request_carry_out(*, request: DataSubjectRequest, actor: Any) -> DataSubjectRequest:
    """Do what a verified request asks. Access: held data is counted and the copy is built when downloaded.
    Restriction and objection: decisions about the subject are refused from now on. Erasure: the ledger is planned
    and a worker carries it out (`erasure_run`); the request completes with its receipt."""
    _handler_check(actor)
    if request.kind == Kind.ERASURE:
        with transaction.atomic():
            request = _verified(request)
            request.status, request.started_at, request.handler = Status.IN_PROGRESS, timezone.now(), acting_user(actor)
            request.save(update_fields=["status", "started_at", "handler"])
            _erasure_plan(request)
            _audit(request, "subject_request.erasure_started", actor, steps=request.erasure_steps.count())
            transaction.on_commit(lambda: _erasure_enqueue(request.pk))
        return request
    with transaction.atomic():
        request = _verified(request)
        now = timezone.now()
        if request.kind == Kind.ACCESS:
            counts = subject_data_counts(Subject(digest=request.subject_digest, value=request.subject_id))
            request.receipt = {"held": counts, "rows": sum(counts.values())}
            request.outcome = (
                "A copy of the data held about you is ready to download from your request's page."
                if request.receipt["rows"]
                else "Faro holds no data about you."
            )
        else:
            if SubjectRestriction.objects.filter(subject_digest=request.subject_digest, lifted_at=None).exists():
                raise Conflict("Decisions about this person are already refused (a restriction is in force).")
            SubjectRestriction.objects.create(
                subject_digest=request.subject_digest, request=request, reason=request.kind, since=now
            )
            request.outcome = "No automated decision will be made about you while this is in force."
        request.status, request.started_at, request.completed_at = Status.COMPLETED, now, now
        request.handler = acting_user(actor)
        request.save(update_fields=["status", "started_at", "completed_at", "receipt", "outcome", "handler"])
        _audit(
            request,
            "subject_request.completed",
            actor,
            **({"rows": request.receipt["rows"]} if request.receipt else {}),
        )
    return request


def restriction_lift(*, request: DataSubjectRequest, actor: Any, reason: str) -> SubjectRestriction:
    """End the restriction or objection a request put in force (Art. 18(3): the person is told beforehand)."""
    _handler_check(actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give the reason for lifting it.", extra={"fields": {"reason": ["Required."]}})
    with transaction.atomic():
        restriction = SubjectRestriction.objects.select_for_update().filter(request=request, lifted_at=None).first()
        if restriction is None:
            raise Conflict(f"Request {request.pk} has no restriction in force.")
        restriction.lifted_at, restriction.lift_reason = timezone.now(), reason
        restriction.save(update_fields=["lifted_at", "lift_reason"])
        _audit(request, "subject_request.restriction_lifted", actor)
    return restriction


# --- access --------------------------------------------------------------------------------------------------------


def subject_data_counts(subject: Subject) -> dict[str, int]:
    """How many items each store holds about `subject` (stores holding none are left out)."""
    counts = {handler.store: len(handler.export(subject)) for handler in personal_data.handlers()}
    return {store: count for store, count in counts.items() if count}


def subject_export_bundle(request: DataSubjectRequest, *, actor: Any = None) -> bytes:
    """A ZIP with everything held on the subject: `data.json` (every store's rows) and one CSV per store (Arts. 15,
    20), built when asked for so no copy of it is kept."""
    if request.kind != Kind.ACCESS or request.status != Status.COMPLETED:
        raise Conflict(f"Request {request.pk} is not a completed access request.")
    if not request.subject_id:
        raise Conflict(f"The person of request {request.pk} has since been erased: there is nothing to download.")
    subject = Subject(digest=request.subject_digest, value=request.subject_id)
    stores = {handler.store: (handler.label, handler.export(subject)) for handler in personal_data.handlers()}
    document = {
        "request": request.pk,
        "subject_id": request.subject_id,
        "generated_at": timezone.now().isoformat(),
        "stores": {store: {"label": label, "rows": rows} for store, (label, rows) in stores.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("data.json", json.dumps(document, indent=2, default=str, ensure_ascii=False))
        for store, (_label, rows) in stores.items():
            if rows:
                bundle.writestr(f"{store}.csv", _csv(rows))
    _audit(request, "subject_request.exported", actor, rows=sum(len(rows) for _label, rows in stores.values()))
    return buffer.getvalue()


def _csv(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(name for row in rows for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow({name: _cell(row.get(name)) for name in columns})
    return out.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str, ensure_ascii=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value  # a spreadsheet must not run it as a formula
    return value


# --- erasure -------------------------------------------------------------------------------------------------------


def _erasure_plan(request: DataSubjectRequest) -> int:
    """Add a pending ledger step for every store target that holds the subject and has none yet; returns how many."""
    subject = Subject(digest=request.subject_digest, value=request.subject_id or None)
    planned = set(request.erasure_steps.values_list("store", "target"))
    new = [
        ErasureStep(request=request, store=handler.store, target=str(target))
        for handler in personal_data.handlers()
        for target in handler.targets(subject)
        if (handler.store, str(target)) not in planned
    ]
    ErasureStep.objects.bulk_create(new)
    return len(new)


def _erasure_enqueue(request_id: int) -> None:
    from apps.governance.tasks import erasure_run_task

    erasure_run_task.delay(request_id)


def _lease_seconds() -> float:
    return settings.FARO_JOB_LEASE_SECONDS


def _claim(request_id: int) -> DataSubjectRequest | None:
    """Take the erasure for this process unless another runner holds a live lease on it."""
    now = timezone.now()
    claimed = DataSubjectRequest.objects.filter(
        Q(lease_expires_at=None) | Q(lease_expires_at__lt=now), pk=request_id, status=Status.IN_PROGRESS
    ).update(lease_expires_at=now + timedelta(seconds=_lease_seconds()))
    return DataSubjectRequest.objects.get(pk=request_id) if claimed else None


def _renew(request: DataSubjectRequest) -> None:
    DataSubjectRequest.objects.filter(pk=request.pk).update(
        lease_expires_at=timezone.now() + timedelta(seconds=_lease_seconds())
    )


def _step_run(step: ErasureStep, subject: Subject) -> ErasureStep:
    handler = personal_data.handler_get(step.store)
    step.attempts += 1
    step.started_at = step.started_at or timezone.now()
    ErasureStep.objects.filter(pk=step.pk).update(attempts=step.attempts, started_at=step.started_at)

    def save(data: dict[str, Any]) -> None:
        step.state = data
        ErasureStep.objects.filter(pk=step.pk).update(state=data)

    result = handler.erase(subject, step.target, StepState(data=dict(step.state or {}), save=save))
    step.status, step.count, step.before, step.after = (
        ErasureStep.Status.DONE,
        result.count,
        result.before,
        result.after,
    )
    step.detail, step.finished_at = result.detail, timezone.now()
    step.save(update_fields=["status", "count", "before", "after", "detail", "finished_at"])
    return step


def erasure_run(*, request_id: int) -> DataSubjectRequest | None:
    """Carry out the ledger's pending steps in order, plan again for anything that appeared meanwhile (a new dataset
    version, a new decision), then write the receipt, forget the subject's key and contact, and journal the digest.

    Safe to call any number of times and from any process: a live lease keeps a second runner out, done steps are
    never run again, and a step interrupted anywhere is resumed from its saved state.
    """
    request = _claim(request_id)
    if request is None:
        return None
    subject = Subject(digest=request.subject_digest, value=request.subject_id or None)
    for _round in range(REPLAN_ROUNDS):
        for step in request.erasure_steps.filter(status=ErasureStep.Status.PENDING).order_by("id"):
            try:
                _step_run(step, subject)
            except Exception as exc:
                # Left pending with the reason; the lease is let go so that beat resumes it (`erasures_resume`).
                message = exc.message if isinstance(exc, FaroError) else f"{type(exc).__name__}: {exc}"
                ErasureStep.objects.filter(pk=step.pk).update(detail={"error": message[:500]})
                DataSubjectRequest.objects.filter(pk=request.pk).update(lease_expires_at=None)
                logger.warning("Erasure %s stopped at %s:%s; it will be resumed", request.pk, step.store, step.target)
                raise
            _renew(request)
        with transaction.atomic():
            if not _erasure_plan(request):
                break
    else:
        DataSubjectRequest.objects.filter(pk=request.pk).update(lease_expires_at=None)
        raise Conflict(f"New data about the subject kept appearing during erasure {request.pk}; it will be resumed.")
    return _erasure_complete(request)


def _erasure_complete(request: DataSubjectRequest) -> DataSubjectRequest:
    steps = list(request.erasure_steps.order_by("id"))
    labels = {handler.store: handler.label for handler in personal_data.handlers()}
    receipt = {
        "request": request.pk,
        "subject": request.subject_ref,
        "received_at": request.received_at.isoformat(),
        "started_at": request.started_at.isoformat() if request.started_at else None,
        "completed_at": timezone.now().isoformat(),
        "stores": [
            {
                "store": step.store,
                "label": labels.get(step.store, step.store),
                "target": step.target,
                "removed": step.count,
                "before": step.before,
                "after": step.after,
                "started_at": step.started_at.isoformat() if step.started_at else None,
                "finished_at": step.finished_at.isoformat() if step.finished_at else None,
                **({"detail": step.detail} if step.detail else {}),
            }
            for step in steps
        ],
        "removed": sum(step.count for step in steps),
    }
    with transaction.atomic():
        request = _locked(request)
        request.status, request.completed_at, request.receipt = Status.COMPLETED, timezone.now(), receipt
        request.subject_id, request.contact, request.details = "", "", ""
        request.lease_expires_at = None
        request.outcome = request.outcome or (
            f"Erased: {receipt['removed']} item(s) in {len({s['store'] for s in receipt['stores']})} store(s)."
            if receipt["removed"]
            else "Faro held no data about you."
        )
        request.save()
        _audit(request, "subject_request.erased", None, removed=receipt["removed"], steps=len(steps))
    journal_append(request)
    return request


def erasures_resume() -> list[int]:
    """Queue again every erasure left in progress by a runner that stopped (its lease lapsed)."""
    stale = list(
        DataSubjectRequest.objects.filter(
            Q(lease_expires_at=None) | Q(lease_expires_at__lt=timezone.now()),
            kind=Kind.ERASURE,
            status=Status.IN_PROGRESS,
        ).values_list("pk", flat=True)
    )
    for request_id in stale:
        _erasure_enqueue(request_id)
    return stale


# --- the journal and gdpr_replay ----------------------------------------------------------------------------------


def journal_path() -> Path:
    configured = settings.FARO_ERASURE_JOURNAL
    return Path(configured) if configured else Path(settings.FARO_ARTEFACT_ROOT) / "governance" / "erasures.jsonl"


def journal_append(request: DataSubjectRequest) -> None:
    """One line per completed erasure: its digest, never the key. Kept outside the database, so that a database
    restored from a backup taken before the erasure can be erased again (`gdpr_replay`)."""
    path = journal_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"request": request.pk, "digest": request.subject_digest, "completed_at": request.completed_at.isoformat()}
    with path.open("a", encoding="utf-8") as journal:
        journal.write(json.dumps(line, sort_keys=True) + "\n")


def journal_digests() -> list[str]:
    path = journal_path()
    if not path.exists():
        return []
    digests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                digests.append(str(json.loads(line)["digest"]))
            except (ValueError, KeyError, TypeError):
                raise InvalidInput(f"{path}: line {number} is not a journal entry.") from None
    return digests


@dataclass
class Replay:
    subjects: int = 0
    removed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def gdpr_replay(*, dry_run: bool = False) -> Replay:
    """Erase again every subject whose erasure the database or the journal records, matching by digest: after a
    restore from a backup taken before some erasures, their rows are back and this removes them."""
    completed = DataSubjectRequest.objects.filter(kind=Kind.ERASURE, status=Status.COMPLETED)
    digests = sorted(set(completed.values_list("subject_digest", flat=True)) | set(journal_digests()))
    replay = Replay(subjects=len(digests))
    for digest in digests:
        subject = Subject(digest=digest)
        for handler in personal_data.handlers():
            if dry_run:
                count = len(handler.export(subject))
            else:
                count = sum(
                    handler.erase(subject, target, StepState(data={}, save=lambda data: None)).count
                    for target in handler.targets(subject)
                )
            replay.removed[handler.store] = replay.removed.get(handler.store, 0) + count
    if not dry_run:
        audit_record(
            actor=None, action="subject_request.replayed", data={"subjects": replay.subjects, **replay.removed}
        )
    return replay


def open_requests_due(*, now: datetime | None = None) -> Iterator[DataSubjectRequest]:
    """Open requests past their due date (what the overdue alerts are raised for)."""
    return DataSubjectRequest.objects.filter(
        status__in=DataSubjectRequest.OPEN, due_at__lt=now or timezone.now()
    ).iterator()
