"""The model registry: registered models, their versions, aliases and training jobs."""

from django.conf import settings
from django.db import models

from apps.core.models import Job
from apps.data.models import DatasetVersion, name_validator
from apps.features.models import FeatureSetVersion


class TaskType(models.TextChoices):
    AUTO = "auto", "Decide from the target"
    CLASSIFICATION = "classification", "Classification"
    REGRESSION = "regression", "Regression"


class RegisteredModel(models.Model):
    """A named model whose versions are trained, compared and released under aliases."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.AUTO)
    favourable_label = models.CharField(
        max_length=200, blank=True, help_text="For classifiers: the outcome the decision page calls approved."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One trained model: its artefact (XGBoost UBJ, by SHA-256), frozen features, signature and metrics."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.PositiveIntegerField()
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="model_versions")
    task_type = models.CharField(max_length=16, choices=TaskType.choices)
    target_column = models.CharField(max_length=200)
    labels = models.JSONField(default=list, blank=True, help_text="Class labels in model output order.")
    params = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    feature_state = models.JSONField(help_text="The fitted feature pipeline, frozen with the version.")
    feature_set_version = models.ForeignKey(
        FeatureSetVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="model_versions"
    )
    feature_definition_hash = models.CharField(
        max_length=64, blank=True, help_text="The feature set definition this version was fitted with, pinned."
    )
    signature = models.JSONField(help_text="Ordered, typed inputs and the outputs.")
    artefact_path = models.CharField(max_length=300)
    artefact_sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="model_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name} v{self.version}"


class ModelAlias(models.Model):
    """A movable name (champion, challenger) pointing at one version of a registered model."""

    class Name(models.TextChoices):
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=32, choices=Name.choices)
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registered_model", "name"], name="model_alias_unique")]

    def __str__(self) -> str:
        return f"{self.registered_model.name}@{self.name} -> v{self.version.version}"


class AliasChange(models.Model):
    """The history of an alias: which version it pointed at from when, and who moved it."""

    class Kind(models.TextChoices):
        PROMOTE = "promote", "Promote"
        ROLLBACK = "rollback", "Roll back"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="alias_changes")
    alias = models.CharField(max_length=32, choices=ModelAlias.Name.choices)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    from_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    to_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    actor = models.CharField(max_length=100)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.registered_model.name}@{self.alias}: {self.from_version_id} -> {self.to_version_id}"


class TrainingJob(Job):
    """A request to train a version of a registered model on a dataset version, run by a worker."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="training_jobs")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="training_jobs")
    params = models.JSONField(default=dict)
    feature_set_version = models.ForeignKey(
        FeatureSetVersion,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="training_jobs",
        help_text="Empty: every column but the target and subject key, numbers as they are, text encoded.",
    )
    model_version = models.OneToOneField(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="training_job"
    )
    warnings = models.JSONField(
        default=list, blank=True, help_text="Rows whose values a feature could not use (first 20), e.g. a zero ratio."
    )
    warning_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"
