"""Release gates: the evidence a version must show before it may become champion.

A challenger and the current champion are scored on the same rows — the challenger's held-out test rows
of its dataset version — so the comparison is like for like. The gates:

- quality: the model's quality metric meets the SLA minimum (a maximum for error metrics such as rmse);
- champion: the challenger is no worse than the champion by more than `max_relative_drop`;
- fairness: every protected attribute within the model's fairness limits;
- data_checks: every check of the training data passed;
- onnx_parity: the ONNX export matches the native model on the holdout (trained versions).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from django.utils import timezone

from apps.core.errors import FaroError
from apps.data.selectors import dataset_version_table
from apps.registry.models import ModelVersion
from apps.registry.scoring import score_columns
from apps.registry.training import CLASSIFICATION

HIGHER_IS_BETTER = {
    "auc": True,
    "accuracy": True,
    "f1": True,
    "f1_macro": True,
    "precision": True,
    "recall": True,
    "r2": True,
    "log_loss": False,
    "brier": False,
    "rmse": False,
    "mae": False,
    "mape": False,
}
KNOWN_METRICS = tuple(HIGHER_IS_BETTER)


def quality_metric(version: ModelVersion) -> str:
    chosen = version.registered_model.quality_metric
    if chosen:
        return chosen
    return "auc" if version.task_type == CLASSIFICATION else "rmse"


def _targets(version: ModelVersion, values: list[Any]) -> np.ndarray:
    if version.task_type == CLASSIFICATION:
        index = {label: i for i, label in enumerate(version.labels)}
        return np.array([index.get(value, -1) for value in values], dtype=np.int64)
    return np.array(values, dtype=np.float64)


def _score(version: ModelVersion, columns: dict[str, list[Any]], y: np.ndarray, metric: str) -> float | None:
    from apps.registry.evaluation import evaluate

    raw = score_columns(version, columns)
    metrics = evaluate(
        task_type=version.task_type,
        labels=list(version.labels),
        y_true=y,
        predicted=raw,
        contribs=None,
        feature_names=[],
        gain=None,
    )["metrics"]
    return metrics.get(metric)


def _gate(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": bool(passed), "detail": detail}


def gates_evaluate(*, version: ModelVersion, champion: ModelVersion | None) -> dict[str, Any]:
    """The gate report for `version` against `champion` (None: no champion yet, or it is this version)."""
    from apps.registry.services import model_version_holdout_rows

    registered = version.registered_model
    metric = quality_metric(version)
    higher = HIGHER_IS_BETTER.get(metric, True)
    gates: list[dict[str, Any]] = []
    report: dict[str, Any] = {
        "evaluated_at": timezone.now().isoformat(),
        "metric": metric,
        "higher_is_better": higher,
        "champion": None,
        "score": None,
    }
    try:
        rows = model_version_holdout_rows(version)
        table = dataset_version_table(version=version.dataset_version).take(rows)
        columns = table.to_pydict()
        target = columns.get(version.target_column)
        if target is None:
            raise FaroError(f"The holdout has no target column {version.target_column!r}.")
        y = _targets(version, target)
        keep = y >= 0 if version.task_type == CLASSIFICATION else ~np.isnan(y)
        if not keep.all():
            positions = np.flatnonzero(keep)
            columns = {name: [values[i] for i in positions] for name, values in columns.items()}
            y = y[keep]
        score = _score(version, columns, y, metric)
        report["score"] = score
        report["holdout_rows"] = len(y)
    except FaroError as exc:
        columns, y, score = None, None, None
        gates.append(_gate("quality", False, f"The version could not be scored on its holdout: {exc.message}"))

    minimum = registered.quality_minimum
    if score is not None:
        if minimum is None:
            gates.append(_gate("quality", True, f"{metric} = {score:.4f}; the model sets no minimum."))
        else:
            ok = score >= minimum if higher else score <= minimum
            bound = "at least" if higher else "at most"
            gates.append(_gate("quality", ok, f"{metric} = {score:.4f}; the SLA asks for {bound} {minimum:g}."))

    if champion is not None and columns is not None:
        try:
            champion_score = _score(champion, columns, _targets(champion, columns[version.target_column]), metric)
        except FaroError as exc:
            champion_score = None
            gates.append(
                _gate("champion", False, f"The champion v{champion.version} could not be scored: {exc.message}")
            )
        report["champion"] = {"version": champion.version, "version_id": champion.pk, "score": champion_score}
        if champion_score is not None and score is not None:
            drop = registered.max_relative_drop
            limit = champion_score * (1 - drop) if higher else champion_score * (1 + drop)
            ok = score >= limit if higher else score <= limit
            gates.append(
                _gate(
                    "champion",
                    ok,
                    f"{metric} {score:.4f} against champion v{champion.version}'s {champion_score:.4f} on the same "
                    f"{len(y)} rows; allowed: {'≥' if higher else '≤'} {limit:.4f} ({drop:.1%} relative).",
                )
            )
    elif champion is not None:
        report["champion"] = {"version": champion.version, "version_id": champion.pk, "score": None}
    else:
        gates.append(_gate("champion", True, "There is no other champion to compare with."))

    evaluation = version.evaluation or {}
    fairness = evaluation.get("fairness") or {}
    if fairness:
        failing = [
            f"{name}: {' '.join(item.get('problems') or [])}"
            for name, item in fairness.items()
            if not item.get("passed")
        ]
        gates.append(
            _gate(
                "fairness",
                not failing,
                " | ".join(failing) if failing else f"Within limits for {', '.join(sorted(fairness))}.",
            )
        )
    else:
        gates.append(_gate("fairness", True, "No protected attribute to measure (tag dataset columns as protected)."))

    checks = (version.dataset_version.validation or {}).get("checks") or []
    failed = [f"{item['kind']}({item['column']}): {item['message']}" for item in checks if not item.get("passed")]
    gates.append(
        _gate(
            "data_checks",
            not failed,
            "; ".join(failed)
            if failed
            else f"All {len(checks)} checks of dataset version {version.dataset_version.number} passed.",
        )
    )
    if version.source == ModelVersion.Source.XGBOOST:
        parity = version.onnx_parity or {}
        gates.append(
            _gate(
                "onnx_parity",
                bool(parity.get("passed")),
                f"ONNX matches on {parity.get('rows')} rows (largest difference {parity.get('max_abs_diff', 0):.2g})."
                if parity.get("passed")
                else f"ONNX export not verified: {parity.get('error', 'not exported')}.",
            )
        )
    report["gates"] = gates
    report["passed"] = all(gate["passed"] for gate in gates)
    return report
