"""The model registry: registered models, their versions, aliases and training jobs."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from apps.core.models import Job
from apps.data.models import DatasetVersion, name_validator
from apps.features.models import FeatureSetVersion


class TaskType(models.TextChoices):
    AUTO = "auto", "Decide from the target"
    CLASSIFICATION = "classification", "Classification"
    REGRESSION = "regression", "Regression"


alias_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{0,31}$", "An alias is 1-32 lowercase letters, digits or hyphens, starting with a letter."
)


class ErasurePolicy(models.TextChoices):
    ALLOW = "allow", "Allow until the next retrain: keep serving, flagged"
    RETRAIN = "retrain", "Retrain: queue a training job on the data without the erased rows"
    BLOCK = "block", "Block: refuse to serve a flagged version"


class RegisteredModel(models.Model):
    """A named model whose versions are trained, compared and released under aliases.

    Its SLA and release gates are the product's promises about it: a challenger is measured against them
    before anyone may approve it.
    """

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.AUTO)
    favourable_label = models.CharField(
        max_length=200, blank=True, help_text="For classifiers: the outcome the decision page calls approved."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_models"
    )
    latency_p95_ms_target = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0)], help_text="SLA: p95 latency of one prediction."
    )
    availability_target = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="SLA: percentage of successful predictions, e.g. 99.9.",
    )
    quality_metric = models.CharField(
        max_length=16, blank=True, help_text="The metric gates compare (default: auc, or rmse for regression)."
    )
    quality_minimum = models.FloatField(
        null=True,
        blank=True,
        help_text="SLA: the worst acceptable value of the quality metric (a maximum for errors such as rmse).",
    )
    max_relative_drop = models.FloatField(
        default=0.01,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Gate: how much worse than the champion a challenger may be on the same holdout (0.01 = 1 %).",
    )
    fairness_limits = models.JSONField(
        default=dict,
        blank=True,
        help_text="disparate_impact_min (0.8), statistical_parity_max (0.1), equal_opportunity_max (0.1).",
    )
    erasure_policy = models.CharField(
        max_length=8,
        choices=ErasurePolicy.choices,
        default=ErasurePolicy.ALLOW,
        help_text="What happens when a data subject is erased from the data a version was trained on.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelVersion(models.Model):
    """One trained or imported model: its artefact (XGBoost UBJ or ONNX, by SHA-256), frozen features,
    signature, evaluation, lineage, and its release decision."""

    class Status(models.TextChoices):
        PENDING = "pending_manual_approval", "Pending manual approval"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    class Source(models.TextChoices):
        XGBOOST = "xgboost", "Trained in Faro (XGBoost)"
        ONNX = "onnx", "Imported ONNX"

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
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.XGBOOST)
    onnx_path = models.CharField(max_length=300, blank=True)
    onnx_sha256 = models.CharField(max_length=64, blank=True)
    onnx_parity = models.JSONField(default=dict, blank=True, help_text="ONNX against the native model on the holdout.")
    evaluation = models.JSONField(
        default=dict, blank=True, help_text="Curves, confusion matrix, importance, fairness, latency."
    )
    lineage = models.JSONField(default=dict, blank=True, help_text="Code and library versions, holdout, rows.")
    holdout_path = models.CharField(max_length=300, blank=True, help_text="The test rows' numbers (int32 .npy).")
    holdout_sha256 = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.PENDING, db_index=True)
    gate_report = models.JSONField(default=dict, blank=True, help_text="The release gates' evidence.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    maker = models.CharField(
        max_length=100, blank=True, help_text="Who started its training (user:N): they may not approve it."
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    erased_data_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Since when rows it was trained on have been erased at a data subject's request.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-version"]
        permissions = [("approve_modelversion", "Can approve or reject model versions")]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="model_version_number_unique")
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name} v{self.version}"


class ModelAlias(models.Model):
    """A movable name (champion, challenger or any other) pointing at one version of a registered model."""

    class Name(models.TextChoices):
        CHAMPION = "champion", "Champion"
        CHALLENGER = "challenger", "Challenger"

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=32, validators=[alias_validator])
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
    alias = models.CharField(max_length=32, validators=[alias_validator])
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
    trials = models.JSONField(
        default=list, blank=True, help_text="Hyperparameter search: each trial's params and score."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.CharField(max_length=100, blank=True, help_text="Who queued it: user:N or token:N.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"training job {self.pk} ({self.status})"
