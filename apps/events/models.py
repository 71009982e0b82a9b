"""Events: a transactional outbox of domain events and their deliveries to configured webhooks."""

import re
import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q

KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
ENV_NAME_PATTERN = re.compile(r"^[A-Z_][A-Z0-9_]*$")


def validate_kind(value: str) -> None:
    if not isinstance(value, str) or not KIND_PATTERN.match(value):
        raise ValidationError(
            f"{value!r} is not an event kind (dotted lower-case words, e.g. model_version.ready)", code="invalid"
        )


def validate_event_kinds(value) -> None:
    if not isinstance(value, list):
        raise ValidationError('Give a JSON list of event kinds, e.g. ["model_version.ready"], or [] for all.')
    for kind in value:
        validate_kind(kind)
    if len(set(value)) != len(value):
        raise ValidationError("An event kind is listed twice.")


def validate_webhook_url(value: str) -> None:
    """http or https with a host. Hosts without a dot (a service name on an internal network) are fine."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a malformed port
    except ValueError:
        raise ValidationError(f"{value!r} is not a URL.") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationError("The URL must start with http:// or https://.")
    if not parts.hostname:
        raise ValidationError("The URL has no host.")
    if any(char.isspace() or ord(char) < 32 for char in value):
        raise ValidationError("The URL contains whitespace or control characters.")


def validate_env_name(value: str) -> None:
    if not ENV_NAME_PATTERN.match(value or ""):
        raise ValidationError(
            f"{value!r} is not an environment variable name (capital letters, digits and _, e.g. "
            "FARO_WEBHOOK_SECRET_CRM). Give the variable's name here, never the secret itself."
        )


class Webhook(models.Model):
    """A receiver of events: an HTTP endpoint that gets a signed POST for every event of the kinds it
    wants. The signing secret stays in the environment of the worker processes; the row names the variable."""

    name = models.CharField(max_length=100, unique=True)
    url = models.CharField(max_length=500, validators=[validate_webhook_url], help_text="http:// or https://")
    event_kinds = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_event_kinds],
        help_text='Event kinds to send, e.g. ["model_version.ready"]. Empty: every kind.',
    )
    secret_env = models.CharField(
        "secret environment variable",
        max_length=100,
        validators=[validate_env_name],
        help_text="Name of the environment variable holding the HMAC signing secret, e.g. FARO_WEBHOOK_SECRET_CRM. "
        "Set it for the worker processes; the secret is never stored in the database.",
    )
    active = models.BooleanField(default=True, help_text="Inactive webhooks get no new deliveries and no retries.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, kind: str) -> bool:
        return not self.event_kinds or kind in self.event_kinds


class OutboxEvent(models.Model):
    """A domain event, written in the same transaction as the change it announces: it exists exactly
    when that change committed. `event_id` is what receivers use to recognise a repeated delivery."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=100, db_index=True, validators=[validate_kind])
    payload = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk}"


class WebhookDelivery(models.Model):
    """One event on its way to one webhook, with the outcome of the last attempt.

    Pending deliveries are attempted when `next_attempt_at` has come. A worker claims one by moving
    `next_attempt_at` forward by a lease and counting the attempt in the same conditional update, so no two
    workers send it at once and a worker that dies mid-request leaves it to be retried when the lease ends.
    `failed` means Faro gave up after the configured number of attempts.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DELIVERED = "delivered", "Delivered"
        FAILED = "failed", "Failed"

    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, related_name="deliveries")
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts started, successful or not.")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["event", "webhook"], name="events_delivery_once_per_webhook")]
        indexes = [
            # Only pending rows are ever looked up by time; the index stays as small as the backlog.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="events_delivery_due")
        ]

    def __str__(self) -> str:
        return f"delivery #{self.pk}"
