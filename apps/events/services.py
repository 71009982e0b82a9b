"""Writes for events: emitting into the outbox, delivering to webhooks, retrying.

An event is written in the caller's transaction together with one pending delivery per interested
webhook; delivery starts only after that transaction commits. A delivery that fails is retried with
exponential backoff by the `events.deliveries_retry` beat task until it succeeds or runs out of attempts.
"""

import logging
import os
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.core.errors import Conflict, InvalidInput, NotFound
from apps.events import delivery as http
from apps.events.models import OutboxEvent, Webhook, WebhookDelivery, validate_kind
from apps.events.selectors import delivery_due_ids, webhook_list_for_kind

logger = logging.getLogger(__name__)

# A claimed delivery is retried this long after its request timeout if its worker never reports back.
LEASE_MARGIN_SECONDS = 60
DUE_BATCH_SIZE = 1000


def _actor_ref(actor: Any) -> str:
    """Pseudonymous, like the audit log: "user:12", or "system"."""
    pk = getattr(actor, "pk", None)
    return f"user:{pk}" if pk is not None else "system"


def webhook_create(
    *, name: str, url: str, secret_env: str, event_kinds: list[str] | None = None, active: bool = True
) -> Webhook:
    webhook = Webhook(name=name, url=url, secret_env=secret_env, event_kinds=list(event_kinds or []), active=active)
    try:
        webhook.full_clean()
    except ValidationError as exc:
        raise InvalidInput("The webhook is not valid.", extra={"fields": exc.message_dict}) from None
    webhook.save()
    return webhook


def event_emit(*, kind: str, payload: dict[str, Any]) -> OutboxEvent:
    """Record a domain event and a pending delivery for each active webhook that wants its kind.

    Must run inside the transaction of the change the event announces (a RuntimeError otherwise: that
    is a programming error), so the event exists exactly when the change committed. Delivery tasks are
    enqueued on commit; if the broker is unreachable then, the retry task picks the deliveries up.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("event_emit() must be called inside the transaction of the change it announces")
    validate_kind(kind)
    if not isinstance(payload, dict):
        raise TypeError(f"an event payload is a dict, not {type(payload).__name__}")
    event = OutboxEvent.objects.create(kind=kind, payload=payload)
    deliveries = WebhookDelivery.objects.bulk_create(
        [
            WebhookDelivery(event=event, webhook=webhook, next_attempt_at=event.created_at)
            for webhook in webhook_list_for_kind(kind=kind)
        ]
    )
    from apps.events.tasks import delivery_attempt as delivery_attempt_task

    for created in deliveries:
        transaction.on_commit(partial(delivery_attempt_task.delay, created.pk), robust=True)
    return event


def _secret(webhook: Webhook) -> bytes | None:
    value = os.environ.get(webhook.secret_env, "")
    return value.encode() if value else None


def _send(delivery: WebhookDelivery, *, now: datetime) -> http.PostResult:
    """Sign and POST the event. A missing secret is reported like a remote failure, without a request."""
    webhook, event = delivery.webhook, delivery.event
    secret = _secret(webhook)
    if secret is None:
        return http.PostResult(None, f"environment variable {webhook.secret_env} is not set")
    body = http.body_encode(
        event_id=str(event.event_id),
        kind=event.kind,
        created_at=event.created_at.astimezone(UTC).isoformat(),
        payload=event.payload,
    )
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "X-Faro-Event": event.kind,
        "X-Faro-Delivery": str(delivery.pk),
        "X-Faro-Timestamp": str(timestamp),
        "X-Faro-Signature": http.sign(secret, timestamp, body),
    }
    return http.post(webhook.url, body, headers, timeout=settings.FARO_WEBHOOK_TIMEOUT_SECONDS)


def delivery_attempt(*, delivery_id: int, now: datetime | None = None) -> WebhookDelivery:
    """Attempt one pending, due delivery and record the outcome; returns the delivery as it now stands.

    The claim is one conditional update (still pending, still due, attempt count unchanged) that counts
    the attempt and moves `next_attempt_at` past the request timeout: of two workers racing for the same
    delivery exactly one sends it. A delivery that is not pending, not yet due, already claimed, or whose
    webhook is inactive is returned untouched. A 2xx answer delivers it; anything else (another status,
    a network error, a missing secret) schedules the next attempt `FARO_WEBHOOK_BACKOFF_SECONDS` *
    2^(attempts - 1) later, at most an hour, and after `FARO_WEBHOOK_MAX_ATTEMPTS` attempts marks it
    failed. Remote failures never raise; a missing row raises NotFound.
    """
    now = now or timezone.now()
    delivery = WebhookDelivery.objects.select_related("webhook", "event").filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound(f"webhook delivery {delivery_id} does not exist")
    if not delivery.webhook.active:
        return delivery
    attempt = delivery.attempts + 1
    lease_until = now + timedelta(seconds=settings.FARO_WEBHOOK_TIMEOUT_SECONDS + LEASE_MARGIN_SECONDS)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=delivery.attempts, next_attempt_at__lte=now
    ).update(attempts=attempt, next_attempt_at=lease_until)
    if not claimed:
        delivery.refresh_from_db()
        return delivery

    result = _send(delivery, now=now)

    if result.ok:
        changes: dict[str, Any] = {
            "status": WebhookDelivery.Status.DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
            "last_status_code": result.status_code,
            "last_error": "",
        }
    elif attempt >= settings.FARO_WEBHOOK_MAX_ATTEMPTS:
        changes = {"status": WebhookDelivery.Status.FAILED, "next_attempt_at": None}
    else:
        wait = http.backoff_seconds(attempt, base=settings.FARO_WEBHOOK_BACKOFF_SECONDS)
        changes = {"next_attempt_at": now + timedelta(seconds=wait)}
    if not result.ok:
        changes.update(last_status_code=result.status_code, last_error=result.error[:500])
    # Only the claim's owner writes the outcome: if the lease ran out and another worker claimed the
    # delivery meanwhile, the attempt count no longer matches and this late result is dropped.
    WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=attempt).update(
        **changes
    )
    delivery.refresh_from_db()
    if delivery.status == WebhookDelivery.Status.FAILED:
        logger.warning(
            "webhook delivery %s to %s failed after %s attempts: %s",
            delivery.pk,
            delivery.webhook.name,
            attempt,
            delivery.last_error,
        )
    elif not result.ok:
        logger.info("webhook delivery %s attempt %s failed: %s", delivery.pk, attempt, result.error)
    return delivery


def deliveries_due(*, now: datetime | None = None) -> int:
    """Enqueue an attempt for every pending delivery whose next attempt has come; returns how many.

    Run by beat every `FARO_WEBHOOK_RETRY_SECONDS`. A delivery still waiting in the queue from the last
    run may be enqueued again; the claim in `delivery_attempt` makes the extra task a no-op.
    """
    from apps.events.tasks import delivery_attempt as delivery_attempt_task

    ids = delivery_due_ids(now=now or timezone.now(), limit=DUE_BATCH_SIZE)
    for delivery_id in ids:
        delivery_attempt_task.delay(delivery_id)
    return len(ids)


def webhook_delivery_retry(*, delivery: WebhookDelivery, actor: Any = None) -> WebhookDelivery:
    """Give a failed delivery a fresh round of attempts, starting now (the console's "Retry now").

    Only failed deliveries: a pending one is already scheduled (or in flight), a delivered one is done.
    """
    with transaction.atomic():
        reset = WebhookDelivery.objects.filter(pk=delivery.pk, status=WebhookDelivery.Status.FAILED).update(
            status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=timezone.now()
        )
        if not reset:
            current = WebhookDelivery.objects.filter(pk=delivery.pk).values_list("status", flat=True).first()
            raise Conflict(
                f"Delivery #{delivery.pk} is {current or 'gone'}; only failed deliveries can be retried.",
                extra={"status": current},
            )
        from apps.events.tasks import delivery_attempt as delivery_attempt_task

        transaction.on_commit(partial(delivery_attempt_task.delay, delivery.pk), robust=True)
    logger.info("webhook delivery %s reset for a new round of attempts by %s", delivery.pk, _actor_ref(actor))
    delivery.refresh_from_db()
    return delivery
