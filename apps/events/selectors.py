"""Reads for events: which webhooks want a kind, which deliveries are due."""

from datetime import datetime

from apps.events.models import Webhook, WebhookDelivery


def webhook_list_for_kind(*, kind: str) -> list[Webhook]:
    """Active webhooks that want `kind` (an empty kind list wants every kind). Webhooks are few, and a
    JSON-list lookup is not portable across SQLite and PostgreSQL, so the kind filter runs here."""
    return [webhook for webhook in Webhook.objects.filter(active=True) if webhook.wants(kind)]


def delivery_due_ids(*, now: datetime, limit: int) -> list[int]:
    """Ids of pending deliveries to active webhooks whose next attempt has come, oldest first."""
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, webhook__active=True
        )
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )
