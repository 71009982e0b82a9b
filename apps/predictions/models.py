"""Serving state: the decision log (every acknowledged decision, written before the response is sent), the
traffic policy of each registered model, failures that count against a canary, and batch scoring jobs."""

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.core.models import Job
from apps.data.models import DatasetVersion
from apps.registry.models import ModelVersion, RegisteredModel


class Route(models.TextChoices):
    CHAMPION = "champion", "Champion"
    CANARY = "canary", "Canary"
    SHADOW = "shadow", "Shadow"
    DIRECT = "direct", "Named by the client (alias or version)"


class PredictionRecord(models.Model):
    """One scored row: who it was about (if the client said), what went in, what came out, by which route.

    `inputs` are minimised per the training dataset's column tags: special-category columns are dropped and
    personal columns replaced by keyed pseudonyms (`apps.predictions.minimise`).
    """

    class Channel(models.TextChoices):
        API = "api", "REST API"
        PAGE = "page", "Web page"
        MLFLOW = "mlflow", "MLflow-compatible API"
        V2 = "v2", "Open Inference Protocol V2"
        STREAM = "stream", "Event stream"

    Route = Route

    # Indexes cost every prediction an update each, so there are only those that queries use: request_id and
    # model_version lead the unique constraint and prediction_route_time; subject_id is found by equality.
    request_id = models.UUIDField(default=uuid.uuid4)
    row = models.PositiveIntegerField(default=0)
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="predictions", db_index=False
    )
    route = models.CharField(max_length=8, choices=Route.choices, default=Route.CHAMPION)
    subject_id = models.CharField(max_length=200, blank=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    client = models.CharField(max_length=64, blank=True, help_text="token:N, user:N or anonymous.")
    inputs = models.JSONField()
    output = models.JSONField()
    explanation = models.JSONField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True, help_text="Scoring time of the whole request.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actual = models.JSONField(null=True, blank=True, help_text="The ground truth, sent later as feedback.")
    actual_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "row"]
        indexes = [
            models.Index(fields=["model_version", "route", "created_at"], name="prediction_route_time"),
            models.Index(fields=["subject_id"], name="prediction_subject"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["request_id", "row", "model_version"], name="one_decision_per_row")
        ]

    def __str__(self) -> str:
        return f"{self.request_id}#{self.row}"


class ScoringFailure(models.Model):
    """A request a version failed to score (not the client's fault): what a canary's error rate counts."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="scoring_failures")
    route = models.CharField(max_length=8, choices=Route.choices)
    error = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.route} failure of {self.model_version_id}: {self.error}"


class StickyBy(models.TextChoices):
    SUBJECT = "subject", "The subject key, else the entity id"
    NONE = "none", "Nothing: each request is routed by chance"


class TrafficPolicy(models.Model):
    """How a registered model's default traffic (no alias or version named) is split: the champion, a canary
    version taking a percentage, and shadow versions scored off the request path and never returned."""

    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="traffic_policy")
    canary_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="canary_policies"
    )
    canary_percent = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Share of default traffic the canary answers, 0 to 100.",
    )
    shadow_versions = models.ManyToManyField(ModelVersion, blank=True, related_name="shadow_policies")
    sticky_by = models.CharField(max_length=8, choices=StickyBy.choices, default=StickyBy.SUBJECT)
    max_error_rate_increase = models.FloatField(
        default=0.01,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Roll the canary back when its error rate exceeds the champion's by more than this (0.01 = 1 point).",
    )
    max_p95_latency_increase = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0)],
        help_text="Roll the canary back when its p95 latency exceeds the champion's by more than this (0.5 = 50 %).",
    )
    min_requests = models.PositiveIntegerField(
        default=50, help_text="Requests the canary must have answered in the window before it is judged."
    )
    window_minutes = models.PositiveIntegerField(default=15, validators=[MinValueValidator(1)])
    revision = models.PositiveIntegerField(default=0, help_text="Raised by every change; workers reload on a new one.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=100, blank=True)
    rolled_back_at = models.DateTimeField(null=True, blank=True)
    rollback_reason = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "traffic policies"

    def __str__(self) -> str:
        return f"traffic policy of {self.registered_model}"


class BatchScoringJob(Job):
    """Score a dataset version or an uploaded file in chunks into a Parquet or CSV file, run by a worker."""

    class Format(models.TextChoices):
        PARQUET = "parquet", "Parquet"
        CSV = "csv", "CSV"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="batch_jobs")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="batch_jobs")
    dataset_version = models.ForeignKey(
        DatasetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="batch_jobs"
    )
    input_path = models.CharField(max_length=500, blank=True, help_text="An uploaded file, when no dataset version.")
    input_name = models.CharField(max_length=255, blank=True)
    output_format = models.CharField(max_length=8, choices=Format.choices, default=Format.PARQUET)
    explain = models.BooleanField(default=False)
    output_path = models.CharField(max_length=500, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    problems = models.JSONField(default=list, blank=True, help_text="Rows that could not be scored (first 20).")
    problem_count = models.PositiveBigIntegerField(default=0)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.CharField(max_length=100, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"batch scoring job {self.pk} ({self.status})"
