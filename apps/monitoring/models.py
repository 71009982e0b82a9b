"""Monitoring state: drift and quality reports, one per run, so both can be charted over time, and alerts."""

from django.db import models

from apps.registry.models import ModelVersion, RegisteredModel


class DriftReport(models.Model):
    """The served inputs of one model version in a time window against its training data (skew).

    `features` holds one entry per monitored input (apps.monitoring.drift.FeatureDrift as a dict); inputs
    the log does not keep as sent (personal or special-category columns) and date-time inputs are listed
    in `excluded` with the reason, never given made-up numbers.
    """

    class Status(models.TextChoices):
        OK = "ok", "No drift"
        DRIFTED = "drifted", "Drifted"
        INSUFFICIENT_DATA = "insufficient_data", "Not enough data"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_reports")

    class Reference(models.TextChoices):
        TRAINING = "training", "The training data (skew)"
        WINDOW = "window", "An earlier production window (drift)"

    reference = models.CharField(
        max_length=20,
        choices=Reference.choices,
        default=Reference.TRAINING,
        help_text="What the window is compared with.",
    )
    reference_start = models.DateTimeField(null=True, blank=True, help_text="The production reference window.")
    reference_end = models.DateTimeField(null=True, blank=True)
    prediction = models.JSONField(
        null=True, blank=True, help_text="Drift of the model's output (the positive class's probability, or the value)."
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField(help_text="Logged decisions of the version in the window.")
    status = models.CharField(max_length=20, choices=Status.choices)
    verdict = models.JSONField(help_text="The importance-weighted verdict for the model.")
    features = models.JSONField(help_text="Per input: distances, tests, missing and unseen rates, status, reason.")
    excluded = models.JSONField(default=dict, blank=True, help_text="Inputs not monitored, and why.")
    requested_by = models.CharField(max_length=64, blank=True, help_text="system (scheduled), user:N or token:N.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_version", "created_at"], name="drift_version_time")]

    def __str__(self) -> str:
        return f"drift of version {self.model_version_id} up to {self.window_end:%Y-%m-%d %H:%M}: {self.status}"


class QualityReport(models.Model):
    """How well one model version decided in a time window: measured from the feedback labels that have
    arrived, and, for a binary classifier, estimated from its probabilities (CBPE) for every decision, so the
    window has a number before its labels come in. `measured` and `estimated` hold
    apps.monitoring.quality results as dicts (None where there is nothing to measure, with the reason)."""

    class Status(models.TextChoices):
        OK = "ok", "Meets the SLA"
        BELOW_SLA = "below_sla", "Below the SLA minimum"
        NO_SLA = "no_sla", "No SLA minimum set"
        INSUFFICIENT_DATA = "insufficient_data", "Not enough data"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="quality_reports")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    rows = models.PositiveIntegerField(help_text="Decisions of the version in the window.")
    labelled = models.PositiveIntegerField(help_text="Of those, decisions whose ground truth has arrived.")
    label_delay_seconds = models.FloatField(
        null=True, blank=True, help_text="Median time from a decision to its label, over the labelled ones."
    )
    metric = models.CharField(max_length=16, help_text="The model's quality metric, as its SLA names it.")
    value = models.FloatField(null=True, blank=True, help_text="That metric measured from the labels.")
    estimated_value = models.FloatField(null=True, blank=True, help_text="That metric estimated without labels.")
    status = models.CharField(max_length=20, choices=Status.choices)
    measured = models.JSONField(null=True, blank=True)
    estimated = models.JSONField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="Why a number is missing, in words.")
    requested_by = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["model_version", "created_at"], name="quality_version_time")]

    def __str__(self) -> str:
        return f"quality of version {self.model_version_id} up to {self.window_end:%Y-%m-%d %H:%M}: {self.status}"


class Alert(models.Model):
    """Something an operator or a product manager must look at: raised by drift, quality, an SLO or a job,
    notified once when it opens (e-mail, the `alert.opened` event to webhooks), and kept open while its cause
    lasts. One alert per `key` is open at a time: the same cause raised again counts an occurrence."""

    class Kind(models.TextChoices):
        DRIFT = "drift", "Drift"
        QUALITY = "quality", "Live quality"
        SLO = "slo", "SLO"
        JOB = "job", "Failing job"
        PRIVACY = "privacy", "Data-subject request"

    class Severity(models.TextChoices):
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    key = models.CharField(max_length=200, help_text="What it is about, e.g. drift:credit or slo:credit:latency.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.OPEN)
    registered_model = models.ForeignKey(
        "registry.RegisteredModel", null=True, blank=True, on_delete=models.CASCADE, related_name="alerts"
    )
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    occurrences = models.PositiveIntegerField(default=1)
    opened_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField()
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=64, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=64, blank=True, help_text="system when its cause went away.")

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~models.Q(status="resolved"), name="one_unresolved_alert_per_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.kind} alert: {self.title} ({self.status})"


class SloReport(models.Model):
    """A registered model's service-level objectives, from its SLA, over a rolling window: each objective's
    target, what was measured, whether it is met, and the share of its error budget left (1 untouched,
    0 or less spent). `objectives` holds one dict per objective (latency, availability, quality)."""

    registered_model = models.ForeignKey(
        "registry.RegisteredModel", on_delete=models.CASCADE, related_name="slo_reports"
    )
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    requests = models.PositiveIntegerField(help_text="Requests answered or failed in the window.")
    objectives = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["registered_model", "created_at"], name="slo_model_time")]

    def __str__(self) -> str:
        return f"SLOs of {self.registered_model_id} up to {self.window_end:%Y-%m-%d %H:%M}"


class MonitoredModel(RegisteredModel):
    """The registered models as the monitoring console shows them, with "run now" actions."""

    class Meta:
        proxy = True
        verbose_name = "monitored model"
