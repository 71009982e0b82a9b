"""The records of processing activities (GDPR Art. 30), generated from the datasets as they are described.

One row per dataset: its purpose, legal basis, the categories of personal data its column tags declare, the
categories of data subjects, the recipients, the retention, the registered models trained on it, and where it
is stored. It lives in registry, not in data, because it names the models trained on each dataset, and data
may not import registry (the layers, pyproject.toml); registry is the lowest layer that sees both.
"""

import csv
import io
from typing import Any

from django.conf import settings
from django.db.models import Count, Q

from apps.data.models import ColumnTag, Dataset
from apps.data.services import csv_neutralise
from apps.registry.models import ModelVersion

NO_PERSONAL_DATA = "no personal data"
# The columns of the exports, in order; lists are joined with "; " in CSV.
REGISTER_FIELDS = [
    "dataset",
    "purpose",
    "legal_basis",
    "personal_data",
    "personal_columns",
    "special_category_columns",
    "protected_columns",
    "data_subjects",
    "recipients",
    "retention_days",
    "models",
    "storage",
    "owner",
]


def _columns_tagged(dataset: Dataset, tag: str, *, without: str | None = None) -> list[str]:
    return sorted(
        column
        for column, tags in (dataset.column_tags or {}).items()
        if tag in tags and (without is None or without not in tags)
    )


def _summary(personal: list[str], special: list[str]) -> str:
    parts = [f"personal: {', '.join(personal)}"] if personal else []
    parts += [f"special category (Art. 9): {', '.join(special)}"] if special else []
    return "; ".join(parts) or NO_PERSONAL_DATA


def register_rows() -> list[dict[str, Any]]:
    """One row per dataset, by name. `personal_data` sums up the categories its column tags declare (personal;
    special category, Art. 9), or says "no personal data"; the columns of each are listed after it."""
    models: dict[int, set[str]] = {}
    for dataset_id, name in ModelVersion.objects.values_list(
        "dataset_version__dataset_id", "registered_model__name"
    ).distinct():
        models.setdefault(dataset_id, set()).add(name)
    datasets = (
        Dataset.objects.select_related("owner")
        .annotate(
            live_versions=Count("versions", filter=Q(versions__purged_at__isnull=True)),
            purged_versions=Count("versions", filter=Q(versions__purged_at__isnull=False)),
        )
        .order_by("name")
    )
    root = settings.FARO_ARTEFACT_ROOT
    rows = []
    for dataset in datasets:
        special = _columns_tagged(dataset, ColumnTag.SPECIAL_CATEGORY)
        personal = _columns_tagged(dataset, ColumnTag.PERSONAL, without=ColumnTag.SPECIAL_CATEGORY)
        storage = (
            f"Parquet files named by SHA-256 in {root}/datasets: {dataset.live_versions} version(s) held, "
            f"{dataset.purged_versions} purged"
        )
        rows.append(
            {
                "dataset": dataset.name,
                "purpose": dataset.purpose,
                "legal_basis": dataset.get_legal_basis_display() if dataset.legal_basis else "",
                "personal_data": _summary(personal, special),
                "personal_columns": personal,
                "special_category_columns": special,
                "protected_columns": _columns_tagged(dataset, ColumnTag.PROTECTED),
                "data_subjects": dataset.subject_categories,
                "recipients": dataset.recipients,
                "retention_days": dataset.retention_days,
                "models": sorted(models.get(dataset.pk, ())),
                "storage": storage,
                "owner": dataset.owner.get_username() if dataset.owner else "",
            }
        )
    return rows


def _cell(value: Any) -> Any:
    if isinstance(value, list):
        value = "; ".join(value)
    return "" if value is None else csv_neutralise(value)


def register_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV, a header of REGISTER_FIELDS first; text that a spreadsheet would run is quoted."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REGISTER_FIELDS)
    for row in rows:
        writer.writerow([_cell(row[name]) for name in REGISTER_FIELDS])
    return buffer.getvalue()
