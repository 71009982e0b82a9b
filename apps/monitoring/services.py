"""Drift reports: a model version's served inputs in a time window against its training data."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import InvalidInput
from apps.data.selectors import dataset_version_table
from apps.governance.services import actor_ref, audit_record
from apps.monitoring.drift import CATEGORICAL, INSUFFICIENT_DATA, NUMERIC, feature_drifts, model_verdict
from apps.monitoring.models import DriftReport
from apps.predictions.minimise import PERSONAL, SPECIAL_CATEGORY
from apps.predictions.models import PredictionRecord
from apps.registry.models import ModelVersion
from apps.registry.scoring import version_pipeline
from apps.registry.selectors import model_version_by_number, model_version_for_alias

MAX_WINDOW_HOURS = 24 * 366
KINDS = {"integer": NUMERIC, "number": NUMERIC, "category": CATEGORICAL, "boolean": CATEGORICAL}


def monitored_inputs(version: ModelVersion) -> tuple[dict[str, str], dict[str, str]]:
    """(input -> numeric/categorical, input -> why it is not monitored), in the signature's order.

    The decision log drops special-category columns and keeps personal ones only as pseudonyms, which
    cannot be compared with the training values: both are excluded, as are date-time inputs."""
    tags = version.dataset_version.dataset.column_tags or {}
    kinds: dict[str, str] = {}
    excluded: dict[str, str] = {}
    for item in version_pipeline(version).signature():
        name, column_tags = item["name"], set(tags.get(item["name"]) or [])
        if SPECIAL_CATEGORY in column_tags:
            excluded[name] = "special-category data: the decision log does not keep it"
        elif PERSONAL in column_tags:
            excluded[name] = "personal data: the decision log keeps only pseudonyms of it"
        elif item["type"] in KINDS:
            kinds[name] = KINDS[item["type"]]
        else:
            excluded[name] = f"{item['type']} inputs are not monitored for drift"
    return kinds, excluded


def _served_columns(version: ModelVersion, kinds: dict[str, str], start: datetime, end: datetime):
    """The window's logged inputs as columns (NaN / None where a row lacks a value), and the row count: the
    newest FARO_DRIFT_MAX_ROWS of the window at most, so that a busy window cannot exhaust the worker."""
    values: dict[str, list[Any]] = {name: [] for name in kinds}
    rows = 0
    logged = PredictionRecord.objects.filter(model_version=version, created_at__gte=start, created_at__lt=end).order_by(
        "-created_at"
    )[: settings.FARO_DRIFT_MAX_ROWS]
    for inputs in logged.values_list("inputs", flat=True).iterator(chunk_size=10_000):
        rows += 1
        for name, column in values.items():
            column.append(inputs.get(name) if isinstance(inputs, dict) else None)
    columns: dict[str, Any] = {}
    for name, column in values.items():
        if kinds[name] == NUMERIC:
            columns[name] = np.array(
                [
                    float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
                    for value in column
                ],
                dtype=np.float64,
            )
        else:
            columns[name] = column
    return columns, rows


def _training_columns(version: ModelVersion, kinds: dict[str, str]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    table = dataset_version_table(version=version.dataset_version, columns=list(kinds))
    columns: dict[str, Any] = {}
    for name, kind in kinds.items():
        column = table.column(name)
        if kind == NUMERIC:
            columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        else:
            columns[name] = column.to_pylist()
    return columns


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def drift_report_run(
    *,
    model_name: str,
    version: int | None = None,
    hours: float = 24.0,
    now: datetime | None = None,
    actor: Any = "system",
) -> DriftReport:
    """Compare the inputs a version served in the last `hours` with its training data, store the report.

    The version is the champion unless one is named. A window without traffic gives a report that says
    so ("insufficient_data", no numbers); so does a window with too few rows for a feature."""
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_WINDOW_HOURS:
        raise InvalidInput(
            f"The window must be more than 0 and at most {MAX_WINDOW_HOURS} hours.",
            extra={"fields": {"hours": [f"Must be a number of hours in (0, {MAX_WINDOW_HOURS}]."]}},
        )
    found = (
        model_version_by_number(model_name=model_name, version=version)
        if version is not None
        else model_version_for_alias(model_name=model_name, alias="champion")
    )
    end = now or timezone.now()
    start = end - timedelta(hours=hours)
    kinds, excluded = monitored_inputs(found)
    current, rows = _served_columns(found, kinds, start, end)
    if rows == 0:
        features: list[dict[str, Any]] = []
        verdict = {
            "status": INSUFFICIENT_DATA,
            "drift_share": 0.0,
            "drifted": [],
            "assessed": 0,
            "reason": f"v{found.version} logged no decisions in the window.",
        }
    else:
        results = feature_drifts(_training_columns(found, kinds), current, kinds)
        # Importances are not yet mapped from the model's features back to its inputs: equal weights.
        verdict = model_verdict(results, {})
        features = [{key: _finite(value) for key, value in dataclasses.asdict(item).items()} for item in results]
    with transaction.atomic():
        report = DriftReport.objects.create(
            model_version=found,
            window_start=start,
            window_end=end,
            rows=rows,
            status=verdict["status"],
            verdict=verdict,
            features=features,
            excluded=excluded,
            requested_by=actor_ref(actor),
        )
        audit_record(
            actor=actor, action="drift_report.created", target=report, data={"status": report.status, "rows": rows}
        )
    return report
