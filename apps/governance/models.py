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
    """A person asked for a human to review an automated decision (GDPR Art. 22(3)): the review case.

    It names the decision by its request id and keeps `decision`, a snapshot of the decision as the decision log
    held it when the person asked (outputs, explanation, minimised inputs, model version, time): the case must
    still show what was reviewed after retention has purged the log. A reviewer takes the case (`reviewer`,
    `taken_at`, status in review), then records the outcome once: upheld or changed, with an explanation for the
    person (`outcome_note`) and, when changed, the new decision (`changed_outcome`). The person follows it on a
    private link; only the link's SHA-256 is stored (`link_digest`).
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        IN_REVIEW = "in_review", "In review"
        UPHELD = "upheld", "Decision upheld"
        CHANGED = "changed", "Decision changed"

    DECIDED = (Status.UPHELD, Status.CHANGED)

    request_id = models.UUIDField(db_index=True, help_text="The decision's request id in the decision log.")
    model_name = models.CharField(max_length=63)
    model_version = models.PositiveIntegerField()
    subject_id = models.CharField(max_length=200, blank=True)
    reason = models.TextField(blank=True, help_text="What the person wrote, if anything.")
    contact = models.CharField(max_length=200, blank=True, help_text="How to reach the person, if they said.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    decision = models.JSONField(
        default=dict, blank=True, help_text="The decision as logged when the review was asked for (a snapshot)."
    )
    link_digest = models.CharField(
        max_length=64, unique=True, null=True, blank=True, editable=False, help_text="SHA-256 of the person's link."
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="review_cases"
    )
    taken_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    outcome_note = models.TextField(blank=True, help_text="The reviewer's explanation, shown to the person.")
    changed_outcome = models.CharField(max_length=200, blank=True, help_text="The new decision, when changed.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["request_id"], name="one_review_per_decision")]
        permissions = [("review_decision", "Can review decisions (take a case and record its outcome)")]

    def __str__(self) -> str:
        return f"review of decision {self.request_id} ({self.status})"

    @property
    def is_decided(self) -> bool:
        return self.status in self.DECIDED


class DataSubjectRequest(models.Model):
    """A person's request under GDPR Arts. 15-22, from receipt to its answer, within the legal deadline.

    The subject is named by the subject key of the datasets (`subject_id`) and, always, by its keyed digest
    (`subject_digest`): once an erasure is carried out the raw key and the contact details are cleared and only the
    digest stays, which is what the erasure journal and `gdpr_replay` use. The due date is one month after receipt,
    extendable once by up to two further months with a recorded reason (Art. 12(3)). The person follows the request
    on a private link; only its SHA-256 is stored. (Human review of one decision, Art. 22(3), is asked for from the
    decision itself and handled as a `ReviewRequest`.)
    """

    class Kind(models.TextChoices):
        ACCESS = "access", "Access and portable copy (Arts. 15, 20)"
        ERASURE = "erasure", "Erasure (Art. 17)"
        RESTRICTION = "restriction", "Restriction of processing (Art. 18)"
        OBJECTION = "objection", "Objection to automated decisions (Art. 21)"

    class Status(models.TextChoices):
        RECEIVED = "received", "Received: identity to verify"
        VERIFIED = "verified", "Identity verified: to carry out"
        IN_PROGRESS = "in_progress", "Being carried out"
        COMPLETED = "completed", "Completed"
        REFUSED = "refused", "Refused"

    OPEN = (Status.RECEIVED, Status.VERIFIED, Status.IN_PROGRESS)

    kind = models.CharField(max_length=12, choices=Kind.choices)
    subject_id = models.CharField(max_length=200, blank=True, help_text="The subject key; cleared after an erasure.")
    subject_digest = models.CharField(max_length=64, db_index=True, editable=False)
    contact = models.CharField(max_length=200, blank=True, help_text="How to answer the person; cleared when closed.")
    details = models.TextField(blank=True, help_text="What the person wrote.")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    received_at = models.DateTimeField()
    due_at = models.DateTimeField(help_text="One month after receipt, unless extended.")
    extended_at = models.DateTimeField(null=True, blank=True)
    extension_reason = models.TextField(blank=True)
    verified_at = models.DateTimeField(null=True, blank=True)
    verification = models.CharField(max_length=200, blank=True, help_text="How the person's identity was checked.")
    handler = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="subject_requests"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="An erasure whose runner stops renewing this is resumed by another."
    )
    completed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="The answer given to the person (or why it was refused).")
    receipt = models.JSONField(default=dict, blank=True, help_text="What was done, store by store.")
    link_digest = models.CharField(max_length=64, unique=True, null=True, blank=True, editable=False)
    created_by = models.CharField(max_length=100, blank=True, help_text="user:N, or 'subject' for the page.")

    class Meta:
        ordering = ["due_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "subject_digest"],
                condition=models.Q(status__in=["received", "verified", "in_progress"]),
                name="one_open_request_per_kind_and_subject",
            )
        ]
        permissions = [("handle_subjectrequest", "Can verify, carry out and close data-subject requests")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} request {self.pk} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    @property
    def subject_ref(self) -> str:
        return f"subject:{self.subject_digest[:16]}"


class ErasureStep(models.Model):
    """One store-and-target of an erasure, in the ledger: done steps are never run again, so an interrupted erasure
    resumes where it stopped; `gdpr_replay` runs every store again for the request's digest after a restore."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        DONE = "done", "Done"

    request = models.ForeignKey(DataSubjectRequest, on_delete=models.PROTECT, related_name="erasure_steps")
    store = models.CharField(max_length=60)
    target = models.CharField(max_length=100)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    state = models.JSONField(default=dict, blank=True, help_text="Progress a step saved with its change.")
    count = models.PositiveBigIntegerField(default=0)
    before = models.CharField(max_length=64, blank=True)
    after = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["request", "id"]
        constraints = [
            models.UniqueConstraint(fields=["request", "store", "target"], name="one_erasure_step_per_target")
        ]

    def __str__(self) -> str:
        return f"{self.store}:{self.target} ({self.status})"


class SubjectRestriction(models.Model):
    """Decisions about this subject are refused while it is in force: a restriction (Art. 18) or an upheld
    objection (Art. 21). Held by digest only."""

    subject_digest = models.CharField(max_length=64)
    request = models.ForeignKey(DataSubjectRequest, on_delete=models.PROTECT, related_name="restrictions")
    reason = models.CharField(max_length=12, choices=DataSubjectRequest.Kind.choices)
    since = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lift_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-since"]
        constraints = [
            models.UniqueConstraint(
                fields=["subject_digest"], condition=models.Q(lifted_at=None), name="one_restriction_in_force"
            )
        ]

    def __str__(self) -> str:
        return f"{self.reason} of subject:{self.subject_digest[:16]}"
