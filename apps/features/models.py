"""Feature sets: named, versioned definitions of the model's inputs, fitted with each model version."""

from django.conf import settings
from django.db import models

from apps.core.models import Job
from apps.data.models import Dataset, DatasetVersion, name_validator


class FeatureSet(models.Model):
    """A named series of immutable definitions; a change is a new version, never an edit."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    dataset = models.ForeignKey(
        Dataset, on_delete=models.PROTECT, related_name="feature_sets", help_text="The data its features read."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class FeatureSetVersion(models.Model):
    """One immutable definition: ordered features, each a transform of source columns, and its hash."""

    feature_set = models.ForeignKey(FeatureSet, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    definition_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["feature_set", "-number"]
        constraints = [models.UniqueConstraint(fields=["feature_set", "number"], name="feature_set_version_unique")]

    def __str__(self) -> str:
        return f"{self.feature_set.name} v{self.number}"


class OnlineStoreKind(models.TextChoices):
    DATABASE = "database", "Database"
    REDIS = "redis", "Redis"


class OnlineFeatureRow(models.Model):
    """The latest source values of one entity (the dataset's subject key), served at prediction time.

    The database backend of the online store; with Redis the same record is a hash per entity."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="online_rows")
    entity_id = models.CharField(max_length=200)
    values = models.JSONField(help_text="The row's source column values, JSON-safe (dates as ISO 8601 text).")
    event_time = models.DateTimeField(null=True, blank=True, help_text="The row's time in its timestamp column.")
    materialised_at = models.DateTimeField(help_text="When the values were written to the online store.")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="online_rows")

    class Meta:
        ordering = ["dataset", "entity_id"]
        constraints = [models.UniqueConstraint(fields=["dataset", "entity_id"], name="online_feature_row_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name}: {self.entity_id}"


class MaterialisationJob(Job):
    """A dataset version's latest row per entity being written to the online store by a worker."""

    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="materialisation_jobs")
    timestamp_column = models.CharField(
        max_length=200, blank=True, help_text="Keeps each entity's latest row by this column; empty: its last row."
    )
    store = models.CharField(max_length=16, choices=OnlineStoreKind.choices)
    rows_read = models.PositiveBigIntegerField(default=0)
    rows_written = models.PositiveBigIntegerField(default=0, help_text="Entities written to the online store.")
    requested_by = models.CharField(max_length=100, blank=True, help_text="Who queued it: user:N or token:N.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"materialisation job {self.pk} ({self.status})"
