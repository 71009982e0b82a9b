"""The evaluation of a trained model, on arrays small enough to work out by hand, and its page partial."""

import json
import math

import numpy as np
import pytest
from django.template.loader import render_to_string

from apps.core.charts import line_chart, measure_bar_chart
from apps.registry.charts import evaluation_charts
from apps.registry.evaluation import FAIRNESS_DEFAULTS, evaluate, measure_latency

# Eight rows: four negatives, then four positives. At 0.5 the model picks rows 2, 3, 4, 6 and 7:
# true positives 4, 6, 7; false positives 2, 3; false negative 5; true negatives 0, 1.
Y_BINARY = np.array([0, 0, 0, 0, 1, 1, 1, 1])
P_BINARY = np.array([0.12, 0.35, 0.55, 0.85, 0.65, 0.15, 0.95, 0.62])


def binary(**overrides):
    arguments = {
        "task_type": "classification",
        "labels": ["no", "yes"],
        "y_true": Y_BINARY,
        "predicted": P_BINARY,
        "contribs": None,
        "feature_names": [],
        "gain": None,
    }
    return evaluate(**{**arguments, **overrides})


def assert_plain_json(value):
    """Only python's own types all the way down (no numpy scalars), and no NaN or infinity."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        assert all(type(key) is str for key in value)
        for item in value.values():
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


# -- binary classification -------------------------------------------------------------------------


def test_binary_metrics_at_the_threshold():
    metrics = binary()["metrics"]
    # Positive above negative in 11 of the 16 pairs.
    assert metrics["auc"] == 0.6875
    assert metrics["accuracy"] == 5 / 8
    assert metrics["precision"] == 3 / 5
    assert metrics["recall"] == 3 / 4
    assert metrics["f1"] == pytest.approx(2 / 3, abs=1e-12)
    assert metrics["brier"] == pytest.approx(2.1538 / 8, abs=1e-12)
    chance_of_truth = [0.88, 0.65, 0.45, 0.15, 0.65, 0.15, 0.95, 0.62]
    assert metrics["log_loss"] == pytest.approx(-sum(math.log(p) for p in chance_of_truth) / 8, abs=1e-12)


def test_binary_confusion_matrix_rows_are_true_columns_predicted():
    assert binary()["confusion_matrix"] == {"labels": ["no", "yes"], "matrix": [[2, 2], [1, 3]]}


def test_a_higher_threshold_moves_the_decisions():
    result = binary(threshold=0.9)
    assert result["confusion_matrix"]["matrix"] == [[4, 0], [3, 1]]
    assert result["metrics"]["precision"] == 1.0
    assert result["metrics"]["recall"] == 0.25


def test_precision_is_undefined_when_nothing_is_picked():
    metrics = binary(threshold=1.0)["metrics"]
    assert metrics["precision"] is None
    assert metrics["recall"] == 0.0
    assert metrics["f1"] == 0.0


def test_roc_curve_runs_from_the_origin_to_the_top_right():
    roc = binary()["roc_curve"]
    assert roc == {"x": [0.0, 0.0, 0.25, 0.25, 0.75, 0.75, 1.0], "y": [0.0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0]}


def test_pr_curve_reads_left_to_right_in_recall():
    pr = binary()["pr_curve"]
    assert (pr["x"][0], pr["y"][0]) == (0.0, 1.0)
    assert (pr["x"][-1], pr["y"][-1]) == (1.0, 0.5)  # every row picked: precision is the share of positives
    assert pr["x"] == sorted(pr["x"])
    assert pr["y"][3] == 0.666667  # two of three picked at 0.65 and above, rounded to six decimals


def test_curves_are_thinned_to_101_points_keeping_both_ends():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 2000)
    p = np.clip(y * 0.3 + rng.random(2000) * 0.7, 0, 1)
    result = binary(y_true=y, predicted=p)
    for curve in (result["roc_curve"], result["pr_curve"]):
        assert len(curve["x"]) == len(curve["y"]) == 101
    assert (result["roc_curve"]["x"][0], result["roc_curve"]["y"][0]) == (0.0, 0.0)
    assert (result["roc_curve"]["x"][-1], result["roc_curve"]["y"][-1]) == (1.0, 1.0)
    assert result["pr_curve"]["x"][-1] == 1.0
    assert binary(y_true=y, predicted=p) == result  # the same points every time


def test_curves_and_auc_are_undefined_with_a_single_class():
    result = binary(y_true=np.zeros(8, dtype=int))
    assert result["metrics"]["auc"] is None
    assert result["roc_curve"] is None
    assert result["pr_curve"] is None
    assert_plain_json(result)


def test_calibration_keeps_only_bins_with_rows():
    assert binary()["calibration"]["bins"] == [
        {"lower": 0.1, "upper": 0.2, "mean_predicted": 0.135, "fraction_positive": 0.5, "count": 2},
        {"lower": 0.3, "upper": 0.4, "mean_predicted": 0.35, "fraction_positive": 0.0, "count": 1},
        {"lower": 0.5, "upper": 0.6, "mean_predicted": 0.55, "fraction_positive": 0.0, "count": 1},
        {"lower": 0.6, "upper": 0.7, "mean_predicted": 0.635, "fraction_positive": 1.0, "count": 2},
        {"lower": 0.8, "upper": 0.9, "mean_predicted": 0.85, "fraction_positive": 0.0, "count": 1},
        {"lower": 0.9, "upper": 1.0, "mean_predicted": 0.95, "fraction_positive": 1.0, "count": 1},
    ]


def test_a_probability_of_one_falls_in_the_last_bin():
    bins = binary(predicted=np.array([0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]))["calibration"]["bins"]
    assert [(item["lower"], item["count"]) for item in bins] == [(0.0, 4), (0.9, 4)]


# -- importance ------------------------------------------------------------------------------------


def test_importance_by_mean_absolute_contribution_without_the_bias():
    contribs = np.array([[0.5, -0.1, 0.2, 9.0], [-0.3, 0.1, -0.2, 9.0]] * 4)
    result = binary(contribs=contribs, feature_names=["income", "age", "city"], gain={"age": 12.5, "unknown": 3.0})
    assert result["importance"] == [
        {"feature": "income", "gain": 0.0, "mean_abs_shap": pytest.approx(0.4)},
        {"feature": "city", "gain": 0.0, "mean_abs_shap": pytest.approx(0.2)},
        {"feature": "age", "gain": 12.5, "mean_abs_shap": pytest.approx(0.1)},
    ]


def test_importance_ties_go_by_feature_name():
    contribs = np.tile([0.2, -0.2, 0.0, 1.0], (8, 1))
    result = binary(contribs=contribs, feature_names=["zeta", "alpha", "mid"], gain=None)
    assert [row["feature"] for row in result["importance"]] == ["alpha", "zeta", "mid"]


def test_importance_without_contributions_goes_by_gain():
    result = binary(feature_names=["income", "age", "city"], gain={"age": 4.0, "city": 9.0})
    assert result["importance"] == [
        {"feature": "city", "gain": 9.0, "mean_abs_shap": None},
        {"feature": "age", "gain": 4.0, "mean_abs_shap": None},
        {"feature": "income", "gain": 0.0, "mean_abs_shap": None},
    ]


# -- multiclass and regression ---------------------------------------------------------------------

Y_MULTI = np.array([0, 1, 2, 0, 1, 2])
P_MULTI = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.2, 0.2, 0.6],
        [0.3, 0.5, 0.2],  # a 0 taken for a 1
        [0.2, 0.3, 0.5],  # a 1 taken for a 2
        [0.1, 0.1, 0.8],
    ]
)


def test_multiclass_metrics_confusion_and_importance():
    contribs = np.zeros((6, 3, 3))
    contribs[:, :, 0] = 0.1  # "a" pulls every class a little: 0.3 in all
    contribs[:, 0, 1] = -0.5  # "b" pulls one class hard: 0.5
    contribs[:, :, 2] = 7.0  # the bias
    result = evaluate(
        task_type="classification",
        labels=["low", "mid", "high"],
        y_true=Y_MULTI,
        predicted=P_MULTI,
        contribs=contribs,
        feature_names=["a", "b"],
        gain={"a": 1.0},
        groups={"sex": ["f", "m"] * 3},
    )
    metrics = result["metrics"]
    assert set(metrics) == {"auc", "accuracy", "f1_macro", "log_loss"}
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # One-vs-rest AUC per class: 8/8, 7/8, 8/8. F1 per class: 2/3, 2/4, 4/5.
    assert metrics["auc"] == pytest.approx((1 + 7 / 8 + 1) / 3)
    assert metrics["f1_macro"] == pytest.approx((2 / 3 + 0.5 + 0.8) / 3)
    chance_of_truth = [0.7, 0.6, 0.6, 0.3, 0.3, 0.8]
    assert metrics["log_loss"] == pytest.approx(-sum(math.log(p) for p in chance_of_truth) / 6)
    assert result["confusion_matrix"] == {
        "labels": ["low", "mid", "high"],
        "matrix": [[1, 1, 0], [0, 1, 1], [0, 0, 2]],
    }
    assert [(row["feature"], row["mean_abs_shap"]) for row in result["importance"]] == [
        ("b", pytest.approx(0.5)),
        ("a", pytest.approx(0.3)),
    ]
    assert "roc_curve" not in result and "calibration" not in result
    assert result["fairness"] == {}  # measured for binary decisions only
    assert result["fairness_passed"] is True
    assert_plain_json(result)


def test_regression_metrics():
    result = evaluate(
        task_type="regression",
        labels=[],
        y_true=np.array([1.0, 2.0, 3.0, 4.0]),
        predicted=np.array([1.5, 2.0, 2.0, 5.0]),
        contribs=np.array([[0.5, -1.0, 2.5]] * 4),
        feature_names=["x1", "x2"],
        gain={"x1": 2.0, "x2": 3.0},
    )
    assert result["rows"] == 4
    assert result["metrics"] == {
        "rmse": pytest.approx(0.75),  # errors 0.5, 0, -1, 1
        "mae": pytest.approx(0.625),
        "r2": pytest.approx(1 - 2.25 / 5),
        "mape": pytest.approx((0.5 + 0 + 1 / 3 + 1 / 4) / 4),
    }
    assert [row["feature"] for row in result["importance"]] == ["x2", "x1"]
    assert "confusion_matrix" not in result and result["fairness"] == {}
    assert_plain_json(result)


def test_regression_leaves_out_mape_when_a_true_value_is_zero():
    result = evaluate(
        task_type="regression",
        labels=[],
        y_true=np.array([0.0, 2.0, 3.0, 4.0]),
        predicted=np.array([0.5, 2.0, 2.0, 5.0]),
        contribs=None,
        feature_names=[],
        gain=None,
    )
    assert set(result["metrics"]) == {"rmse", "mae", "r2"}


def test_r2_is_undefined_for_a_constant_target():
    result = evaluate(
        task_type="regression",
        labels=[],
        y_true=np.array([3.0, 3.0]),
        predicted=np.array([2.0, 4.0]),
        contribs=None,
        feature_names=[],
        gain=None,
    )
    assert result["metrics"]["r2"] is None
    assert_plain_json(result)


# -- fairness --------------------------------------------------------------------------------------

# Group A: 10 rows, 6 picked; 6 truly favourable, 4 of them picked.
# Group B: 10 rows, 3 picked; 4 truly favourable, 2 of them picked.
# Group C: 5 rows, all picked: too few to compare. Two rows have no value.
FAIR_P = np.array([0.9] * 6 + [0.1] * 4 + [0.9] * 3 + [0.1] * 7 + [0.8] * 5 + [0.9, 0.1])
FAIR_Y = np.array([1, 1, 1, 1, 0, 0, 1, 1, 0, 0] + [1, 1, 0, 1, 1, 0, 0, 0, 0, 0] + [1] * 5 + [1, 0])
FAIR_GROUPS = {"sex": ["A"] * 10 + ["B"] * 10 + ["C"] * 5 + [None, float("nan")]}


def fair(**overrides):
    return binary(**{"y_true": FAIR_Y, "predicted": FAIR_P, "groups": FAIR_GROUPS, **overrides})


def test_fairness_against_the_group_selected_most():
    result = fair()
    report = result["fairness"]["sex"]
    assert report["reference_group"] == "A"
    assert report["groups"] == [
        {"group": "A", "count": 10, "selection_rate": 0.6, "true_positive_rate": 0.666667, "included": True},
        {"group": "B", "count": 10, "selection_rate": 0.3, "true_positive_rate": 0.5, "included": True},
        {"group": "C", "count": 5, "selection_rate": 1.0, "true_positive_rate": 1.0, "included": False},
    ]
    assert report["min_group_size"] == 10
    assert report["disparate_impact_ratio"] == 0.5
    assert report["statistical_parity_difference"] == -0.3
    assert report["equal_opportunity_difference"] == -0.166667
    assert report["limits"] == FAIRNESS_DEFAULTS
    assert report["passed"] is False
    assert report["problems"] == [
        "Disparate impact ratio 0.5 is below 0.8: group 'B' is selected at 0.3, reference group 'A' at 0.6.",
        "Statistical parity difference -0.3 is beyond ±0.1: group 'B' is selected at 0.3, reference group 'A' at 0.6.",
        "Equal opportunity difference -0.166667 is beyond ±0.1: of the rows whose true outcome is favourable, "
        "group 'B' is selected at 0.5, reference group 'A' at 0.666667.",
    ]
    assert result["fairness_passed"] is False
    assert_plain_json(result)


def test_fairness_passes_within_wider_limits():
    limits = {"disparate_impact_min": 0.5, "statistical_parity_max": 0.3, "equal_opportunity_max": 0.2}
    result = fair(fairness_limits=limits)
    assert result["fairness"]["sex"]["passed"] is True
    assert result["fairness"]["sex"]["problems"] == []
    assert result["fairness_passed"] is True


def test_fairness_with_the_first_class_favourable():
    report = fair(favourable_index=0)["fairness"]["sex"]
    # Picked now means p < 0.5: A 4 of 10, B 7 of 10.
    assert report["reference_group"] == "B"
    assert [group["selection_rate"] for group in report["groups"]] == [0.4, 0.7, 0.0]
    assert report["disparate_impact_ratio"] == 0.571429
    assert report["statistical_parity_difference"] == -0.3
    # Truly favourable (class 0): A picks 2 of its 4 such rows, B 5 of its 6, C has none.
    assert [group["true_positive_rate"] for group in report["groups"]] == [0.5, 0.833333, None]
    assert report["equal_opportunity_difference"] == -0.333333


def test_small_groups_are_listed_but_not_compared():
    groups = {"region": ["north"] * 20 + ["south"] * 5 + ["east"] * 2}
    report = fair(groups=groups)["fairness"]["region"]
    assert [(group["group"], group["count"], group["included"]) for group in report["groups"]] == [
        ("east", 2, False),
        ("north", 20, True),
        ("south", 5, False),
    ]
    assert report["reference_group"] == "north"
    assert report["disparate_impact_ratio"] is None
    assert report["statistical_parity_difference"] is None
    assert report["equal_opportunity_difference"] is None
    assert report["passed"] is True
    assert "Fewer than two groups" in report["note"]


def test_reference_ties_go_to_the_larger_group_then_the_name():
    p = np.array([0.9] * 5 + [0.1] * 5 + [0.9] * 6 + [0.1] * 6 + [0.9] * 5 + [0.1] * 5)
    y = np.ones(32, dtype=int)
    groups = {"g": ["b"] * 10 + ["c"] * 12 + ["a"] * 10}
    assert binary(y_true=y, predicted=p, groups=groups)["fairness"]["g"]["reference_group"] == "c"
    p_equal = np.array([0.9] * 5 + [0.1] * 5 + [0.9] * 3 + [0.1] * 9 + [0.9] * 5 + [0.1] * 5)
    assert binary(y_true=y, predicted=p_equal, groups=groups)["fairness"]["g"]["reference_group"] == "a"


def test_no_groups_means_no_fairness_report():
    result = binary()
    assert result["fairness"] == {}
    assert result["fairness_passed"] is True


# -- input checks, output shape and latency --------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"predicted": P_BINARY[:7]}, "predicted has 7 rows but y_true has 8"),
        ({"contribs": np.zeros((7, 2)), "feature_names": ["x"]}, "contribs has 7 rows but y_true has 8"),
        ({"contribs": np.zeros((8, 3)), "feature_names": ["x"]}, r"contribs must have shape \(8, 2\)"),
        ({"groups": {"sex": ["f"] * 7}}, "The group values of 'sex' cover 7 rows but y_true has 8"),
        ({"predicted": np.zeros((8, 2))}, r"predicted must have shape \(8,\) for 2 classes"),
        ({"y_true": np.array([0, 1, 2, 0, 1, 0, 1, 0])}, "class indices from 0 to 1"),
        ({"fairness_limits": {"disparate_impact": 0.9}}, "Unknown fairness limits: disparate_impact"),
        ({"favourable_index": 2}, "favourable_index must be 0 or 1"),
        ({"task_type": "ranking"}, "task_type must be"),
        ({"y_true": np.array([]), "predicted": np.array([])}, "no rows"),
    ],
)
def test_inconsistent_input_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        binary(**overrides)


def test_the_whole_result_is_plain_json():
    contribs = np.tile([0.3, -0.2, 1.0], (27, 1))
    result = fair(contribs=contribs, feature_names=["income", "age"], gain={"income": np.float32(3.5)})
    assert set(result) == {
        "rows",
        "metrics",
        "confusion_matrix",
        "roc_curve",
        "pr_curve",
        "calibration",
        "importance",
        "fairness",
        "fairness_passed",
    }
    assert result["rows"] == 27
    assert_plain_json(result)


def test_measure_latency_warms_up_then_times_each_call():
    calls = []
    latency = measure_latency(lambda: calls.append(1), repeats=5)
    assert len(calls) == 15
    assert set(latency) == {"median_us", "p95_us"}
    assert 0 <= latency["median_us"] <= latency["p95_us"]
    assert_plain_json(latency)


# -- charts and the page partial -------------------------------------------------------------------


def test_line_chart_places_the_corners_of_the_ranges_on_the_plot_corners():
    chart = line_chart(
        [{"name": "Model", "x": [0, 1, 2], "y": [0, 1, -1]}],
        caption="c",
        summary="s",
        x_label="x",
        y_label="y",
    )
    left, top, right, bottom = (float(chart["plot"][side]) for side in ("left", "top", "right", "bottom"))
    # The third point lies outside both ranges and is drawn on the edge.
    assert chart["lines"][0]["points"] == (f"{left},{bottom} {right},{top} {right},{bottom}")
    assert [tick["label"] for tick in chart["x_ticks"]] == ["0", "0.25", "0.5", "0.75", "1"]
    assert line_chart([{"name": "Empty", "x": [], "y": []}], caption="", summary="", x_label="", y_label="") is None


def test_measure_bar_chart_scales_to_the_largest_value():
    chart = measure_bar_chart([("income", 2.0), ("age", 0.5)], caption="c", summary="Importance")
    assert [bar["width"] for bar in chart["bars"]] == [180, 45]
    assert [bar["count"] for bar in chart["bars"]] == ["2", "0.5"]
    assert chart["summary"] == "Importance: income (2), age (0.5)"


def test_the_partial_draws_every_section():
    contribs = np.tile([0.3, -0.2, 1.0], (27, 1))
    evaluation = fair(contribs=contribs, feature_names=["income", "age"], gain={"income": 3.5})
    charts = evaluation_charts(evaluation)
    html = render_to_string("registry/_evaluation.html", {"evaluation": evaluation, "charts": charts})

    assert html.count("<polyline") == 6  # ROC, precision-recall and calibration: the model and a reference
    for name in ("roc", "pr", "calibration"):
        assert f'points="{charts[name]["lines"][0]["points"]}"' in html
    assert html.count("<circle") == len(evaluation["calibration"]["bins"])
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    metrics = {row["name"]: row["value"] for row in charts["metrics"]}
    for value in metrics.values():
        assert f'<td class="num">{value}</td>' in html
    assert "✗ Failed" in html
    assert "Disparate impact ratio 0.5 is below 0.8" in html
    assert "no: too few rows" in html
    assert "<strong>(reference)</strong>" in html
    assert 'class="chart bars"' in html and ">income<" in html


def test_the_partial_for_a_regression_model_has_no_curves():
    evaluation = evaluate(
        task_type="regression",
        labels=[],
        y_true=np.array([1.0, 2.0, 3.0, 4.0]),
        predicted=np.array([1.5, 2.0, 2.0, 5.0]),
        contribs=None,
        feature_names=["x1"],
        gain={"x1": 2.0},
    )
    html = render_to_string(
        "registry/_evaluation.html", {"evaluation": evaluation, "charts": evaluation_charts(evaluation)}
    )
    assert "<polyline" not in html
    assert "Confusion matrix" not in html and "Fairness" not in html
    assert '<td class="num">0.75</td>' in html  # rmse
    assert '<td class="num">27.08%</td>' in html  # mape
