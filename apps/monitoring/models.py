"""Monitoring state: stored drift reports, one per run, so drift can be charted over time."""

from django.db import models

from apps.registry.models import ModelVersion


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
    reference = models.CharField(max_length=20, default="training", help_text="What the window is compared with.")
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
