"""Datasets and their immutable versions."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

name_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,62}$", "Use lower-case letters, digits and hyphens.")


class Dataset(models.Model):
    """A named, described collection of versions of one table."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    target_column = models.CharField(max_length=200, blank=True, help_text="The column a model learns to predict.")
    subject_key_column = models.CharField(
        max_length=200, blank=True, help_text="The column that identifies the person a row is about."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """An immutable snapshot: a Parquet file named by its SHA-256, with its schema and statistics."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    file_path = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64)
    original_name = models.CharField(max_length=255, blank=True)
    original_sha256 = models.CharField(max_length=64)
    row_count = models.PositiveBigIntegerField()
    schema = models.JSONField(default=list)
    statistics = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def column_names(self) -> list[str]:
        return [column["name"] for column in self.schema]
