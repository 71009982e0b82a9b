"""Governance services: appending to the audit chain, verifying it, API tokens and human review of decisions."""

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput
from apps.governance.chain import FIELDS as CHAIN_FIELDS
from apps.governance.chain import GENESIS, ChainCheck, event_hash, verify_rows
from apps.governance.metrics import AUDIT_ANCHOR_TIMESTAMP, AUDIT_HEAD_HASH_PREFIX, AUDIT_HEAD_SEQ, hash_prefix_value
from apps.governance.models import ApiToken, AuditEvent, AuditHead, ReviewRequest

logger = logging.getLogger(__name__)
TOKEN_PREFIX = "faro"  # noqa: S105 -- a public marker, not a secret # nosec B105


def actor_ref(actor: Any) -> str:
    """A pseudonymous reference to whoever acted: a user, a token, or the system."""
    if actor is None:
        return "system"
    if isinstance(actor, str):
        return actor
    if isinstance(actor, ApiToken):
        return f"token:{actor.pk}"
    token = getattr(actor, "token", None)
    if isinstance(token, ApiToken):
        return f"token:{token.pk}"
    if getattr(actor, "pk", None) is not None:
        return f"user:{actor.pk}"
    return "anonymous"


def actor_principal(actor: Any) -> str:
    """The person behind `actor`, for separation of duties: a token counts as the user who created it."""
    if isinstance(actor, ApiToken) or isinstance(getattr(actor, "token", None), ApiToken):
        token = actor if isinstance(actor, ApiToken) else actor.token
        return f"user:{token.created_by_id}" if token.created_by_id else f"token:{token.pk}"
    return actor_ref(actor)


def acting_user(actor: Any) -> Any:
    """The Django user behind `actor`, or None for tokens, the system and anonymous callers."""
    from django.contrib.auth.models import AbstractBaseUser

    return actor if isinstance(actor, AbstractBaseUser) else None


def audit_record(*, actor: Any, action: str, target: Any = None, data: dict[str, Any] | None = None) -> AuditEvent:
    """Append one event to the chain. Call inside the transaction of the change it records."""
    payload = orjson.loads(orjson.dumps(data or {}, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS))
    object_type = target._meta.label_lower if target is not None else ""
    object_id = str(target.pk) if target is not None else ""
    with transaction.atomic():
        AuditHead.objects.get_or_create(id=1)
        head = AuditHead.objects.select_for_update().get(id=1)
        event = AuditEvent(
            seq=head.seq + 1,
            at=timezone.now(),
            actor=actor_ref(actor),
            action=action,
            object_type=object_type,
            object_id=object_id,
            data=payload,
            prev_hash=head.hash,
        )
        event.hash = event_hash({name: getattr(event, name) for name in CHAIN_FIELDS})
        event.save()
        AuditHead.objects.filter(id=1).update(seq=event.seq, hash=event.hash)
    return event


def audit_verify(*, anchors: Mapping[int, str] | None = None) -> ChainCheck:
    """Walk the chain from #1; name the first event whose sequence, link or hash is wrong, then check the head
    row against the last event and, given `anchors` (seq to hash, from FARO_AUDIT_ANCHOR_FILE), that every
    anchored event still has the hash it had when it was anchored."""
    head = AuditHead.objects.filter(id=1).values_list("seq", "hash").first() or (0, GENESIS)
    rows = AuditEvent.objects.order_by("seq").values(*CHAIN_FIELDS).iterator(chunk_size=2000)
    return verify_rows(rows, head=head, anchors=anchors)


def audit_event_rows(*, since: datetime | None = None, until: datetime | None = None) -> QuerySet:
    """The chain's events at or after `since` and before `until`, in seq order, as dicts of the chain's
    fields (what an export holds; `chain.write_jsonl` / `write_csv` write them)."""
    events = AuditEvent.objects.order_by("seq")
    if since is not None:
        events = events.filter(at__gte=since)
    if until is not None:
        events = events.filter(at__lt=until)
    return events.values(*CHAIN_FIELDS)


@dataclass(frozen=True)
class AuditAnchor:
    seq: int
    hash: str
    at: datetime


def audit_anchor() -> AuditAnchor:
    """Record the chain's head outside the database, so that rewriting the whole chain (and its head) later
    no longer goes unnoticed: one INFO log line, the faro_audit_head_* gauges, and a JSON line appended to
    FARO_AUDIT_ANCHOR_FILE when it is set. `audit_verify(anchors=...)` checks the chain against that file.

    Reads the head row only (one query, no lock): it names the newest committed event. A file that cannot
    be written fails the task after the log line and the gauges are out."""
    seq, digest = AuditHead.objects.filter(id=1).values_list("seq", "hash").first() or (0, GENESIS)
    at = timezone.now()
    logger.info("audit head anchored seq=%d hash=%s", seq, digest)
    AUDIT_HEAD_SEQ.set(seq)
    AUDIT_HEAD_HASH_PREFIX.set(hash_prefix_value(digest))
    AUDIT_ANCHOR_TIMESTAMP.set(at.timestamp())
    path = settings.FARO_AUDIT_ANCHOR_FILE
    if path:
        line = orjson.dumps({"seq": seq, "hash": digest, "at": at.isoformat()}, option=orjson.OPT_APPEND_NEWLINE)
        try:
            # One write on an O_APPEND descriptor: a line never interleaves with another writer's, and it is
            # on disk before the task reports success.
            descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(descriptor, line)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as exc:
            logger.error("audit head not written to the anchor file %s: %s", path, exc)
            raise
    return AuditAnchor(seq, digest, at)


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def token_create(
    *, name: str, scopes: list[str], created_by: Any = None, expires_at: datetime | None = None
) -> tuple[ApiToken, str]:
    """Create a token for a client; return the row and the plaintext token, which is not stored."""
    name = name.strip()
    if not name:
        raise InvalidInput("A token needs a client name.", extra={"fields": {"name": ["This field is required."]}})
    valid = set(ApiToken.Scope.values)
    unknown = sorted(set(scopes) - valid)
    if unknown or not scopes:
        raise InvalidInput(
            f"Unknown scopes: {', '.join(unknown)}; choose from {', '.join(sorted(valid))}."
            if unknown
            else f"A token needs at least one scope: {', '.join(sorted(valid))}.",
            extra={"fields": {"scopes": unknown or ["This field is required."]}},
        )
    prefix = secrets.token_hex(4)
    plaintext = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = ApiToken.objects.create(
            name=name,
            prefix=prefix,
            digest=_digest(plaintext),
            scopes=sorted(set(scopes)),
            created_by=created_by,
            expires_at=expires_at,
        )
        audit_record(
            actor=created_by, action="token.created", target=token, data={"name": name, "scopes": token.scopes}
        )
    return token, plaintext


def token_revoke(*, token: ApiToken, actor: Any) -> ApiToken:
    with transaction.atomic():
        changed = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if changed:
            audit_record(actor=actor, action="token.revoked", target=token)
    _token_cache.clear()
    token.refresh_from_db()
    return token


_token_cache: dict[str, tuple[float, ApiToken | None]] = {}
_token_cache_lock = threading.Lock()


def token_authenticate(plaintext: str) -> ApiToken | None:
    """The live token matching `plaintext`, or None. Cached per process for FARO_TOKEN_CACHE_SECONDS."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        return None
    digest = _digest(plaintext)
    now = time.monotonic()
    ttl = settings.FARO_TOKEN_CACHE_SECONDS
    cached = _token_cache.get(digest) if ttl else None
    if cached is not None and cached[0] > now:
        token = cached[1]
    else:
        token = ApiToken.objects.filter(prefix=parts[1]).first()
        if token is not None and not hmac.compare_digest(token.digest, digest):
            token = None
        if ttl:
            with _token_cache_lock:
                if len(_token_cache) > 10_000:
                    _token_cache.clear()
                _token_cache[digest] = (now + ttl, token)
    if token is None or token.revoked_at is not None:
        return None
    if token.expires_at is not None and token.expires_at <= timezone.now():
        return None
    return token


REVIEW_REASON_MAX_CHARS = 2000
REVIEW_CONTACT_MAX_CHARS = ReviewRequest._meta.get_field("contact").max_length
REVIEW_NOTE_MAX_CHARS = 4000
REVIEW_CHANGED_OUTCOME_MAX_CHARS = ReviewRequest._meta.get_field("changed_outcome").max_length
REVIEW_PERMISSION = "governance.review_decision"


def review_link_digest(token: str) -> str:
    """The SHA-256 under which a person's review link is stored (the link itself never is)."""
    return _digest(token)


def review_request_create(
    *,
    request_id: uuid.UUID | str,
    model_name: str,
    model_version: int,
    subject_id: str = "",
    reason: str = "",
    contact: str = "",
    decision: Mapping[str, Any] | None = None,
    actor: Any = None,
) -> tuple[ReviewRequest, str | None]:
    """Record that a person asked for a human to review the decision `request_id` (GDPR Art. 22(3)).

    The caller looked the decision up in the decision log and passes what names it and `decision`, a snapshot
    of it as logged (governance cannot read that log, and the case must outlive it). Returns the case and the
    person's private link token: 256 random bits, returned once and stored only as its SHA-256, like API tokens.

    Idempotent: one review per decision; asking again returns the first request unchanged and no token (the
    first one cannot be shown again), and writes no second audit event. The audit event names the decision,
    never what the person wrote: the reason and the contact stay in the review row (which erasure can reach),
    not in the append-only chain.
    """
    reason, contact = reason.strip(), contact.strip()
    problems: dict[str, list[str]] = {}
    if len(reason) > REVIEW_REASON_MAX_CHARS:
        problems["reason"] = [f"Ensure this value has at most {REVIEW_REASON_MAX_CHARS} characters."]
    if len(contact) > REVIEW_CONTACT_MAX_CHARS:
        problems["contact"] = [f"Ensure this value has at most {REVIEW_CONTACT_MAX_CHARS} characters."]
    if problems:
        raise InvalidInput("The request for review is too long.", extra={"fields": problems})
    request_id = uuid.UUID(str(request_id))
    # Plain JSON (dates and ids as text), so the snapshot reads back exactly as it was stored on every database.
    snapshot = orjson.loads(orjson.dumps(dict(decision or {}), option=orjson.OPT_NON_STR_KEYS))
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        review, created = ReviewRequest.objects.get_or_create(
            request_id=request_id,
            defaults={
                "model_name": model_name,
                "model_version": model_version,
                "subject_id": subject_id,
                "reason": reason,
                "contact": contact,
                "decision": snapshot,
                "link_digest": review_link_digest(token),
            },
        )
        if created:
            audit_record(
                actor=actor,
                action="review_request.created",
                target=review,
                data={
                    "request_id": str(request_id),
                    "model_name": model_name,
                    "model_version": model_version,
                    "with_reason": bool(reason),
                    "with_contact": bool(contact),
                },
            )
    return review, (token if created else None)


def _reviewer(actor: Any) -> Any:
    """The user acting as reviewer; anyone else is refused (PermissionDenied: the edges answer 403)."""
    user = acting_user(actor)
    if user is None or not user.is_active or not user.has_perm(REVIEW_PERMISSION):
        raise PermissionDenied("Reviewing decisions needs the permission governance.review_decision.")
    return user


def _taken_by(review: ReviewRequest) -> str:
    name = review.reviewer.get_username() if review.reviewer is not None else "another reviewer"
    return f"{name} on {timezone.localtime(review.taken_at):%d %b %Y %H:%M}" if review.taken_at else name


def review_request_take(*, review: ReviewRequest, actor: Any) -> ReviewRequest:
    """A reviewer takes an open case: status in review, `reviewer` and `taken_at` set, audited.

    The row is locked while it is checked and changed, so of two reviewers taking it at once the second is
    told who has it (Conflict) and changes nothing. Taking one's own case again changes nothing and records
    nothing. A case in review whose reviewer's account is gone (or was moved by hand before this workflow)
    may be taken by another reviewer; a decided case may not.
    """
    user = _reviewer(actor)
    with transaction.atomic():
        # No select_related("reviewer"): PostgreSQL cannot lock the nullable side of an outer join.
        locked = ReviewRequest.objects.select_for_update().get(pk=review.pk)
        if locked.is_decided:
            raise Conflict(
                f"This case was already decided ({locked.get_status_display().lower()}); it cannot be taken."
            )
        if locked.status == ReviewRequest.Status.IN_REVIEW and locked.reviewer_id == user.pk:
            return locked
        if locked.status == ReviewRequest.Status.IN_REVIEW and locked.reviewer_id is not None:
            raise Conflict(f"This case was already taken by {_taken_by(locked)}.")
        previous = locked.status
        locked.status = ReviewRequest.Status.IN_REVIEW
        locked.reviewer = user
        locked.taken_at = timezone.now()
        locked.save(update_fields=["status", "reviewer", "taken_at"])
        audit_record(
            actor=user,
            action="review_request.taken",
            target=locked,
            data={"request_id": str(locked.request_id), "from": previous, "to": locked.status},
        )
    return locked


def review_request_decide(
    *, review: ReviewRequest, actor: Any, outcome: str, note: str, changed_outcome: str = ""
) -> ReviewRequest:
    """The reviewer who took the case records its outcome, once: `upheld` or `changed`, with `note`, the
    explanation the person reads (required), and for `changed` the new decision (required, and not the one
    the model made). Audited with the outcome only: the note and the new decision may name the person, and
    the chain is append-only.

    Refused with a Conflict, changing nothing: a case not taken yet, a case taken by someone else, a case
    already decided. The row is locked while it is checked and changed.
    """
    user = _reviewer(actor)
    note, changed_outcome = note.strip(), changed_outcome.strip()
    problems: dict[str, list[str]] = {}
    if outcome not in ReviewRequest.DECIDED:
        choices = ", ".join(ReviewRequest.DECIDED)
        problems["outcome"] = [f"Choose the outcome: {choices}."]
    if not note:
        problems["outcome_note"] = ["Explain the outcome to the person: this field is required."]
    elif len(note) > REVIEW_NOTE_MAX_CHARS:
        problems["outcome_note"] = [f"Ensure this value has at most {REVIEW_NOTE_MAX_CHARS} characters."]
    original = (review.decision.get("output") or {}).get("label") if isinstance(review.decision, dict) else None
    if outcome == ReviewRequest.Status.CHANGED:
        if not changed_outcome:
            problems["changed_outcome"] = ["Say what the decision is now: this field is required when it changed."]
        elif len(changed_outcome) > REVIEW_CHANGED_OUTCOME_MAX_CHARS:
            problems["changed_outcome"] = [
                f"Ensure this value has at most {REVIEW_CHANGED_OUTCOME_MAX_CHARS} characters."
            ]
        elif original is not None and changed_outcome == str(original):
            problems["changed_outcome"] = [
                f"{changed_outcome!r} is the decision the model made; to keep it, record the decision as upheld."
            ]
    elif outcome == ReviewRequest.Status.UPHELD and changed_outcome:
        problems["changed_outcome"] = ["Leave the new decision empty when the decision is upheld."]
    if problems:
        raise InvalidInput("The outcome cannot be recorded as it is.", extra={"fields": problems})
    with transaction.atomic():
        locked = ReviewRequest.objects.select_for_update().get(pk=review.pk)
        if locked.is_decided:
            raise Conflict(
                f"This case was already decided ({locked.get_status_display().lower()}); "
                "its outcome is recorded once and cannot be changed."
            )
        if locked.status != ReviewRequest.Status.IN_REVIEW or locked.reviewer_id is None:
            raise Conflict("Take the case before recording its outcome.")
        if locked.reviewer_id != user.pk:
            raise Conflict(f"This case was taken by {_taken_by(locked)}: only they can record its outcome.")
        locked.status = outcome
        locked.outcome_note = note
        locked.changed_outcome = changed_outcome
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "outcome_note", "changed_outcome", "decided_at"])
        audit_record(
            actor=user,
            action="review_request.decided",
            target=locked,
            data={"request_id": str(locked.request_id), "from": ReviewRequest.Status.IN_REVIEW, "to": outcome},
        )
    return locked
