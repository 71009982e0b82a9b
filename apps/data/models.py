"""Datasets, their immutable versions, their checks and the ingestion jobs that create versions."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from apps.core.models import Job

name_validator = RegexValidator(r"^[a-z0-9][a-z0-9-]{0,62}$", "Use lower-case letters, digits and hyphens.")


class LegalBasis(models.TextChoices):
    """GDPR Art. 6(1) (a)-(f)."""

    CONSENT = "a", "(a) consent"
    CONTRACT = "b", "(b) contract"
    LEGAL_OBLIGATION = "c", "(c) legal obligation"
    VITAL_INTERESTS = "d", "(d) vital interests"
    PUBLIC_TASK = "e", "(e) public task"
    LEGITIMATE_INTERESTS = "f", "(f) legitimate interests"


class ColumnTag(models.TextChoices):
    PERSONAL = "personal", "Personal data"
    SPECIAL_CATEGORY = "special_category", "Special category (Art. 9)"
    PROTECTED = "protected", "Protected attribute"
    TARGET = "target", "Target"


class Dataset(models.Model):
    """A named, described collection of versions of one table."""

    name = models.CharField(max_length=63, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    target_column = models.CharField(max_length=200, blank=True, help_text="The column a model learns to predict.")
    subject_key_column = models.CharField(
        max_length=200, blank=True, help_text="The column that identifies the person a row is about."
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="owned_datasets"
    )
    purpose = models.TextField(blank=True, help_text="Why this data is processed (GDPR Art. 5(1)(b)).")
    legal_basis = models.CharField(max_length=2, choices=LegalBasis.choices, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True, help_text="How long versions are kept.")
    column_tags = models.JSONField(
        default=dict, blank=True, help_text='Column -> tags, e.g. {"age": ["personal", "protected"]}.'
    )
    subject_categories = models.TextField(
        blank=True, help_text="Whose data it is, e.g. loan applicants (GDPR Art. 30(1)(c)): for the register."
    )
    recipients = models.TextField(
        blank=True,
        help_text="Who the data, or decisions made with it, are disclosed to (GDPR Art. 30(1)(d)): for the register.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def personal_columns(self) -> list[str]:
        return sorted(
            column
            for column, tags in (self.column_tags or {}).items()
            if {ColumnTag.PERSONAL, ColumnTag.SPECIAL_CATEGORY} & set(tags)
        )

    def clean(self) -> None:
        """Tags must be known; a dataset holding personal data needs its purpose, legal basis and retention."""
        errors: dict[str, list[str]] = {}
        if not isinstance(self.column_tags, dict) or not all(
            isinstance(tags, list) and set(tags) <= set(ColumnTag.values) for tags in self.column_tags.values()
        ):
            errors["column_tags"] = [f"Map each column to a list of tags from: {', '.join(ColumnTag.values)}."]
        elif self.personal_columns:
            for field, label in (
                ("purpose", "a purpose"),
                ("legal_basis", "a legal basis"),
                ("retention_days", "a retention period"),
            ):
                if not getattr(self, field):
                    errors[field] = [f"A dataset with personal columns needs {label}."]
        if errors:
            raise ValidationError(errors)


class DatasetVersion(models.Model):
    """An immutable snapshot: a Parquet file named by its SHA-256, with its schema and statistics.

    Once its dataset's retention has passed it is purged (`services.dataset_versions_purge`): its rows are
    gone, and the row stays as the record that model versions trained on it point to.
    """

    class Mode(models.TextChoices):
        REPLACE = "replace", "Replace: the upload is the whole version"
        APPEND = "append", "Append: the parent's rows, then the upload's"

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="children")
    mode = models.CharField(max_length=8, choices=Mode.choices, default=Mode.REPLACE)
    source_format = models.CharField(max_length=8, default="csv")
    validation = models.JSONField(default=dict, blank=True, help_text="Schema changes and check results.")
    file_path = models.CharField(max_length=300)
    sha256 = models.CharField(max_length=64)
    original_name = models.CharField(max_length=255, blank=True)
    original_sha256 = models.CharField(max_length=64)
    row_count = models.PositiveBigIntegerField()
    schema = models.JSONField(default=list)
    statistics = models.JSONField(default=dict)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    purged_at = models.DateTimeField(null=True, blank=True, help_text="When its rows were removed from storage.")
    purge_reason = models.CharField(max_length=200, blank=True, help_text='Why, e.g. "365-day retention".')
    erased_rows = models.PositiveBigIntegerField(
        default=0, help_text="Rows removed by data-subject erasures (the file was rewritten without them)."
    )
    erased_at = models.DateTimeField(null=True, blank=True, help_text="When an erasure last rewrote the file.")

    class Meta:
        ordering = ["dataset", "-number"]
        constraints = [models.UniqueConstraint(fields=["dataset", "number"], name="dataset_version_number_unique")]

    def __str__(self) -> str:
        return f"{self.dataset.name} v{self.number}"

    @property
    def column_names(self) -> list[str]:
        return [column["name"] for column in self.schema]

    @property
    def is_purged(self) -> bool:
        return self.purged_at is not None

    def purged_message(self) -> str:
        return (
            f"Dataset version {self.number} of {self.dataset.name} was purged on {self.purged_at:%Y-%m-%d} "
            f"under its {self.purge_reason or 'retention'}."
        )


class DatasetVersionRewrite(models.Model):
    """A version's file rewritten without a data subject's rows: which row positions of the file `before` went, so
    that row numbers recorded against the old file (a model version's holdout) can be carried to the new one."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="rewrites")
    before = models.CharField(max_length=64, db_index=True)
    after = models.CharField(max_length=64)
    positions = models.JSONField(help_text="0-based row numbers removed from the file `before`, ascending.")
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "at"]

    def __str__(self) -> str:
        return f"{self.version}: {len(self.positions)} row(s) erased"


class DatasetCheck(models.Model):
    """A declarative rule run on every new version; a failed blocking check rejects the version."""

    class Kind(models.TextChoices):
        NOT_NULL = "not_null", "Not null"
        UNIQUE = "unique", "Unique"
        RANGE = "range", "Range"
        ALLOWED_VALUES = "allowed_values", "Allowed values"
        REGEX = "regex", "Regular expression"
        MAX_MISSING_FRACTION = "max_missing_fraction", "Maximum missing fraction"
        ROW_COUNT = "row_count", "Row count"
        TYPE = "type", "Type"

    class Severity(models.TextChoices):
        BLOCKING = "blocking", "Blocking: rejects the version"
        WARNING = "warning", "Warning: recorded"

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="checks")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    column = models.CharField(max_length=200, blank=True)
    params = models.JSONField(default=dict, blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.BLOCKING)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset", "id"]

    def __str__(self) -> str:
        return f"{self.dataset.name}: {self.kind} {self.column}".strip()

    def clean(self) -> None:
        from apps.data.checks import validate_check_spec

        problems = validate_check_spec(self.kind, self.column, self.params or {})
        errors: dict[str, list[str]] = {}
        for name, message in problems.items():
            target = name if name in ("column", "kind") else "params"
            errors.setdefault(target, []).append(
                message if name in ("column", "kind", "params") else f"{name}: {message}"
            )
        if errors:
            raise ValidationError(errors)

    def spec(self) -> dict:
        return {"kind": self.kind, "column": self.column, "params": self.params, "severity": self.severity}


class IngestJob(Job):
    """An upload being turned into a dataset version by a worker; its status row is what users watch."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="ingest_jobs")
    staged_path = models.CharField(max_length=300, blank=True, help_text="The upload, until the job ends.")
    original_name = models.CharField(max_length=255)
    original_sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    options = models.JSONField(default=dict, blank=True)
    problems = models.JSONField(default=list, blank=True)
    details = models.JSONField(default=dict, blank=True, help_text="More on a refusal, e.g. the schema changes.")
    requested_by = models.CharField(max_length=100, blank=True, help_text="Who queued it: user:N or token:N.")
    dataset_version = models.OneToOneField(
        DatasetVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="ingest_job"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"ingest job {self.pk} ({self.status})"
