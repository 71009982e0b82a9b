"""Governance: the hash-chained audit log, API tokens and requests for human review."""

from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """One state change, chained to the previous event by its hash.

    `hash` = SHA-256 over this row's canonical content and `prev_hash`; editing, deleting or inserting a
    row breaks the chain, which `manage.py audit_verify` detects. Actors and subjects are pseudonymous
    references ("user:12", "token:3"), never names or personal data.
    """

    seq = models.PositiveBigIntegerField(unique=True)
    at = models.DateTimeField()
    actor = models.CharField(max_length=100)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"


class AuditHead(models.Model):
    """A single row naming the last event: appends lock it, and a truncated chain no longer matches it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="0" * 64)

    def __str__(self) -> str:
        return f"audit head #{self.seq}"


class ApiToken(models.Model):
    """A REST client's bearer token. Only its SHA-256 is stored; the token is shown once, at creation."""

    class Scope(models.TextChoices):
        PREDICT = "predict", "Predict"
        READ = "read", "Read"
        WRITE = "write", "Write"
        ADMIN = "admin", "Admin"

    name = models.CharField(max_length=100, help_text="The client this token belongs to.")
    prefix = models.CharField(max_length=12, unique=True, help_text="Public part, used to find the token.")
    digest = models.CharField(max_length=64, unique=True)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or self.Scope.ADMIN in self.scopes


class ReviewRequest(models.Model):
    """A person asked for a human to review an automated decision (GDPR Art. 22(3)).

    It names the decision by its request id; the review workflow (assignment, outcome) builds on it.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_REVIEW = "in_review", "In review"
        UPHELD = "upheld", "Decision upheld"
        CHANGED = "changed", "Decision changed"

    request_id = models.UUIDField(db_index=True, help_text="The decision's request id in the decision log.")
    model_name = models.CharField(max_length=63)
    model_version = models.PositiveIntegerField()
    subject_id = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True, help_text="What the person wrote, if anything.")
    contact = models.CharField(max_length=200, blank=True, help_text="How to reach the person, if they said.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["request_id"], name="one_review_per_decision")]

    def __str__(self) -> str:
        return f"review of decision {self.request_id} ({self.status})"
