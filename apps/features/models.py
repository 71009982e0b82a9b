"""Feature sets: named, versioned definitions of the model's inputs, fitted with each model version."""

from django.conf import settings
from django.db import models

from apps.data.models import Dataset, name_validator


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
