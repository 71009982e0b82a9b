"""Monitoring runs: drift reports (served inputs against training data or an earlier window), live-quality
reports (labels and label-free estimates), SLO reports, and the alerts they raise and resolve."""

from __future__ import annotations

import dataclasses
import logging
import math
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.errors import FaroError, InvalidInput
from apps.data.selectors import dataset_version_table
from apps.governance.services import actor_ref, audit_record
from apps.monitoring import quality
from apps.monitoring.alerts import UNRESOLVED, alert_raise, alert_resolve_key
from apps.monitoring.drift import CATEGORICAL, INSUFFICIENT_DATA, NUMERIC, feature_drifts, model_verdict
from apps.monitoring.models import Alert, DriftReport, QualityReport, SloReport
from apps.monitoring.selectors import served_versions
from apps.predictions.minimise import PERSONAL, SPECIAL_CATEGORY
from apps.predictions.models import PredictionRecord, Route, ScoringFailure
from apps.registry.gates import quality_metric
from apps.registry.models import ModelVersion, RegisteredModel, TaskType
from apps.registry.scoring import version_pipeline
from apps.registry.selectors import model_version_by_number, model_version_for_alias

logger = logging.getLogger(__name__)

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


def _prediction_kind(version: ModelVersion) -> tuple[str, str | None]:
    """How the output is compared: a binary classifier's probability of its second label and a regression's
    value as numbers, a multiclass classifier's label as a category. (kind, the positive label if binary)."""
    if version.task_type != TaskType.CLASSIFICATION:
        return NUMERIC, None
    labels = [str(label) for label in version.labels]
    return (NUMERIC, labels[1]) if len(labels) == 2 else (CATEGORICAL, None)


def _output_value(output: Any, positive: str | None, kind: str) -> Any:
    if not isinstance(output, dict):
        return math.nan if kind == NUMERIC else None
    if kind == CATEGORICAL:
        label = output.get("label")
        return None if label is None else str(label)
    value = output.get("probabilities", {}).get(positive) if positive is not None else output.get("value")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


def _served_columns(version: ModelVersion, kinds: dict[str, str], start: datetime, end: datetime):
    """The window's logged inputs as columns (NaN / None where a row lacks a value), its outputs as one more
    column, and the row count: the newest FARO_DRIFT_MAX_ROWS of the window at most, so that a busy window
    cannot exhaust the worker."""
    values: dict[str, list[Any]] = {name: [] for name in kinds}
    output_kind, positive = _prediction_kind(version)
    outputs: list[Any] = []
    rows = 0
    logged = PredictionRecord.objects.filter(model_version=version, created_at__gte=start, created_at__lt=end).order_by(
        "-created_at"
    )[: settings.FARO_DRIFT_MAX_ROWS]
    for inputs, output in logged.values_list("inputs", "output").iterator(chunk_size=10_000):
        rows += 1
        for name, column in values.items():
            column.append(inputs.get(name) if isinstance(inputs, dict) else None)
        outputs.append(_output_value(output, positive, output_kind))
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
    prediction = np.array(outputs, dtype=np.float64) if output_kind == NUMERIC else outputs
    return columns, rows, prediction


TRAINING_PREDICTION_ROWS = 50_000  # training rows scored for the prediction reference, evenly spaced


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


def _training_predictions(version: ModelVersion) -> tuple[Any, str]:
    """The version's outputs on (an even sample of) its training rows: the reference for prediction drift.
    (None, reason) when the rows cannot be scored as they are stored."""
    import pyarrow as pa

    from apps.predictions.batch import model_matrix
    from apps.predictions.loader import model_cache

    try:
        loaded = model_cache.load(version)
        inputs = [item["name"] for item in loaded.pipeline.signature()]
        table = dataset_version_table(version=version.dataset_version, columns=inputs)
        if table.num_rows > TRAINING_PREDICTION_ROWS:
            step = table.num_rows / TRAINING_PREDICTION_ROWS
            table = table.take(pa.array([int(index * step) for index in range(TRAINING_PREDICTION_ROWS)]))
        raw = np.asarray(loaded.scorer.predict_raw(model_matrix(loaded.pipeline, table)))
    except FaroError as exc:
        return None, exc.message
    except Exception as exc:  # a stored row the pipeline cannot read: no prediction reference, said so
        logger.warning("Training rows of %s could not be scored for prediction drift: %s", version, exc)
        return None, f"the training rows could not be scored ({type(exc).__name__})"
    kind, _ = _prediction_kind(version)
    if kind == CATEGORICAL:
        labels = [str(label) for label in version.labels]
        return [labels[index] for index in raw.reshape(len(table), len(labels)).argmax(axis=1)], ""
    return raw.reshape(-1).astype(np.float64), ""


def _input_weights(version: ModelVersion, inputs: list[str]) -> dict[str, float]:
    """The version's feature importances (mean |SHAP|, else gain) carried back to the inputs they read: a
    feature's importance is shared equally among its source columns; a one-hot column (name=value) counts
    for its feature. Empty when the version has no importances (the verdict then weighs inputs equally)."""
    importance = (version.evaluation or {}).get("importance") or []
    if not importance:
        return {}
    measure = "mean_abs_shap" if importance[0].get("mean_abs_shap") is not None else "gain"
    owners: dict[str, list[str]] = {}
    for feature in getattr(version_pipeline(version), "features", None) or []:
        if not isinstance(feature, dict):  # the automatic pipeline: its outputs are named after the inputs
            continue
        sources = list(feature.get("sources") or ([feature["source"]] if feature.get("source") else []))
        if feature.get("name") and sources:
            owners[feature["name"]] = sources
    wanted = set(inputs)
    weights: dict[str, float] = {}
    for row in importance:
        value = row.get(measure) or 0.0
        name = str(row.get("feature", ""))
        base = name.split("=", 1)[0]
        sources = (
            owners.get(name) or owners.get(base) or ([name] if name in wanted else [base] if base in wanted else [])
        )
        for source in sources:
            if source in wanted and math.isfinite(value) and value > 0:
                weights[source] = weights.get(source, 0.0) + value / len(sources)
    return weights


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _moment(value: Any, field: str) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    from django.utils.dateparse import parse_datetime

    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        raise InvalidInput(
            f"{field} is not a date and time.", extra={"fields": {field: ["Use ISO 8601, e.g. 2026-12-01T00:00:00Z."]}}
        )
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, timezone.get_current_timezone())


def _drift_results(reference: dict[str, Any], current: dict[str, Any], kinds: dict[str, str]) -> list[dict]:
    return [
        {key: _finite(value) for key, value in dataclasses.asdict(item).items()}
        for item in feature_drifts(reference, current, kinds)
    ]


def drift_report_run(
    *,
    model_name: str,
    version: int | None = None,
    hours: float = 24.0,
    now: datetime | None = None,
    actor: Any = "system",
    reference: str = DriftReport.Reference.TRAINING,
    reference_start: Any = None,
    reference_end: Any = None,
) -> DriftReport:
    """Compare the inputs and outputs a version served in the last `hours` with a reference, store the report.

    The reference is its training data (skew; the outputs are compared with its scores on the training rows)
    or a production window (drift): `reference_start` to `reference_end`, by default the window of the same
    length just before. The version is the champion unless one is named. The verdict weighs each input by
    the version's feature importances. A window without traffic gives a report that says so
    ("insufficient_data", no numbers); so does a window with too few rows for a feature. A drifted verdict
    opens the model's drift alert; a clean one resolves it."""
    start, end = _window(hours, now)
    if reference not in DriftReport.Reference.values:
        raise InvalidInput(
            f"Unknown reference {reference!r}.",
            extra={"fields": {"reference": [f"Choose one of: {', '.join(DriftReport.Reference.values)}."]}},
        )
    reference_start, reference_end = (
        _moment(reference_start, "reference_start"),
        _moment(reference_end, "reference_end"),
    )
    if reference == DriftReport.Reference.WINDOW:
        reference_end = reference_end or start
        reference_start = reference_start or reference_end - (end - start)
        if reference_start >= reference_end:
            raise InvalidInput(
                "The reference window must start before it ends.",
                extra={"fields": {"reference_start": ["Must be before reference_end."]}},
            )
    elif reference_start is not None or reference_end is not None:
        raise InvalidInput(
            "A reference window is given only with reference 'window'.",
            extra={"fields": {"reference": ["Set it to 'window' to compare with a production window."]}},
        )
    found = _version(model_name, version)
    kinds, excluded = monitored_inputs(found)
    current, rows, served_outputs = _served_columns(found, kinds, start, end)
    prediction: dict[str, Any] | None = None
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
        output_kind, _ = _prediction_kind(found)
        if reference == DriftReport.Reference.WINDOW:
            baseline, reference_rows, reference_outputs = _served_columns(found, kinds, reference_start, reference_end)
            why = "" if reference_rows else "the reference window has no decisions"
        else:
            baseline = _training_columns(found, kinds)
            reference_outputs, why = _training_predictions(found)
        features = _drift_results(baseline, current, kinds)
        weights = _input_weights(found, list(kinds))
        verdict = model_verdict(feature_drifts(baseline, current, kinds), weights)
        verdict["weighted_by"] = "feature importance" if weights else "equal weights (no importances)"
        if reference_outputs is not None and not why:
            prediction = _drift_results(
                {"prediction": reference_outputs}, {"prediction": served_outputs}, {"prediction": output_kind}
            )[0]
        else:
            prediction = {"feature": "prediction", "status": INSUFFICIENT_DATA, "reason": why}
    with transaction.atomic():
        report = DriftReport.objects.create(
            model_version=found,
            reference=reference,
            reference_start=reference_start,
            reference_end=reference_end,
            window_start=start,
            window_end=end,
            rows=rows,
            status=verdict["status"],
            verdict=verdict,
            features=features,
            prediction=prediction,
            excluded=excluded,
            requested_by=actor_ref(actor),
        )
        audit_record(
            actor=actor, action="drift_report.created", target=report, data={"status": report.status, "rows": rows}
        )
    _drift_alert(found, report)
    return report


def _drift_alert(version: ModelVersion, report: DriftReport) -> None:
    model = version.registered_model
    key = f"drift:{model.name}:v{version.version}"
    if report.status == DriftReport.Status.DRIFTED:
        drifted = report.verdict.get("drifted") or []
        alert_raise(
            key=key,
            kind=Alert.Kind.DRIFT,
            severity=Alert.Severity.WARNING,
            title=f"{model.name} v{version.version}: inputs drifted",
            detail=(
                f"{len(drifted)} of {report.verdict.get('assessed', 0)} monitored inputs drifted "
                f"({', '.join(drifted[:10])}) against the {report.get_reference_display().lower()}, "
                f"over {report.rows} decisions from {report.window_start:%Y-%m-%d %H:%M} to "
                f"{report.window_end:%Y-%m-%d %H:%M}; drift share {report.verdict.get('drift_share')}."
            ),
            registered_model=model,
            data={"drift_report": report.pk, "drifted": drifted},
        )
    elif report.status == DriftReport.Status.OK:
        alert_resolve_key(key=key, reason=f"No drift in report {report.pk}.")


# -- live quality ------------------------------------------------------------------------------------------

ERROR_METRICS = frozenset({"rmse", "mae"})  # lower is better; every other metric: higher is better


def _window(hours: Any, now: datetime | None) -> tuple[datetime, datetime]:
    if isinstance(hours, bool) or not isinstance(hours, int | float) or not 0 < hours <= MAX_WINDOW_HOURS:
        raise InvalidInput(
            f"The window must be more than 0 and at most {MAX_WINDOW_HOURS} hours.",
            extra={"fields": {"hours": [f"Must be a number of hours in (0, {MAX_WINDOW_HOURS}]."]}},
        )
    end = now or timezone.now()
    return end - timedelta(hours=hours), end


def _version(model_name: str, version: int | None) -> ModelVersion:
    if version is not None:
        return model_version_by_number(model_name=model_name, version=version)
    return model_version_for_alias(model_name=model_name, alias="champion")


def _meets(metric: str, value: float | None, minimum: float | None) -> bool | None:
    if value is None or minimum is None:
        return None
    return value <= minimum if metric in ERROR_METRICS else value >= minimum


def _classification_figures(
    version: ModelVersion, outputs: list[Any], actuals: list[Any]
) -> tuple[dict | None, dict | None]:
    labels = [str(label) for label in version.labels]
    if len(labels) != 2:  # multiclass: accuracy from the labels only; no probability-based estimate
        pairs = [
            (str(actual), str(output.get("label")))
            for output, actual in zip(outputs, actuals, strict=True)
            if actual is not None and isinstance(output, dict)
        ]
        accuracy = quality.multiclass_accuracy([a for a, _ in pairs], [p for _, p in pairs]) if pairs else None
        measured = {"rows": len(pairs), "accuracy": accuracy}
        return measured, None
    positive = labels[1]  # the booster's probability is of the second label
    probability = np.array(
        [
            float(output.get("probabilities", {}).get(positive, math.nan)) if isinstance(output, dict) else math.nan
            for output in outputs
        ],
        dtype=np.float64,
    )
    labelled = np.array([actual is not None for actual in actuals], dtype=bool)
    truth = np.array([actual is not None and str(actual) == positive for actual in actuals], dtype=bool)
    measured = None
    if labelled.any():
        measured = dataclasses.asdict(quality.classification_quality(truth[labelled], probability[labelled]))
    estimated = dataclasses.asdict(quality.cbpe_estimate(probability)) if len(probability) else None
    return measured, estimated


def _regression_figures(outputs: list[Any], actuals: list[Any]) -> dict | None:
    pairs = [
        (float(actual), float(output.get("value")))
        for output, actual in zip(outputs, actuals, strict=True)
        if actual is not None and isinstance(output, dict) and isinstance(output.get("value"), int | float)
    ]
    if not pairs:
        return None
    return dataclasses.asdict(quality.regression_quality([a for a, _ in pairs], [p for _, p in pairs]))


def quality_report_run(
    *,
    model_name: str,
    version: int | None = None,
    hours: float = 168.0,
    now: datetime | None = None,
    actor: Any = "system",
) -> QualityReport:
    """Measure a version's decisions in the last `hours` against the labels that came back as feedback, and
    for a binary classifier estimate the same figures from its probabilities for every decision (CBPE), so a
    window whose labels have not arrived still has an estimate. Stores and returns the report; raises or
    resolves the model's quality alert when it has an SLA minimum."""
    start, end = _window(hours, now)
    found = _version(model_name, version)
    metric = quality_metric(found)
    records = PredictionRecord.objects.filter(model_version=found, created_at__gte=start, created_at__lt=end).order_by(
        "-created_at"
    )[: settings.FARO_DRIFT_MAX_ROWS]
    outputs, actuals, delays = [], [], []
    for output, actual, created_at, actual_at in records.values_list("output", "actual", "created_at", "actual_at"):
        outputs.append(output)
        actuals.append(actual)
        if actual is not None and actual_at is not None:
            delays.append((actual_at - created_at).total_seconds())
    rows, labelled = len(outputs), len(delays)
    if found.task_type == TaskType.CLASSIFICATION:
        measured, estimated = _classification_figures(found, outputs, actuals) if rows else (None, None)
    else:
        measured, estimated = (_regression_figures(outputs, actuals) if rows else None), None
    value = _finite((measured or {}).get(metric))
    estimated_value = _finite((estimated or {}).get(metric))
    minimum = found.registered_model.quality_minimum
    reasons = []
    if rows == 0:
        reasons.append(f"v{found.version} logged no decisions in the window.")
    elif labelled == 0:
        reasons.append("No labels have arrived for the window's decisions yet.")
    if measured is not None and measured.get("reason"):
        reasons.append(measured["reason"])
    if value is None and measured is not None and metric not in measured:
        reasons.append(f"{metric} cannot be measured for this model.")
    judged = value if value is not None else estimated_value
    insufficient = (measured is None or measured.get("status") == quality.INSUFFICIENT_DATA) and (
        estimated is None or estimated.get("status") == quality.INSUFFICIENT_DATA
    )
    if insufficient or judged is None:
        status = QualityReport.Status.INSUFFICIENT_DATA
    elif minimum is None:
        status = QualityReport.Status.NO_SLA
    else:
        status = QualityReport.Status.OK if _meets(metric, judged, minimum) else QualityReport.Status.BELOW_SLA
    with transaction.atomic():
        report = QualityReport.objects.create(
            model_version=found,
            window_start=start,
            window_end=end,
            rows=rows,
            labelled=labelled,
            label_delay_seconds=float(np.median(delays)) if delays else None,
            metric=metric,
            value=value,
            estimated_value=estimated_value,
            status=status,
            measured=_jsonable(measured),
            estimated=_jsonable(estimated),
            reason=" ".join(reasons),
            requested_by=actor_ref(actor),
        )
        audit_record(
            actor=actor,
            action="quality_report.created",
            target=report,
            data={"status": status, "rows": rows, "labelled": labelled},
        )
    _quality_alert(found, report, minimum)
    return report


def _jsonable(figures: dict | None) -> dict | None:
    return None if figures is None else {key: _finite(value) for key, value in figures.items()}


def _quality_alert(version: ModelVersion, report: QualityReport, minimum: float | None) -> None:
    model = version.registered_model
    key = f"quality:{model.name}:v{version.version}"
    if report.status == QualityReport.Status.BELOW_SLA:
        source = "measured from labels" if report.value is not None else "estimated without labels (CBPE)"
        judged = report.value if report.value is not None else report.estimated_value
        bound = "at most" if report.metric in ERROR_METRICS else "at least"
        alert_raise(
            key=key,
            kind=Alert.Kind.QUALITY,
            severity=Alert.Severity.CRITICAL if report.value is not None else Alert.Severity.WARNING,
            title=f"{model.name} v{version.version}: {report.metric} below the SLA",
            detail=(
                f"{report.metric} = {judged:.4f} ({source}) over {report.rows} decisions, "
                f"{report.labelled} labelled; the SLA asks for {bound} {minimum:g}."
            ),
            registered_model=model,
            data={"quality_report": report.pk, "metric": report.metric, "value": judged},
        )
    elif report.status == QualityReport.Status.OK:
        alert_resolve_key(key=key, reason=f"{report.metric} meets the SLA again (report {report.pk}).")


# -- service-level objectives ------------------------------------------------------------------------------

LATENCY_QUANTILE = 0.95
FAST_BURN_RATE = 14.4  # a 30-day budget spent in about two days at this rate (the SRE workbook's page threshold)
FAST_BURN_MIN_REQUESTS = 100


def _objective(
    name: str, target: Any, measured: Any, met: bool | None, remaining: float | None, burn: float | None, **extra
) -> dict[str, Any]:
    return {
        "objective": name,
        "target": target,
        "measured": measured,
        "met": met,
        "budget_remaining": None if remaining is None else round(remaining, 6),
        "burn_rate_1h": None if burn is None else round(burn, 6),
        **extra,
    }


def _budget(bad: int, total: int, allowed_share: float) -> float | None:
    """The share of the error budget left: 1 - (bad share) / (allowed bad share). None without requests."""
    if total == 0:
        return None
    if allowed_share <= 0:
        return 1.0 if bad == 0 else 0.0
    return 1.0 - (bad / total) / allowed_share


def slo_report_run(*, registered_model: RegisteredModel, days: float = 30.0, now: datetime | None = None) -> SloReport:
    """The model's SLOs over the last `days`: the SLA's p95 latency (95 % of requests within the target:
    5 % may be slower), availability (answered / answered + failed by the model; a canary's failures do not
    count, the champion answers for it) and the quality minimum (from the newest quality report). Stores
    the report and raises or resolves an alert per objective: budget spent (critical) or burning over
    FAST_BURN_RATE times too fast in the last hour (warning)."""
    end = now or timezone.now()
    start, hour_ago = end - timedelta(days=days), end - timedelta(hours=1)
    served = PredictionRecord.objects.filter(
        model_version__registered_model=registered_model, row=0, created_at__gte=start, created_at__lt=end
    ).exclude(route=Route.SHADOW)
    failed = ScoringFailure.objects.filter(
        model_version__registered_model=registered_model, created_at__gte=start, created_at__lt=end
    ).exclude(route__in=[Route.CANARY, Route.SHADOW])
    answered, failures = served.count(), failed.count()
    answered_1h = served.filter(created_at__gte=hour_ago).count()
    failures_1h = failed.filter(created_at__gte=hour_ago).count()
    total, total_1h = answered + failures, answered_1h + failures_1h
    objectives = []
    target = registered_model.latency_p95_ms_target
    if target is not None:
        allowed = 1 - LATENCY_QUANTILE
        slow = served.filter(latency_ms__gt=target).count()
        slow_1h = served.filter(created_at__gte=hour_ago, latency_ms__gt=target).count()
        latencies = np.array(
            list(served.order_by("-created_at").values_list("latency_ms", flat=True)[: settings.FARO_DRIFT_MAX_ROWS]),
            dtype=np.float64,
        )
        latencies = latencies[np.isfinite(latencies)]
        p95 = float(np.quantile(latencies, LATENCY_QUANTILE)) if latencies.size else None
        burn = (slow_1h / answered_1h) / allowed if answered_1h else None
        objectives.append(
            _objective(
                "latency",
                target,
                None if p95 is None else round(p95, 3),
                None if p95 is None else p95 <= target,
                _budget(slow, answered, allowed),
                burn,
                unit="ms",
                bad=slow,
                total=answered,
            )
        )
    target = registered_model.availability_target
    if target is not None:
        allowed = 1 - target / 100
        measured = round(100 * answered / total, 4) if total else None
        burn = ((failures_1h / total_1h) / allowed if allowed > 0 else None) if total_1h else None
        objectives.append(
            _objective(
                "availability",
                target,
                measured,
                None if measured is None else measured >= target,
                _budget(failures, total, allowed),
                burn,
                unit="%",
                bad=failures,
                total=total,
            )
        )
    minimum = registered_model.quality_minimum
    if minimum is not None:
        newest = (
            QualityReport.objects.filter(model_version__registered_model=registered_model, created_at__lte=end)
            .exclude(status=QualityReport.Status.INSUFFICIENT_DATA)
            .order_by("-created_at")
            .first()
        )
        value = None if newest is None else (newest.value if newest.value is not None else newest.estimated_value)
        metric = newest.metric if newest is not None else registered_model.quality_metric or ""
        met = _meets(metric, value, minimum)
        objectives.append(
            _objective(
                "quality",
                minimum,
                value,
                met,
                None if met is None else (1.0 if met else 0.0),
                None,
                metric=metric,
                source=None if newest is None else ("labels" if newest.value is not None else "estimate"),
            )
        )
    report = SloReport.objects.create(
        registered_model=registered_model, window_start=start, window_end=end, requests=total, objectives=objectives
    )
    _slo_alerts(registered_model, report, total_1h)
    return report


def _slo_alerts(model: RegisteredModel, report: SloReport, requests_1h: int) -> None:
    for objective in report.objectives:
        key = f"slo:{model.name}:{objective['objective']}"
        remaining, burn = objective["budget_remaining"], objective["burn_rate_1h"]
        spent = remaining is not None and remaining <= 0
        burning = burn is not None and burn >= FAST_BURN_RATE and requests_1h >= FAST_BURN_MIN_REQUESTS
        if spent or burning:
            what = "error budget spent" if spent else f"error budget burning {burn:.1f}x too fast"
            left = "unknown" if remaining is None else f"{remaining:.3f}"
            alert_raise(
                key=key,
                kind=Alert.Kind.SLO,
                severity=Alert.Severity.CRITICAL if spent else Alert.Severity.WARNING,
                title=f"{model.name}: {objective['objective']} SLO {what}",
                detail=(
                    f"{objective['objective']}: measured {objective['measured']} against the target "
                    f"{objective['target']} over {report.window_start:%Y-%m-%d %H:%M} to "
                    f"{report.window_end:%Y-%m-%d %H:%M}; budget left {left}."
                ),
                registered_model=model,
                data={"slo_report": report.pk, **{k: objective[k] for k in ("objective", "budget_remaining")}},
            )
        elif remaining is not None:
            alert_resolve_key(key=key, reason=f"The {objective['objective']} SLO is within its budget again.")


# -- failed jobs ---------------------------------------------------------------------------------------------

JOB_ALERT_LOOKBACK = timedelta(days=7)


def failed_job_alerts(*, now: datetime | None = None) -> int:
    """An alert for each training, batch scoring or ingest job that failed in the last week and has had
    none yet. Returns how many were opened."""
    from apps.data.models import IngestJob
    from apps.predictions.models import BatchScoringJob
    from apps.registry.models import TrainingJob

    since = (now or timezone.now()) - JOB_ALERT_LOOKBACK
    opened = 0
    for label, job_model in (("training", TrainingJob), ("batch", BatchScoringJob), ("ingest", IngestJob)):
        failed = job_model.objects.filter(status="failed", finished_at__gte=since).order_by("pk")
        for job in failed:
            key = f"job:{label}:{job.pk}"
            if Alert.objects.filter(key=key).exists():
                continue
            model = getattr(job, "registered_model", None)
            _, created = alert_raise(
                key=key,
                kind=Alert.Kind.JOB,
                severity=Alert.Severity.WARNING,
                title=f"{label.capitalize()} job {job.pk} failed",
                detail=(job.error or "")[:2000],
                registered_model=model if isinstance(model, RegisteredModel) else None,
                data={"job": label, "job_id": job.pk},
            )
            opened += int(created)
    return opened


SUBJECT_REQUEST_DUE_SOON = timedelta(days=7)


def subject_request_alerts(*, now: datetime | None = None) -> int:
    """Data-subject requests against their legal deadline: a warning a week before an open request is due, a
    critical alert once it is overdue, a warning while an erasure is stopped by a failing store; each resolved
    when the request closes (or the erasure moves on). Returns how many were opened."""
    from apps.governance.models import DataSubjectRequest, ErasureStep

    now = now or timezone.now()
    opened = 0
    open_requests = DataSubjectRequest.objects.filter(status__in=DataSubjectRequest.OPEN).order_by("due_at")
    wanted: set[str] = set()
    for request in open_requests.filter(due_at__lt=now + SUBJECT_REQUEST_DUE_SOON):
        overdue = request.due_at <= now
        key = f"dsr:{request.pk}:{'overdue' if overdue else 'due-soon'}"
        wanted.add(key)
        when = f"{request.due_at:%Y-%m-%d %H:%M} UTC"
        _, created = alert_raise(
            key=key,
            kind=Alert.Kind.PRIVACY,
            severity=Alert.Severity.CRITICAL if overdue else Alert.Severity.WARNING,
            title=f"{request.get_kind_display()} request {request.pk} {'is overdue' if overdue else 'is due soon'}",
            detail=f"It was due {when}." if overdue else f"It is due {when}; status: {request.get_status_display()}.",
            data={"request": request.pk, "due_at": request.due_at.isoformat()},
        )
        opened += int(created)
    stopped = ErasureStep.objects.filter(
        request__status=DataSubjectRequest.Status.IN_PROGRESS,
        status=ErasureStep.Status.PENDING,
        detail__has_key="error",
    ).select_related("request")
    for step in stopped:
        key = f"dsr:{step.request_id}:erasure-stopped"
        wanted.add(key)
        _, created = alert_raise(
            key=key,
            kind=Alert.Kind.PRIVACY,
            severity=Alert.Severity.WARNING,
            title=f"Erasure request {step.request_id} is stopped at {step.store}",
            detail=f"{step.detail['error']} It is retried until the store is repaired.",
            data={"request": step.request_id, "store": step.store, "target": step.target},
        )
        opened += int(created)
    for key in Alert.objects.filter(key__startswith="dsr:", status__in=UNRESOLVED).values_list("key", flat=True):
        if key not in wanted:
            alert_resolve_key(key=key, reason="The request moved on or was closed.")
    return opened


def checks_run(*, now: datetime | None = None) -> None:
    """The scheduled checks: the live quality of every champion and running canary, every model's SLOs,
    failed jobs."""
    for version in served_versions():
        name = version.registered_model.name
        try:
            quality_report_run(
                model_name=name, version=version.version, hours=settings.FARO_QUALITY_WINDOW_HOURS, now=now
            )
        except FaroError as exc:
            logger.warning("No quality report for %s: %s", name, exc.message)
    for model in RegisteredModel.objects.all():
        slo_report_run(registered_model=model, days=settings.FARO_SLO_WINDOW_DAYS, now=now)
    failed_job_alerts(now=now)
    subject_request_alerts(now=now)
