"""Live quality of a served model: measured once labels arrive, estimated before they do. No Django here.

Only numpy and scipy; every function is vectorised over the whole window, so a million rows cost a sort.

Inputs
    One-dimensional arrays or sequences of equal length (else ValueError naming both lengths). Probabilities
    are floats in [0, 1]; NaN means "no probability" and the row is dropped. Binary labels (`actual`) are
    booleans or 0/1 numbers, True / 1 for the positive class; None or NaN means "no label yet" and the row is
    dropped. Anything else (a probability of 1.2 or infinity, a label of 2 or "yes") is a ValueError: a data
    error, which a person must fix, not a row to skip quietly. Every result counts its dropped rows as
    `skipped`; `rows` counts the rows used.

Status (`MIN_ROWS`)
    Every result has `status` "ok" or "insufficient_data". It depends on `rows` alone: fewer than `min_rows`
    (30 by default) is "insufficient_data". The figures are still computed whenever there is at least one row,
    because a dashboard may want to show them greyed out; with no rows at all every figure is None. A figure
    that is undefined for the data at hand (AUC with one class, precision with nothing predicted positive) is
    None, never a stand-in 0 or 0.5, and `reason` says why; with status "ok" and every figure defined, `reason`
    is "". The status says nothing about whether a defined figure is good: that is for the caller's limits.

Measured quality (`classification_quality`, `regression_quality`, `multiclass_accuracy`)
    A row is predicted positive iff probability >= threshold. Precision = TP / (TP + FP), recall =
    TP / (TP + FN), F1 = 2 TP / (2 TP + FP + FN) (the harmonic mean of precision and recall where both are
    defined; it is also defined, as 0, when there are positives but nothing is predicted positive, since the
    model then missed every positive). AUC is the Mann-Whitney statistic: the share of (positive, negative)
    pairs in which the positive has the higher probability, a tie counting one half; it is computed from
    average ranks (`scipy.stats.rankdata`) in exact half-integer arithmetic and divided once, and agrees with
    `sklearn.metrics.roc_auc_score`.

Estimated quality without labels (`cbpe_estimate`)
    Confidence-Based Performance Estimation as NannyML describes it: if the probabilities are calibrated, a row
    with probability p is positive with chance p, so the expected confusion matrix is TP = sum of p and
    FP = sum of 1 - p over rows predicted positive, FN = sum of p and TN = sum of 1 - p over rows predicted
    negative, and the expected accuracy, precision, recall and F1 follow from it by the formulas above. The
    expected ROC curve visits, for each distinct probability from the highest down (equal probabilities are one
    step, so ties take the diagonal, as in the measured AUC), expected TPR = cumulative sum of p / sum of p and
    expected FPR = cumulative sum of (1 - p) / sum of (1 - p), from (0, 0) to (1, 1); the expected AUC is the
    area under it by the trapezoid rule. That area equals exactly
        sum over ordered pairs (i, j), i == j included, of p_i (1 - p_j) ([s_i > s_j] + [s_i == s_j] / 2)
        / (sum of p * sum of (1 - p)),
    a ratio of expected pair counts rather than the expected ratio, so it sits within O(1 / rows) of the mean
    AUC over label draws. It is undefined (None) when sum of p or sum of 1 - p is 0.
    An estimate is only as good as the calibration it assumes: `calibration_error` on a labelled window (also
    reported by `classification_quality`) says whether it can be trusted.

Calibration (`calibration_error`)
    Expected calibration error with `bins` equal-width bins: a probability p falls in bin floor(p * bins),
    the last bin taking p == 1, i.e. [0, 0.1), [0.1, 0.2), ..., [0.9, 1.0] with ten bins (the binning of the
    registry's calibration chart). ECE = sum over bins of (count / rows) * |mean p - share positive|, computed as
    sum over bins of |sum of p - number of positives| / rows.

All floats in the results are Python floats and all counts Python ints; nothing is rounded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

OK, INSUFFICIENT_DATA = "ok", "insufficient_data"
MIN_ROWS = 30  # fewer rows used: "insufficient_data" (figures still computed when there is at least one row)
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class ClassificationQuality:
    """Measured quality of a binary classifier on a labelled window."""

    status: str  # "ok" | "insufficient_data"
    rows: int  # rows with both a label and a probability
    skipped: int  # rows dropped for a missing label or a NaN probability
    positives: int  # rows whose label is the positive class
    threshold: float
    true_positives: int
    false_positives: int
    false_negatives: int
    true_negatives: int
    auc: float | None  # None with one class only
    accuracy: float | None
    precision: float | None  # None when nothing is predicted positive
    recall: float | None  # None when nothing is positive
    f1: float | None  # None when every row is a true negative
    calibration_error: float | None  # ECE with CALIBRATION_BINS bins
    reason: str  # why the status is not "ok" and why any figure is None; "" when there is nothing to say


@dataclass(frozen=True)
class RegressionQuality:
    """Measured quality of a regressor on a labelled window."""

    status: str  # "ok" | "insufficient_data"
    rows: int  # pairs with both values
    skipped: int  # pairs where either value is NaN
    rmse: float | None  # None with no rows
    mae: float | None  # None with no rows
    reason: str


@dataclass(frozen=True)
class EstimatedQuality:
    """Quality of a binary classifier estimated from its probabilities alone (CBPE); see the module docstring."""

    status: str  # "ok" | "insufficient_data"
    rows: int  # rows with a probability
    skipped: int  # rows dropped for a NaN probability
    threshold: float
    expected_true_positives: float
    expected_false_positives: float
    expected_false_negatives: float
    expected_true_negatives: float
    auc: float | None  # None when sum of p or sum of 1 - p is 0
    accuracy: float | None
    precision: float | None  # None when nothing is predicted positive
    recall: float | None  # None when sum of p is 0
    f1: float | None  # None when no positive is expected and nothing is predicted positive
    reason: str


# -- inputs ------------------------------------------------------------------------------------------------


def _floats(values: Any, name: str) -> np.ndarray:
    """A one-dimensional float64 copy (or view) of `values`; None becomes NaN."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if array.dtype.kind not in "biufO":
        raise ValueError(f"{name} must be numbers, not {array.dtype}")
    try:
        return array.astype(np.float64, copy=False)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (None or NaN for missing)") from None


def _same_length(first: np.ndarray, first_name: str, second: np.ndarray, second_name: str) -> None:
    if first.shape[0] != second.shape[0]:
        raise ValueError(
            f"{first_name} has {first.shape[0]:,} rows and {second_name} has {second.shape[0]:,}; "
            "they must be the same length"
        )


def _probabilities(values: Any, name: str = "probability") -> np.ndarray:
    array = _floats(values, name)
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(array) & ~((array >= 0) & (array <= 1))
    if bad.any():
        raise ValueError(
            f"{name} must be in [0, 1] or NaN: {int(bad.sum()):,} values are not, the first {array[bad][0]!r}"
        )
    return array


def _labels(values: Any, name: str = "actual") -> np.ndarray:
    """Binary labels as 1.0 / 0.0, NaN where missing."""
    array = _floats(values, name)
    bad = ~np.isnan(array) & (array != 0) & (array != 1)
    if bad.any():
        raise ValueError(
            f"{name} must be True/False or 1/0 (None or NaN for missing): {int(bad.sum()):,} values are not, "
            f"the first {array[bad][0]!r}"
        )
    return array


def _threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], not {threshold!r}")
    return threshold


def _labelled(actual: Any, probability: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """The positive mask and probabilities of the rows with both, and how many rows were dropped."""
    labels = _labels(actual)
    probabilities = _probabilities(probability)
    _same_length(labels, "actual", probabilities, "probability")
    keep = ~(np.isnan(labels) | np.isnan(probabilities))
    skipped = int(keep.shape[0] - np.count_nonzero(keep))
    if skipped:
        labels, probabilities = labels[keep], probabilities[keep]
    return labels == 1, probabilities, skipped


# -- shared pieces -----------------------------------------------------------------------------------------


def _size(rows: int, skipped: int, min_rows: int, what: str) -> tuple[str, list[str]]:
    """The status and, unless it is "ok", the sentence saying why."""
    if rows >= min_rows:
        return OK, []
    if rows == 0:
        dropped = f" ({skipped:,} skipped)" if skipped else ""
        return INSUFFICIENT_DATA, [f"No {what}{dropped}."]
    return INSUFFICIENT_DATA, [f"Only {rows:,} {what}; at least {min_rows:,} are needed."]


def _ratio(part: float, whole: float) -> float | None:
    return float(part / whole) if whole else None


def _check_min_rows(min_rows: int) -> None:
    if min_rows < 1:
        raise ValueError("min_rows must be at least 1")


def _mann_whitney_auc(positive: np.ndarray, scores: np.ndarray, positives: int, negatives: int) -> float:
    """Share of (positive, negative) pairs ordered correctly, ties one half; both counts must be positive.

    Average ranks are integers or halves, so twice the rank sum of the positives is an exact integer in
    float64 (below 2**53 for any realistic window) and the only rounding is the final division.
    """
    ranks = stats.rankdata(scores, method="average")
    twice_u = float(np.sum(2.0 * ranks[positive])) - positives * (positives + 1)
    return float(twice_u / (2 * positives * negatives))


def _ece(positive: np.ndarray, probabilities: np.ndarray, bins: int) -> float:
    rows = probabilities.shape[0]
    index = np.minimum(np.floor(probabilities * bins).astype(np.int64), bins - 1)
    expected = np.bincount(index, weights=probabilities, minlength=bins)
    observed = np.bincount(index, weights=positive.astype(np.float64), minlength=bins)
    return float(np.sum(np.abs(expected - observed)) / rows)


# -- measured ----------------------------------------------------------------------------------------------


def classification_quality(
    actual: Sequence[bool] | np.ndarray,
    probability: np.ndarray,
    threshold: float = 0.5,
    *,
    min_rows: int = MIN_ROWS,
) -> ClassificationQuality:
    """Accuracy, precision, recall, F1, AUC and calibration error of a binary classifier on labelled rows.

    `actual` is True where the true label is the positive class, `probability` the model's probability of the
    positive class; a row is predicted positive iff probability >= threshold. Rows without a label or with a
    NaN probability are dropped and counted in `skipped`. See the module docstring for the definitions.
    """
    threshold = _threshold(threshold)
    _check_min_rows(min_rows)
    positive, probabilities, skipped = _labelled(actual, probability)
    rows = int(probabilities.shape[0])
    predicted = probabilities >= threshold
    tp = int(np.count_nonzero(predicted & positive))
    fp = int(np.count_nonzero(predicted & ~positive))
    fn = int(np.count_nonzero(~predicted & positive))
    tn = rows - tp - fp - fn
    positives = tp + fn
    status, notes = _size(rows, skipped, min_rows, "rows with both a label and a probability")

    auc = accuracy = precision = recall = f1 = calibration = None
    if rows:
        negatives = rows - positives
        if positives and negatives:
            auc = _mann_whitney_auc(positive, probabilities, positives, negatives)
        else:
            notes.append(f"AUC needs both classes; all {rows:,} rows are {'positive' if positives else 'negative'}.")
        accuracy = _ratio(tp + tn, rows)
        precision = _ratio(tp, tp + fp)
        if precision is None:
            notes.append(f"Precision is undefined: no row is predicted positive at threshold {threshold:g}.")
        recall = _ratio(tp, positives)
        if recall is None:
            notes.append("Recall is undefined: no row is positive.")
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        if f1 is None:
            notes.append("F1 is undefined: every row is a true negative.")
        calibration = _ece(positive, probabilities, CALIBRATION_BINS)

    return ClassificationQuality(
        status=status,
        rows=rows,
        skipped=skipped,
        positives=positives,
        threshold=threshold,
        true_positives=tp,
        false_positives=fp,
        false_negatives=fn,
        true_negatives=tn,
        auc=auc,
        accuracy=accuracy,
        precision=precision,
        recall=recall,
        f1=f1,
        calibration_error=calibration,
        reason=" ".join(notes),
    )


def multiclass_accuracy(
    actual_labels: Sequence[Any] | np.ndarray, predicted_labels: Sequence[Any] | np.ndarray
) -> float | None:
    """Share of rows whose predicted label equals the actual one; None with no rows.

    Labels are compared as they are (1 and "1" differ; NaN equals nothing), so drop unlabelled rows first.
    """
    # A sequence becomes an object array: np.asarray(["1", 2]) would turn the 2 into "2".
    actual = actual_labels if isinstance(actual_labels, np.ndarray) else np.asarray(actual_labels, dtype=object)
    predicted = (
        predicted_labels if isinstance(predicted_labels, np.ndarray) else np.asarray(predicted_labels, dtype=object)
    )
    for array, name in ((actual, "actual_labels"), (predicted, "predicted_labels")):
        if array.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional")
    _same_length(actual, "actual_labels", predicted, "predicted_labels")
    rows = actual.shape[0]
    if rows == 0:
        return None
    kinds = {actual.dtype.kind, predicted.dtype.kind}
    if not (kinds <= set("biuf") or kinds <= set("U")):
        # mixed or object labels: compare as Python values, never through a numpy cast
        actual, predicted = actual.astype(object), predicted.astype(object)
    return float(np.count_nonzero(actual == predicted) / rows)


def regression_quality(
    actual: Sequence[float] | np.ndarray,
    predicted: Sequence[float] | np.ndarray,
    *,
    min_rows: int = MIN_ROWS,
) -> RegressionQuality:
    """Root mean squared error and mean absolute error over the pairs where neither value is NaN (or None).

    Infinite values are a ValueError: an infinite error is a broken model or feed, not a figure to average.
    """
    _check_min_rows(min_rows)
    truth = _floats(actual, "actual")
    guess = _floats(predicted, "predicted")
    _same_length(truth, "actual", guess, "predicted")
    for array, name in ((truth, "actual"), (guess, "predicted")):
        if np.isinf(array).any():
            raise ValueError(f"{name} must be finite or NaN: {int(np.isinf(array).sum()):,} values are infinite")
    keep = ~(np.isnan(truth) | np.isnan(guess))
    rows = int(np.count_nonzero(keep))
    skipped = int(keep.shape[0]) - rows
    status, notes = _size(rows, skipped, min_rows, "pairs with both an actual and a predicted value")
    rmse = mae = None
    if rows:
        error = guess[keep] - truth[keep]
        rmse = float(math.sqrt(float(np.mean(error * error))))
        mae = float(np.mean(np.abs(error)))
    return RegressionQuality(status=status, rows=rows, skipped=skipped, rmse=rmse, mae=mae, reason=" ".join(notes))


def calibration_error(
    actual: Sequence[bool] | np.ndarray, probability: np.ndarray, bins: int = CALIBRATION_BINS
) -> float | None:
    """Expected calibration error over `bins` equal-width bins (see the module docstring); None with no rows.

    Rows without a label or with a NaN probability are dropped. 0 is perfectly calibrated; the CBPE estimate of
    the same model is only as trustworthy as this is small.
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, not {bins!r}")
    positive, probabilities, _ = _labelled(actual, probability)
    if probabilities.shape[0] == 0:
        return None
    return _ece(positive, probabilities, int(bins))


# -- estimated ---------------------------------------------------------------------------------------------


def _expected_auc(probabilities: np.ndarray) -> float | None:
    """Area under the expected ROC curve (module docstring); None when sum of p or sum of 1 - p is 0.

    The curve's points are kept unnormalised (cumulative expected positives and negatives) and the area is
    divided by sum of p * sum of (1 - p) once at the end: the same trapezoids, fewer roundings.
    """
    descending = np.sort(probabilities)[::-1]
    last_of_each = np.flatnonzero(np.append(descending[1:] != descending[:-1], True))
    true_positives = np.concatenate(([0.0], np.cumsum(descending)[last_of_each]))
    false_positives = np.concatenate(([0.0], np.cumsum(1.0 - descending)[last_of_each]))
    expected_positives, expected_negatives = true_positives[-1], false_positives[-1]
    if expected_positives == 0 or expected_negatives == 0:
        return None
    twice_area = np.sum(np.diff(false_positives) * (true_positives[:-1] + true_positives[1:]))
    return float(min(1.0, max(0.0, twice_area / 2 / (expected_positives * expected_negatives))))


def cbpe_estimate(probability: np.ndarray, threshold: float = 0.5, *, min_rows: int = MIN_ROWS) -> EstimatedQuality:
    """Expected accuracy, precision, recall, F1 and ROC AUC of a binary classifier without labels (CBPE).

    Assumes calibrated probabilities (check with `calibration_error` on a labelled window). Rows with a NaN
    probability are dropped and counted in `skipped`. See the module docstring for the method.
    """
    threshold = _threshold(threshold)
    _check_min_rows(min_rows)
    probabilities = _probabilities(probability)
    present = ~np.isnan(probabilities)
    skipped = int(present.shape[0] - np.count_nonzero(present))
    if skipped:
        probabilities = probabilities[present]
    rows = int(probabilities.shape[0])
    predicted = probabilities >= threshold
    tp = float(np.sum(probabilities[predicted]))
    fp = float(np.sum(1.0 - probabilities[predicted]))
    fn = float(np.sum(probabilities[~predicted]))
    tn = float(np.sum(1.0 - probabilities[~predicted]))
    status, notes = _size(rows, skipped, min_rows, "rows with a probability")

    auc = accuracy = precision = recall = f1 = None
    if rows:
        auc = _expected_auc(probabilities)
        if auc is None:
            which = "0, so no positive" if tp + fn == 0 else "1, so no negative"
            notes.append(f"Expected AUC is undefined: every probability is {which} is expected.")
        accuracy = _ratio(tp + tn, rows)
        precision = _ratio(tp, tp + fp)
        if precision is None:
            notes.append(f"Expected precision is undefined: no row is predicted positive at threshold {threshold:g}.")
        recall = _ratio(tp, tp + fn)
        if recall is None:
            notes.append("Expected recall is undefined: every probability is 0, so no positive is expected.")
        f1 = _ratio(2 * tp, 2 * tp + fp + fn)
        if f1 is None:
            notes.append("Expected F1 is undefined: no positive is expected and no row is predicted positive.")

    return EstimatedQuality(
        status=status,
        rows=rows,
        skipped=skipped,
        threshold=threshold,
        expected_true_positives=tp,
        expected_false_positives=fp,
        expected_false_negatives=fn,
        expected_true_negatives=tn,
        auc=auc,
        accuracy=accuracy,
        precision=precision,
        recall=recall,
        f1=f1,
        reason=" ".join(notes),
    )
