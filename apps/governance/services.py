"""Governance services: appending to the audit chain, verifying it, API tokens and requests for human review."""

import hashlib
import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput
from apps.governance.models import ApiToken, AuditEvent, AuditHead, ReviewRequest

GENESIS = "0" * 64
TOKEN_PREFIX = "faro"  # noqa: S105 -- a public marker, not a secret


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


def _event_hash(event: AuditEvent) -> str:
    """SHA-256 over the event's canonical content and the previous event's hash."""
    canonical = orjson.dumps(
        {
            "seq": event.seq,
            "at": event.at.astimezone(UTC).isoformat(),
            "actor": event.actor,
            "action": event.action,
            "object_type": event.object_type,
            "object_id": event.object_id,
            "data": event.data,
            "prev_hash": event.prev_hash,
        },
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


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
        event.hash = _event_hash(event)
        event.save()
        AuditHead.objects.filter(id=1).update(seq=event.seq, hash=event.hash)
    return event


@dataclass(frozen=True)
class AuditVerification:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""


def audit_verify() -> AuditVerification:
    """Walk the chain from the start; name the first row whose hash, link or sequence is wrong."""
    expected_prev = GENESIS
    expected_seq = 1
    checked = 0
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return AuditVerification(
                False,
                checked,
                event.seq,
                f"expected event #{expected_seq}, found #{event.seq} (events were deleted or inserted)",
            )
        if event.prev_hash != expected_prev:
            return AuditVerification(False, checked, event.seq, "prev_hash does not match the previous event's hash")
        recomputed = _event_hash(event)
        if recomputed != event.hash:
            return AuditVerification(False, checked, event.seq, "content does not match its hash (the row was edited)")
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = AuditHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, GENESIS)
    if head_seq != checked or head_hash != expected_prev:
        return AuditVerification(
            False,
            checked,
            checked + 1 if head_seq > checked else head_seq,
            f"the chain ends at #{checked} but its head records #{head_seq} (events were removed from the end)"
            if head_seq > checked
            else "the chain head does not match the last event",
        )
    return AuditVerification(True, checked)


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


def review_request_create(
    *,
    request_id: uuid.UUID | str,
    model_name: str,
    model_version: int,
    subject_id: str = "",
    reason: str = "",
    contact: str = "",
    actor: Any = None,
) -> ReviewRequest:
    """Record that a person asked for a human to review the decision `request_id` (GDPR Art. 22(3)).

    The caller looked the decision up in the decision log and passes what names it (governance cannot read
    that log). Idempotent: one review per decision; asking again returns the first request unchanged, and
    writes no second audit event. The audit event names the decision, never what the person wrote: the
    reason and the contact stay in the review row (which erasure can reach), not in the append-only chain.
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
    with transaction.atomic():
        review, created = ReviewRequest.objects.get_or_create(
            request_id=request_id,
            defaults={
                "model_name": model_name,
                "model_version": model_version,
                "subject_id": subject_id,
                "reason": reason,
                "contact": contact,
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
    return review


def review_request_status_set(
    *, review: ReviewRequest, status: str, actor: Any, seen_status: str | None = None
) -> ReviewRequest:
    """Move a request for review to `status` (the console's edit). One conditional update from the status the
    caller saw (`seen_status`, else `review.status`), so of two reviewers editing at once only the first
    moves it and the second gets a Conflict; a change is audited, setting the same status is not."""
    if status not in ReviewRequest.Status.values:
        raise InvalidInput(
            f"Unknown status {status!r}; choose from {', '.join(ReviewRequest.Status.values)}.",
            extra={"fields": {"status": [f"Unknown status {status!r}."]}},
        )
    previous = seen_status or review.status
    if status == previous:
        return review
    with transaction.atomic():
        changed = ReviewRequest.objects.filter(pk=review.pk, status=previous).update(status=status)
        if not changed:
            raise Conflict(
                f"The review's status changed meanwhile (it is no longer {previous!r}); reload and try again."
            )
        audit_record(
            actor=actor,
            action="review_request.status_changed",
            target=review,
            data={"request_id": str(review.request_id), "from": previous, "to": status},
        )
    review.refresh_from_db()
    return review
