"""Evaluating a trained model on held-out rows: metrics, curves, calibration, importance, fairness, latency.

No Django here: the worker hands in arrays it already has (labels, predictions, XGBoost's per-row
contributions) and stores the plain dict that comes back. Everything returned is JSON-safe: python
numbers, strings, lists, dicts and None where a value is undefined (never NaN or infinity).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from apps.registry.training import CLASSIFICATION, REGRESSION

FAIRNESS_DEFAULTS: dict[str, float] = {
    "disparate_impact_min": 0.8,  # the four-fifths rule
    "statistical_parity_max": 0.1,
    "equal_opportunity_max": 0.1,
}
MIN_GROUP_SIZE = 10  # smaller groups are reported but too noisy to pass or fail a model on
CURVE_POINTS = 101
CALIBRATION_BINS = 10
DECIMALS = 6


def evaluate(
    *,
    task_type: str,
    labels: list,
    y_true: np.ndarray,
    predicted: np.ndarray,
    contribs: np.ndarray | None,
    feature_names: list[str],
    gain: dict[str, float] | None,
    groups: dict[str, list] | None = None,
    favourable_index: int | None = None,
    fairness_limits: dict[str, float] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Everything the registry shows about a model's quality on `y_true`, as a JSON-safe dict.

    Inputs: class indices (classification) or numbers (regression) in `y_true`; the probability of
    class index 1 (binary), one probability per class (multiclass) or the prediction (regression) in
    `predicted`; XGBoost `pred_contribs` on the same rows, last column the bias, in `contribs`.

    Binary classification decides at `threshold` (p >= threshold is class index 1). Fairness is measured
    for binary models only, per protected attribute in `groups`: a row is selected when the model
    predicts the favourable class index (1 unless `favourable_index` says 0). The reference group is
    the group with the highest selection rate (ties: the larger group, then the name), so every
    disparate-impact ratio is at most 1 and every parity difference at most 0, whichever group that
    is. Groups under MIN_GROUP_SIZE rows are listed but take no part in the reference or the worst-case
    numbers; rows without a value (None or NaN) form no group. Raises ValueError for inconsistent input.
    """
    y_true, predicted, contribs = _checked(task_type, labels, y_true, predicted, contribs, feature_names, groups)
    limits = _limits(fairness_limits)
    if favourable_index is None:
        favourable_index = 1
    if favourable_index not in (0, 1):
        raise ValueError(f"favourable_index must be 0 or 1, not {favourable_index!r}.")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, not {threshold!r}.")

    binary = task_type == CLASSIFICATION and len(labels) == 2
    result: dict[str, Any] = {"rows": len(y_true)}
    if task_type == REGRESSION:
        result["metrics"] = _regression_metrics(y_true, predicted)
    else:
        y = y_true.astype(np.int64)
        chosen = (predicted >= threshold).astype(np.int64) if binary else predicted.argmax(axis=1)
        result["metrics"] = (
            _binary_metrics(y, predicted, chosen) if binary else _multiclass_metrics(y, predicted, chosen, len(labels))
        )
        result["confusion_matrix"] = _confusion_matrix(y, chosen, labels)
    if binary:
        y = y_true.astype(np.int64)
        result["roc_curve"] = _roc_curve(y, predicted)
        result["pr_curve"] = _pr_curve(y, predicted)
        result["calibration"] = _calibration(y, predicted)
    result["importance"] = _importance(contribs, feature_names, gain or {})
    fairness: dict[str, Any] = {}
    if binary and groups:
        selected = predicted >= threshold if favourable_index == 1 else predicted < threshold
        favourable = y_true.astype(np.int64) == favourable_index
        fairness = {attribute: _fairness(values, selected, favourable, limits) for attribute, values in groups.items()}
    result["fairness"] = fairness
    result["fairness_passed"] = all(report["passed"] for report in fairness.values())
    return result


def measure_latency(predict_one: Callable[[], object], *, repeats: int = 200) -> dict[str, float]:
    """Median and 95th percentile wall time of one call, in microseconds, after ten warm-up calls."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}.")
    for _ in range(10):
        predict_one()
    samples = np.empty(repeats, dtype=np.float64)
    for index in range(repeats):
        started = time.perf_counter_ns()
        predict_one()
        samples[index] = time.perf_counter_ns() - started
    return {
        "median_us": round(float(np.median(samples)) / 1000, 3),
        "p95_us": round(float(np.percentile(samples, 95)) / 1000, 3),
    }


# -- input -----------------------------------------------------------------------------------------


def _checked(
    task_type: str,
    labels: list,
    y_true: np.ndarray,
    predicted: np.ndarray,
    contribs: np.ndarray | None,
    feature_names: list[str],
    groups: Mapping[str, Sequence[Any]] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if task_type not in (CLASSIFICATION, REGRESSION):
        raise ValueError(f"task_type must be {CLASSIFICATION!r} or {REGRESSION!r}, not {task_type!r}.")
    y_true = np.asarray(y_true, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional; it has shape {y_true.shape}.")
    rows = len(y_true)
    if rows == 0:
        raise ValueError("There are no rows to evaluate.")
    if len(predicted) != rows:
        raise ValueError(f"predicted has {len(predicted)} rows but y_true has {rows}.")
    if not np.isfinite(y_true).all() or not np.isfinite(predicted).all():
        raise ValueError("y_true and predicted must hold finite numbers only.")
    classes = len(labels)
    if task_type == CLASSIFICATION:
        if classes < 2:
            raise ValueError(f"Classification needs at least two labels; got {classes}.")
        expected = (rows,) if classes == 2 else (rows, classes)
        if predicted.shape != expected:
            raise ValueError(f"predicted must have shape {expected} for {classes} classes; it has {predicted.shape}.")
        if (y_true != np.round(y_true)).any() or y_true.min() < 0 or y_true.max() >= classes:
            raise ValueError(f"y_true must hold class indices from 0 to {classes - 1}.")
    elif predicted.ndim != 1:
        raise ValueError(f"predicted must be one-dimensional for regression; it has shape {predicted.shape}.")
    if contribs is not None:
        contribs = np.asarray(contribs, dtype=np.float64)
        width = len(feature_names) + 1
        multiclass = task_type == CLASSIFICATION and classes > 2
        expected = (rows, classes, width) if multiclass else (rows, width)
        if len(contribs) != rows:
            raise ValueError(f"contribs has {len(contribs)} rows but y_true has {rows}.")
        if contribs.shape != expected:
            raise ValueError(
                f"contribs must have shape {expected} ({len(feature_names)} features and the bias); "
                f"it has {contribs.shape}."
            )
    for attribute, values in (groups or {}).items():
        if len(values) != rows:
            raise ValueError(f"The group values of {attribute!r} cover {len(values)} rows but y_true has {rows}.")
    return y_true, predicted, contribs


def _limits(overrides: Mapping[str, float] | None) -> dict[str, float]:
    unknown = set(overrides or {}) - FAIRNESS_DEFAULTS.keys()
    if unknown:
        raise ValueError(
            f"Unknown fairness limits: {', '.join(sorted(unknown))}; known: {', '.join(sorted(FAIRNESS_DEFAULTS))}."
        )
    return {**FAIRNESS_DEFAULTS, **{name: float(value) for name, value in (overrides or {}).items()}}


def _number(value: Any) -> float | None:
    """A python float, or None where the value is undefined (NaN, infinite, or no value at all)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _ratio(part: float, whole: float) -> float | None:
    return float(part / whole) if whole else None


# -- metrics ---------------------------------------------------------------------------------------


def _binary_metrics(y: np.ndarray, probability: np.ndarray, chosen: np.ndarray) -> dict[str, float | None]:
    from sklearn import metrics

    true_positive = int(((chosen == 1) & (y == 1)).sum())
    false_positive = int(((chosen == 1) & (y == 0)).sum())
    false_negative = int(((chosen == 0) & (y == 1)).sum())
    both_classes = len(np.unique(y)) == 2
    return {
        "auc": _number(metrics.roc_auc_score(y, probability)) if both_classes else None,
        "accuracy": float((chosen == y).mean()),
        "precision": _ratio(true_positive, true_positive + false_positive),
        "recall": _ratio(true_positive, true_positive + false_negative),
        "f1": _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative),
        "log_loss": _number(metrics.log_loss(y, np.column_stack([1.0 - probability, probability]), labels=[0, 1])),
        "brier": float(np.mean((probability - y) ** 2)),
    }


def _multiclass_metrics(
    y: np.ndarray, probabilities: np.ndarray, chosen: np.ndarray, classes: int
) -> dict[str, float | None]:
    from sklearn import metrics

    indices = list(range(classes))
    # Float32 boosters give rows that sum to one only within 1e-7; scikit-learn checks more tightly.
    totals = probabilities.sum(axis=1, keepdims=True)
    probabilities = probabilities / np.where(totals > 0, totals, 1.0)
    every_class = len(np.unique(y)) == classes  # a class absent from y_true has no one-vs-rest curve
    return {
        "auc": _number(metrics.roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=indices))
        if every_class
        else None,
        "accuracy": float((chosen == y).mean()),
        # Macro over the classes that occur in y_true or in the predictions, as scikit-learn does.
        "f1_macro": float(metrics.f1_score(y, chosen, average="macro", zero_division=0.0)),
        "log_loss": _number(metrics.log_loss(y, probabilities, labels=indices)),
    }


def _regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    error = predicted - y
    spread = float(((y - y.mean()) ** 2).sum())
    result = {
        "rmse": float(math.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
        # Undefined when y_true is constant: there is no variance to explain.
        "r2": 1.0 - float((error**2).sum()) / spread if spread else None,
    }
    if not (y == 0).any():
        result["mape"] = float(np.mean(np.abs(error) / np.abs(y)))  # a fraction: 0.05 is 5%
    return result


def _confusion_matrix(y: np.ndarray, chosen: np.ndarray, labels: list) -> dict[str, list]:
    classes = len(labels)
    counts = np.bincount(y * classes + chosen, minlength=classes * classes).reshape(classes, classes)
    return {"labels": [str(label) for label in labels], "matrix": counts.tolist()}


# -- curves ----------------------------------------------------------------------------------------


def _thinned(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """At most CURVE_POINTS evenly spaced points, the first and last always among them."""
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.round(np.linspace(0, len(x) - 1, CURVE_POINTS)).astype(np.int64))
        x, y = x[keep], y[keep]
    return {"x": [round(float(v), DECIMALS) for v in x], "y": [round(float(v), DECIMALS) for v in y]}


def _roc_curve(y: np.ndarray, probability: np.ndarray) -> dict[str, list[float]] | None:
    from sklearn import metrics

    if len(np.unique(y)) < 2:  # no false-positive or no true-positive rate to draw
        return None
    fpr, tpr, _ = metrics.roc_curve(y, probability)
    return _thinned(fpr, tpr)


def _pr_curve(y: np.ndarray, probability: np.ndarray) -> dict[str, list[float]] | None:
    from sklearn import metrics

    if not (y == 1).any():  # recall is undefined without positives
        return None
    precision, recall, _ = metrics.precision_recall_curve(y, probability)
    # scikit-learn lists recall falling to 0; a chart reads left to right.
    return _thinned(recall[::-1], precision[::-1])


def _calibration(y: np.ndarray, probability: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    index = np.clip(np.floor(probability * CALIBRATION_BINS), 0, CALIBRATION_BINS - 1).astype(np.int64)
    bins = []
    for number in range(CALIBRATION_BINS):
        inside = index == number
        count = int(inside.sum())
        if count:
            bins.append(
                {
                    "lower": round(number / CALIBRATION_BINS, DECIMALS),
                    "upper": round((number + 1) / CALIBRATION_BINS, DECIMALS),
                    "mean_predicted": round(float(probability[inside].mean()), DECIMALS),
                    "fraction_positive": round(float(y[inside].mean()), DECIMALS),
                    "count": count,
                }
            )
    return {"bins": bins}


# -- importance ------------------------------------------------------------------------------------


def _importance(
    contribs: np.ndarray | None, feature_names: list[str], gain: Mapping[str, float]
) -> list[dict[str, Any]]:
    if contribs is None:
        shap: list[float | None] = [None] * len(feature_names)
    else:
        magnitude = np.abs(contribs[..., :-1])  # the last column is the bias, not a feature
        if magnitude.ndim == 3:  # multiclass: a feature's weight is its pull on all classes together
            magnitude = magnitude.sum(axis=1)
        shap = [float(value) for value in magnitude.mean(axis=0)]
    rows = [
        {"feature": name, "gain": float(gain.get(name, 0.0)), "mean_abs_shap": value}
        for name, value in zip(feature_names, shap, strict=True)
    ]
    measure = "gain" if contribs is None else "mean_abs_shap"
    return sorted(rows, key=lambda row: (-row[measure], row["feature"]))


# -- fairness --------------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _fairness(
    values: Sequence[Any], selected: np.ndarray, favourable: np.ndarray, limits: Mapping[str, float]
) -> dict[str, Any]:
    members: dict[str, list[int]] = {}
    for row, value in enumerate(values):
        if not _missing(value):
            members.setdefault(str(value), []).append(row)
    groups = []
    for name in sorted(members):
        rows = np.array(members[name])
        deserving = rows[favourable[rows]]
        groups.append(
            {
                "group": name,
                "count": len(rows),
                "selection_rate": round(float(selected[rows].mean()), DECIMALS),
                "true_positive_rate": round(float(selected[deserving].mean()), DECIMALS) if len(deserving) else None,
                "included": len(rows) >= MIN_GROUP_SIZE,
            }
        )
    compared = [group for group in groups if group["included"]]
    report: dict[str, Any] = {
        "reference_group": None,
        "groups": groups,
        "min_group_size": MIN_GROUP_SIZE,
        "limits": dict(limits),
        "disparate_impact_ratio": None,
        "statistical_parity_difference": None,
        "equal_opportunity_difference": None,
        "passed": True,
        "problems": [],
    }
    if len(compared) < 2:
        report["note"] = f"Fewer than two groups have {MIN_GROUP_SIZE} or more rows, so no groups were compared."
        if compared:
            report["reference_group"] = compared[0]["group"]
        return report
    reference = min(compared, key=lambda group: (-group["selection_rate"], -group["count"], group["group"]))
    others = [group for group in compared if group is not reference]
    report["reference_group"] = reference["group"]
    problems = []

    base_rate = reference["selection_rate"]
    if base_rate:
        worst = min(others, key=lambda group: group["selection_rate"])
        ratio = round(worst["selection_rate"] / base_rate, DECIMALS)
        report["disparate_impact_ratio"] = ratio
        if ratio < limits["disparate_impact_min"]:
            problems.append(
                f"Disparate impact ratio {ratio:g} is below {limits['disparate_impact_min']:g}: group "
                f"{worst['group']!r} is selected at {worst['selection_rate']:g}, "
                f"reference group {reference['group']!r} at {base_rate:g}."
            )

    worst = max(others, key=lambda group: abs(group["selection_rate"] - base_rate))
    parity = round(worst["selection_rate"] - base_rate, DECIMALS)
    report["statistical_parity_difference"] = parity
    if abs(parity) > limits["statistical_parity_max"]:
        problems.append(
            f"Statistical parity difference {parity:g} is beyond ±{limits['statistical_parity_max']:g}: group "
            f"{worst['group']!r} is selected at {worst['selection_rate']:g}, "
            f"reference group {reference['group']!r} at {base_rate:g}."
        )

    base_tpr = reference["true_positive_rate"]
    measured = [group for group in others if group["true_positive_rate"] is not None]
    if base_tpr is not None and measured:
        worst = max(measured, key=lambda group: abs(group["true_positive_rate"] - base_tpr))
        opportunity = round(worst["true_positive_rate"] - base_tpr, DECIMALS)
        report["equal_opportunity_difference"] = opportunity
        if abs(opportunity) > limits["equal_opportunity_max"]:
            problems.append(
                f"Equal opportunity difference {opportunity:g} is beyond ±{limits['equal_opportunity_max']:g}: "
                f"of the rows whose true outcome is favourable, group {worst['group']!r} is selected at "
                f"{worst['true_positive_rate']:g}, reference group {reference['group']!r} at {base_tpr:g}."
            )
    report["problems"] = problems
    report["passed"] = not problems
    return report
