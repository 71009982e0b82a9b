"""Live quality maths: measured and CBPE-estimated metrics against hand arithmetic, scikit-learn and brute force."""

import dataclasses

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics

from apps.monitoring.quality import (
    INSUFFICIENT_DATA,
    MIN_ROWS,
    OK,
    ClassificationQuality,
    EstimatedQuality,
    RegressionQuality,
    calibration_error,
    cbpe_estimate,
    classification_quality,
    multiclass_accuracy,
    regression_quality,
)

NAN = float("nan")
INF = float("inf")


def assert_plain_types(result) -> None:
    """Every float field a Python float (or None), every count a Python int: ready for JSON and the database."""
    for field in dataclasses.fields(result):
        value = getattr(result, field.name)
        if field.name in ("status", "reason"):
            assert type(value) is str
        elif field.name in ("rows", "skipped", "positives") or field.name.endswith(("_positives", "_negatives")):
            assert type(value) is (float if field.name.startswith("expected_") else int), field.name
        else:
            assert value is None or type(value) is float, (field.name, type(value))


# -- classification_quality --------------------------------------------------------------------------------


def test_classification_six_rows_by_hand():
    actual = [True, False, True, True, False, False]
    probability = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.1])
    # AUC as concordant pairs: positives score 0.9, 0.8, 0.4; negatives 0.8, 0.3, 0.1; 3 x 3 = 9 pairs
    #   0.9 beats 0.8, 0.3, 0.1                      -> 3
    #   0.8 ties 0.8 (one half), beats 0.3, 0.1       -> 2.5
    #   0.4 loses to 0.8, beats 0.3, 0.1             -> 2
    #   AUC = 7.5 / 9
    # threshold 0.5: rows 0, 1, 2 predicted positive (labels T, F, T), rows 3, 4, 5 negative (T, F, F)
    #   TP 2, FP 1, FN 1, TN 2: accuracy 4/6, precision 2/3, recall 2/3, F1 = 2*2 / (4 + 1 + 1) = 4/6
    result = classification_quality(actual, probability)
    assert (result.rows, result.skipped, result.positives, result.threshold) == (6, 0, 3, 0.5)
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (
        2,
        1,
        1,
        2,
    )
    assert result.auc == 7.5 / 9
    assert result.accuracy == 4 / 6
    assert result.precision == 2 / 3
    assert result.recall == 2 / 3
    assert result.f1 == 4 / 6
    # ten bins: 0.9 alone in bin 9 (|0.9 - 1|), the two 0.8 in bin 8 (|1.6 - 1|), 0.4 in bin 4 (|0.4 - 1|),
    # 0.3 in bin 3 (|0.3 - 0|), 0.1 in bin 1 (|0.1 - 0|): (0.1 + 0.6 + 0.6 + 0.3 + 0.1) / 6
    assert result.calibration_error == pytest.approx(1.7 / 6, abs=1e-12)
    assert result.calibration_error == calibration_error(actual, probability)
    assert result.status == INSUFFICIENT_DATA
    assert result.reason == "Only 6 rows with both a label and a probability; at least 30 are needed."
    assert_plain_types(result)


def test_classification_status_depends_on_rows_only():
    actual = [True, False, True, True, False, False]
    probability = [0.9, 0.8, 0.8, 0.4, 0.3, 0.1]
    result = classification_quality(actual, probability, min_rows=6)
    assert (result.status, result.reason) == (OK, "")
    assert result.auc == 7.5 / 9  # same figures whatever the status

    rng = np.random.default_rng(3)
    labels = np.arange(MIN_ROWS) % 2 == 0
    scores = rng.random(MIN_ROWS)
    assert classification_quality(labels, scores).status == OK
    assert classification_quality(labels[:-1], scores[:-1]).status == INSUFFICIENT_DATA


def test_classification_accepts_numpy_bools_and_zero_one_numbers():
    probability = np.array([0.9, 0.8, 0.8, 0.4, 0.3, 0.1])
    as_list = classification_quality([True, False, True, True, False, False], probability)
    assert classification_quality(np.array([1, 0, 1, 1, 0, 0]), probability) == as_list
    assert classification_quality(np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0]), probability) == as_list
    assert classification_quality(np.array([True, False, True, True, False, False]), probability) == as_list


def test_probability_equal_to_threshold_is_predicted_positive():
    result = classification_quality([True, False], [0.7, 0.3], threshold=0.7)
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (
        1,
        0,
        0,
        1,
    )
    result = classification_quality([True, False], [0.7, 0.3], threshold=0.3)
    assert (result.true_positives, result.false_positives) == (1, 1)
    assert result.precision == 0.5


def test_one_class_has_no_auc_and_says_why():
    # all positive; 0.9 and 0.6 predicted positive: TP 2, FP 0, FN 1 -> precision 1, recall 2/3, F1 4/5
    result = classification_quality([True, True, True], [0.9, 0.2, 0.6], min_rows=1)
    assert result.auc is None
    assert (result.accuracy, result.precision, result.recall, result.f1) == (2 / 3, 1.0, 2 / 3, 0.8)
    assert result.status == OK
    assert result.reason == "AUC needs both classes; all 3 rows are positive."


def test_nothing_predicted_positive_leaves_precision_undefined_but_f1_zero():
    # TP 0, FP 0, FN 1, TN 2: precision 0/0 undefined; recall 0/1 = 0; F1 = 0 / (0 + 0 + 1) = 0, a real 0:
    # the model missed the only positive. AUC: the positive (0.2) beats 0.1 and loses to 0.3 -> 1/2.
    result = classification_quality([True, False, False], [0.2, 0.1, 0.3])
    assert result.precision is None
    assert (result.recall, result.f1, result.accuracy, result.auc) == (0.0, 0.0, 2 / 3, 0.5)
    assert result.reason == (
        "Only 3 rows with both a label and a probability; at least 30 are needed. "
        "Precision is undefined: no row is predicted positive at threshold 0.5."
    )


def test_all_true_negatives_leave_auc_precision_recall_and_f1_undefined():
    result = classification_quality([False, False], [0.1, 0.2], min_rows=2)
    assert (result.auc, result.precision, result.recall, result.f1) == (None, None, None, None)
    assert result.accuracy == 1.0
    # p 0.1 and 0.2 both in their own bins, no positives: (0.1 + 0.2) / 2
    assert result.calibration_error == pytest.approx(0.15, abs=1e-15)
    assert result.reason == (
        "AUC needs both classes; all 2 rows are negative. "
        "Precision is undefined: no row is predicted positive at threshold 0.5. "
        "Recall is undefined: no row is positive. "
        "F1 is undefined: every row is a true negative."
    )
    assert_plain_types(result)


def test_rows_without_label_or_probability_are_skipped_and_counted():
    # kept: rows 0, 3, 4 (labels T, T, F; p 0.7, 0.2, 0.4); row 1 has no label, row 2 no probability
    # TP 1 (0.7), FN 1 (0.2), TN 1 (0.4); AUC: 0.7 beats 0.4, 0.2 loses to it -> 1/2
    probability = np.array([0.7, 0.9, NAN, 0.2, 0.4])
    result = classification_quality([True, None, False, True, False], probability)
    assert (result.rows, result.skipped, result.positives) == (3, 2, 2)
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (
        1,
        0,
        1,
        1,
    )
    assert (result.auc, result.accuracy, result.precision, result.recall) == (0.5, 2 / 3, 1.0, 0.5)
    assert classification_quality(np.array([1.0, NAN, 0.0, 1.0, 0.0]), probability) == result


@pytest.mark.parametrize(
    ("actual", "probability", "reason"),
    [
        ([], [], "No rows with both a label and a probability."),
        ([None, True], [0.5, NAN], "No rows with both a label and a probability (2 skipped)."),
    ],
)
def test_no_rows_gives_no_figures(actual, probability, reason):
    result = classification_quality(actual, np.array(probability, dtype=float))
    assert result == ClassificationQuality(
        status=INSUFFICIENT_DATA,
        rows=0,
        skipped=len(actual),
        positives=0,
        threshold=0.5,
        true_positives=0,
        false_positives=0,
        false_negatives=0,
        true_negatives=0,
        auc=None,
        accuracy=None,
        precision=None,
        recall=None,
        f1=None,
        calibration_error=None,
        reason=reason,
    )
    assert_plain_types(result)


@pytest.mark.parametrize("decimals", [2, None])
def test_classification_matches_sklearn_on_1000_random_rows(decimals):
    rng = np.random.default_rng(7)
    probability = rng.random(1000)
    if decimals is not None:
        probability = np.round(probability, decimals)  # at most 101 distinct values: many ties
    actual = rng.random(1000) < probability
    result = classification_quality(actual, probability, threshold=0.4)
    predicted = probability >= 0.4
    assert result.auc == pytest.approx(metrics.roc_auc_score(actual, probability), abs=1e-12)
    assert result.accuracy == pytest.approx(metrics.accuracy_score(actual, predicted), abs=1e-15)
    assert result.precision == pytest.approx(metrics.precision_score(actual, predicted), abs=1e-15)
    assert result.recall == pytest.approx(metrics.recall_score(actual, predicted), abs=1e-15)
    assert result.f1 == pytest.approx(metrics.f1_score(actual, predicted), abs=1e-12)
    tn, fp, fn, tp = metrics.confusion_matrix(actual, predicted).ravel().tolist()
    assert (result.true_positives, result.false_positives, result.false_negatives, result.true_negatives) == (
        tp,
        fp,
        fn,
        tn,
    )
    assert (result.status, result.reason, result.rows, result.positives) == (OK, "", 1000, int(actual.sum()))
    assert_plain_types(result)


def test_results_are_frozen():
    result = classification_quality([True, False], [0.9, 0.1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.auc = 0.0  # type: ignore[misc]


# -- calibration_error -------------------------------------------------------------------------------------


def test_calibration_error_by_hand():
    actual = [False, False, True, False, True, True]
    probability = np.array([0.125, 0.25, 0.5, 0.5, 0.75, 1.0])
    # two bins, [0, 0.5) and [0.5, 1]: bin 0 holds 0.125, 0.25 (sum 0.375, no positive) -> |0.375 - 0| = 0.375;
    # bin 1 holds 0.5, 0.5, 0.75, 1.0 (sum 2.75, 3 positives) -> |2.75 - 3| = 0.25; ECE = 0.625 / 6
    assert calibration_error(actual, probability, bins=2) == 0.625 / 6
    # one bin: |mean p - share positive| = |3.125 - 3| / 6
    assert calibration_error(actual, probability, bins=1) == 0.125 / 6
    # a perfectly calibrated bin: four rows at 0.25, one positive
    assert calibration_error([True, False, False, False], np.full(4, 0.25)) == 0.0


def test_calibration_bin_edges():
    # 0.5 opens the upper of two bins: {0.5: T} -> 0.5 and {0.25: F} -> 0.25, so (0.5 + 0.25) / 2
    # (in one bin it would be |0.75 - 1| / 2 = 0.125)
    assert calibration_error([True, False], np.array([0.5, 0.25]), bins=2) == 0.375
    # 1.0 belongs to the last bin: {1.0: F, 0.75: T} -> |1.75 - 1| / 2
    # (in a bin of its own it would be (1 + 0.25) / 2)
    assert calibration_error([False, True], np.array([1.0, 0.75]), bins=2) == 0.375


def test_calibration_error_drops_missing_rows_and_is_none_without_rows():
    assert calibration_error([True, None, False], np.array([0.5, 0.3, NAN]), bins=2) == 0.5
    assert calibration_error([], np.array([])) is None
    assert calibration_error([None], np.array([0.4])) is None


@pytest.mark.parametrize("bins", [0, -1, 2.5, True])
def test_calibration_bins_must_be_a_positive_integer(bins):
    with pytest.raises(ValueError, match="bins must be a positive integer"):
        calibration_error([True], np.array([0.5]), bins=bins)


# -- multiclass_accuracy -----------------------------------------------------------------------------------


def test_multiclass_accuracy_by_hand():
    assert multiclass_accuracy(["cat", "dog", "bird", "cat"], ["cat", "cat", "bird", "dog"]) == 0.5
    assert multiclass_accuracy(np.array([0, 1, 2]), np.array([0, 1, 1])) == 2 / 3
    assert multiclass_accuracy(np.array([0, 1, 2]), np.array([0.0, 1.0, 2.0])) == 1.0
    # compared as Python values: 1 and "1" differ
    assert multiclass_accuracy([1, 2], ["1", 2]) == 0.5
    assert multiclass_accuracy(np.array([1, 2]), np.array(["1", "2"])) == 0.0
    assert type(multiclass_accuracy([1], [1])) is float


def test_multiclass_accuracy_without_rows_is_none():
    assert multiclass_accuracy([], []) is None


# -- regression_quality ------------------------------------------------------------------------------------


def test_regression_by_hand():
    # errors 1, -2, 2, 0: mean square 9 / 4 -> RMSE 1.5; mean absolute 5 / 4
    result = regression_quality(np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 0.0, 5.0, 4.0]))
    assert result == RegressionQuality(
        status=INSUFFICIENT_DATA,
        rows=4,
        skipped=0,
        rmse=1.5,
        mae=1.25,
        reason="Only 4 pairs with both an actual and a predicted value; at least 30 are needed.",
    )
    assert_plain_types(result)


def test_regression_skips_pairs_with_a_missing_side():
    # the same four pairs, and two with a NaN (or None) on one side
    result = regression_quality([1.0, NAN, 2.0, 3.0, 4.0, 7.0], [2.0, 5.0, 0.0, 5.0, 4.0, None], min_rows=4)
    assert (result.status, result.rows, result.skipped, result.rmse, result.mae, result.reason) == (
        OK,
        4,
        2,
        1.5,
        1.25,
        "",
    )


def test_regression_without_rows_has_no_figures():
    result = regression_quality([NAN, 1.0], [2.0, NAN])
    assert (result.status, result.rows, result.skipped, result.rmse, result.mae) == (
        INSUFFICIENT_DATA,
        0,
        2,
        None,
        None,
    )
    assert result.reason == "No pairs with both an actual and a predicted value (2 skipped)."
    assert regression_quality([], []).reason == "No pairs with both an actual and a predicted value."


def test_regression_matches_sklearn():
    rng = np.random.default_rng(11)
    actual, predicted = rng.normal(size=500), rng.normal(size=500)
    result = regression_quality(actual, predicted)
    assert result.rmse == pytest.approx(np.sqrt(metrics.mean_squared_error(actual, predicted)), abs=1e-12)
    assert result.mae == pytest.approx(metrics.mean_absolute_error(actual, predicted), abs=1e-12)


def test_regression_rejects_infinities():
    with pytest.raises(ValueError, match="predicted must be finite or NaN: 1 values are infinite"):
        regression_quality([1.0, 2.0], [INF, 2.0])


# -- cbpe_estimate -----------------------------------------------------------------------------------------


def test_cbpe_six_rows_by_hand():
    probability = np.array([1.0, 0.75, 0.5, 0.5, 0.25, 0.0])
    # threshold 0.5: the first four are predicted positive
    #   TP = 1 + 0.75 + 0.5 + 0.5 = 2.75    FP = 0 + 0.25 + 0.5 + 0.5 = 1.25
    #   FN = 0.25 + 0 = 0.25                TN = 0.75 + 1 = 1.75
    #   accuracy (2.75 + 1.75) / 6 = 0.75; precision 2.75 / 4; recall 2.75 / 3; F1 5.5 / (5.5 + 1.25 + 0.25)
    # ROC, sum p = 3, sum (1 - p) = 3; one step per distinct score, from (0, 0):
    #   score     p added  1-p added  cumulative (p, 1-p)
    #   1.0       1        0          (1, 0)
    #   0.75      0.75     0.25       (1.75, 0.25)
    #   0.5 x 2   1        1          (2.75, 1.25)
    #   0.25      0.25     0.75       (3, 2)
    #   0.0       0        1          (3, 3)
    #   unnormalised trapezoids, width (1-p added) x mean height (cumulative p before and after):
    #   0 + 0.25 * 1.375 + 1 * 2.25 + 0.75 * 2.875 + 1 * 3 = 0.34375 + 2.25 + 2.15625 + 3 = 7.75
    #   AUC = 7.75 / (3 * 3)
    result = cbpe_estimate(probability)
    assert result == EstimatedQuality(
        status=INSUFFICIENT_DATA,
        rows=6,
        skipped=0,
        threshold=0.5,
        expected_true_positives=2.75,
        expected_false_positives=1.25,
        expected_false_negatives=0.25,
        expected_true_negatives=1.75,
        auc=7.75 / 9,
        accuracy=0.75,
        precision=2.75 / 4,
        recall=2.75 / 3,
        f1=5.5 / 7,
        reason="Only 6 rows with a probability; at least 30 are needed.",
    )
    assert_plain_types(result)
    assert cbpe_estimate(probability, min_rows=6).status == OK


def test_cbpe_drops_nan_and_counts_it():
    # rows 0.75 and 0.25: TP 0.75, FP 0.25, FN 0.25, TN 0.75. Pairs p_i (1 - p_j): (0.75 over 0.25) 0.5625,
    # the reverse 0, each row against itself a tie, 2 * 0.5 * 0.75 * 0.25 = 0.1875; over 1 * 1 -> 0.75
    result = cbpe_estimate(np.array([NAN, 0.75, 0.25]), min_rows=2)
    assert (result.rows, result.skipped, result.status, result.reason) == (2, 1, OK, "")
    assert (result.expected_true_positives, result.expected_false_positives) == (0.75, 0.25)
    assert (result.expected_false_negatives, result.expected_true_negatives) == (0.25, 0.75)
    assert (result.auc, result.accuracy, result.precision, result.recall, result.f1) == (0.75, 0.75, 0.75, 0.75, 0.75)


def test_cbpe_undefined_figures_say_why():
    none_positive = cbpe_estimate(np.zeros(3))
    assert (none_positive.auc, none_positive.precision, none_positive.recall, none_positive.f1) == (None,) * 4
    assert none_positive.accuracy == 1.0
    assert none_positive.reason == (
        "Only 3 rows with a probability; at least 30 are needed. "
        "Expected AUC is undefined: every probability is 0, so no positive is expected. "
        "Expected precision is undefined: no row is predicted positive at threshold 0.5. "
        "Expected recall is undefined: every probability is 0, so no positive is expected. "
        "Expected F1 is undefined: no positive is expected and no row is predicted positive."
    )
    none_negative = cbpe_estimate(np.ones(2), min_rows=1)
    assert none_negative.auc is None
    assert (none_negative.accuracy, none_negative.precision, none_negative.recall, none_negative.f1) == (1.0,) * 4
    assert none_negative.reason == "Expected AUC is undefined: every probability is 1, so no negative is expected."
    # at threshold 0 the zeros are predicted positive: F1 = 0 / (0 + 3 + 0) is a real 0
    assert cbpe_estimate(np.zeros(3), threshold=0.0).f1 == 0.0


def test_cbpe_without_rows_has_no_figures():
    result = cbpe_estimate(np.array([NAN, NAN]))
    assert (result.rows, result.skipped, result.status) == (0, 2, INSUFFICIENT_DATA)
    assert (result.auc, result.accuracy, result.precision, result.recall, result.f1) == (None,) * 5
    assert result.expected_true_positives == 0.0
    assert result.reason == "No rows with a probability (2 skipped)."
    assert cbpe_estimate(np.array([])).reason == "No rows with a probability."
    assert_plain_types(result)


@pytest.mark.parametrize("decimals", [1, 2, None])
def test_cbpe_auc_equals_brute_force_over_all_pairs(decimals):
    # The trapezoid area is sum over ordered pairs (i, j), the diagonal included, of
    # p_i (1 - p_j) ([s_i > s_j] + [s_i == s_j] / 2), over sum(p) * sum(1 - p): the width of a step is the
    # 1 - p it adds and its mean height the p above it plus half the p it adds (module docstring).
    rng = np.random.default_rng(5)
    probability = rng.beta(2.0, 3.0, size=300)
    if decimals is not None:
        probability = np.round(probability, decimals)  # ties: equal scores make one diagonal step
    p = probability
    higher = p[:, None] > p[None, :]
    equal = p[:, None] == p[None, :]
    pairs = np.sum(p[:, None] * (1.0 - p)[None, :] * (higher + 0.5 * equal))
    brute = pairs / (p.sum() * (1.0 - p).sum())
    result = cbpe_estimate(probability)
    assert result.auc == pytest.approx(brute, abs=1e-12)
    # the same as a weighted ROC AUC: each row once as a positive of weight p, once as a negative of weight 1 - p
    weighted = metrics.roc_auc_score(
        np.concatenate([np.ones(300), np.zeros(300)]),
        np.concatenate([p, p]),
        sample_weight=np.concatenate([p, 1.0 - p]),
    )
    assert result.auc == pytest.approx(weighted, abs=1e-12)


def test_cbpe_matches_monte_carlo_over_sampled_labels():
    # labels drawn from the probabilities themselves: calibrated by construction. Expected accuracy is exactly
    # the mean accuracy over draws; the expected AUC is a ratio of expected pair counts, within O(1 / rows) of
    # the mean AUC (about 0.2 / 400 here), so the tolerance is loose.
    rng = np.random.default_rng(13)
    rows, draws = 400, 4000
    probability = rng.beta(2.0, 2.0, size=rows)
    labels = rng.random((draws, rows)) < probability
    ranks = stats.rankdata(probability)
    positives = labels.sum(axis=1)
    mann_whitney = labels.astype(np.float64) @ ranks - positives * (positives + 1) / 2
    aucs = mann_whitney / (positives * (rows - positives))
    accuracies = (labels == (probability >= 0.5)).mean(axis=1)
    result = cbpe_estimate(probability)
    assert result.auc == pytest.approx(aucs.mean(), abs=0.005)
    assert result.accuracy == pytest.approx(accuracies.mean(), abs=0.002)
    # and a labelled window of one draw is measured close to the estimate
    measured = classification_quality(labels[0], probability)
    assert measured.auc == pytest.approx(result.auc, abs=0.08)
    assert measured.calibration_error < 0.15


def test_cbpe_with_certain_probabilities_is_the_measured_quality():
    probability = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    estimated = cbpe_estimate(probability)
    measured = classification_quality(probability == 1.0, probability)
    assert (estimated.auc, estimated.accuracy, estimated.precision, estimated.recall, estimated.f1) == (
        measured.auc,
        measured.accuracy,
        measured.precision,
        measured.recall,
        measured.f1,
    )
    assert estimated.auc == 1.0


# -- validation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: classification_quality([True, False, True], np.array([0.1, 0.2])),
            "actual has 3 rows and probability",
        ),
        (lambda: calibration_error([True], np.array([0.1, 0.2])), "actual has 1 rows and probability has 2"),
        (lambda: regression_quality([1.0, 2.0], [1.0]), "actual has 2 rows and predicted has 1"),
        (lambda: multiclass_accuracy(["a"], ["a", "b"]), "actual_labels has 1 rows and predicted_labels has 2"),
    ],
)
def test_lengths_must_match(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("probability", [[1.5], [-0.1], [INF], [-INF]])
def test_probabilities_must_be_in_unit_interval(probability):
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\] or NaN: 1 values are not"):
        classification_quality([True], np.array(probability))
    with pytest.raises(ValueError, match=r"probability must be in \[0, 1\] or NaN"):
        cbpe_estimate(np.array(probability))


@pytest.mark.parametrize("actual", [[2], [-1], [0.5], np.array(["yes"]), np.array(["yes"], dtype=object)])
def test_labels_must_be_binary(actual):
    with pytest.raises(ValueError, match="actual must be"):
        classification_quality(actual, np.array([0.5]))


def test_inputs_must_be_one_dimensional():
    with pytest.raises(ValueError, match="probability must be one-dimensional"):
        cbpe_estimate(np.array([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="actual must be one-dimensional"):
        regression_quality(np.array([[1.0]]), np.array([1.0]))
    with pytest.raises(ValueError, match="actual_labels must be one-dimensional"):
        multiclass_accuracy(np.array([[1]]), np.array([1]))


@pytest.mark.parametrize("threshold", [-0.1, 1.5, NAN])
def test_threshold_must_be_in_unit_interval(threshold):
    with pytest.raises(ValueError, match="threshold must be in"):
        classification_quality([True], np.array([0.5]), threshold=threshold)
    with pytest.raises(ValueError, match="threshold must be in"):
        cbpe_estimate(np.array([0.5]), threshold=threshold)


def test_min_rows_must_be_positive():
    with pytest.raises(ValueError, match="min_rows must be at least 1"):
        classification_quality([True], np.array([0.5]), min_rows=0)
