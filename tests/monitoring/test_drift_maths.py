"""Drift maths: PSI, JS, KS, chi-square and Cramér's V against hand arithmetic and scipy, and the verdicts."""

import dataclasses
import math

import numpy as np
import pytest
from scipy import spatial, stats

from apps.monitoring.drift import (
    CATEGORICAL,
    NUMERIC,
    DriftThresholds,
    FeatureDrift,
    _number,
    categorical_drift,
    feature_drifts,
    js_distance,
    model_verdict,
    numeric_drift,
    prediction_drift,
    psi,
)

NAN = float("nan")
FLOAT_FIELDS = [
    "psi",
    "js_distance",
    "ks_statistic",
    "ks_p_value",
    "chi2_statistic",
    "chi2_p_value",
    "cramers_v",
    "missing_rate_reference",
    "missing_rate_current",
    "unseen_rate",
]


def assert_plain_floats(result: FeatureDrift) -> None:
    for name in FLOAT_FIELDS:
        value = getattr(result, name)
        assert value is None or type(value) is float, (name, type(value))
    assert type(result.n_reference) is int and type(result.n_current) is int


# -- psi and js_distance on counts -------------------------------------------------------------------------


def test_psi_by_hand():
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.35 - 0.3) * math.log(0.35 / 0.3) + (0.4 - 0.2) * math.log(2)
    assert psi(np.array([50, 30, 20]), np.array([25, 35, 40])) == pytest.approx(expected, rel=1e-12)
    # counts, not proportions: any scale gives the same value
    assert psi(np.array([5, 3, 2]), np.array([250, 350, 400])) == pytest.approx(expected, rel=1e-12)


def test_psi_clips_empty_bins_at_epsilon_without_renormalising():
    # expected (1, 0) -> (1, 1e-4); actual (0.5, 0.5)
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-4) * math.log(0.5 / 1e-4)
    assert psi(np.array([100, 0]), np.array([50, 50])) == pytest.approx(expected, rel=1e-12)
    expected = (0.5 - 1.0) * math.log(0.5 / 1.0) + (0.5 - 1e-6) * math.log(0.5 / 1e-6)
    assert psi(np.array([100, 0]), np.array([50, 50]), epsilon=1e-6) == pytest.approx(expected, rel=1e-12)


def test_psi_identical_is_zero_and_result_is_a_python_float():
    value = psi(np.array([3, 0, 7]), np.array([30, 0, 70]))
    assert value == 0.0
    assert type(value) is float


@pytest.mark.parametrize(
    ("expected", "actual"),
    [([1, 2], [1, 2, 3]), ([0, 0], [1, 1]), ([1, -1], [1, 1]), ([1, NAN], [1, 1]), ([[1, 2]], [[1, 2]])],
)
def test_counts_must_be_valid(expected, actual):
    with pytest.raises(ValueError):
        psi(np.array(expected), np.array(actual))
    with pytest.raises(ValueError):
        js_distance(np.array(expected), np.array(actual))


def test_js_distance_identical_disjoint_and_by_hand():
    assert js_distance(np.array([3, 1, 6]), np.array([30, 10, 60])) == 0.0
    assert js_distance(np.array([5, 0]), np.array([0, 7])) == 1.0
    assert js_distance(np.array([5, 0, 0]), np.array([0, 2, 9])) == 1.0
    # p = (0.5, 0.5), q = (1, 0), m = (0.75, 0.25)
    kl_p = 0.5 * math.log2(0.5 / 0.75) + 0.5 * math.log2(0.5 / 0.25)
    kl_q = 1.0 * math.log2(1.0 / 0.75)
    expected = math.sqrt(0.5 * kl_p + 0.5 * kl_q)
    assert js_distance(np.array([1, 1]), np.array([4, 0])) == pytest.approx(expected, rel=1e-12)
    assert type(js_distance(np.array([1, 1]), np.array([4, 0]))) is float


def test_js_distance_matches_scipy():
    rng = np.random.default_rng(1)
    for _ in range(20):
        p, q = rng.integers(0, 50, 12), rng.integers(0, 50, 12)
        p[0] = q[1] = 1
        want = spatial.distance.jensenshannon(p, q, base=2)
        assert js_distance(p, q) == pytest.approx(want, rel=1e-9, abs=1e-12)


# -- numeric -----------------------------------------------------------------------------------------------


def test_numeric_identical_samples_are_ok_with_zero_distances():
    reference = np.random.default_rng(2).normal(size=1000)
    result = numeric_drift("x", reference, reference.copy())
    assert result.status == "ok"
    assert result.kind == NUMERIC
    assert (result.psi, result.js_distance, result.ks_statistic, result.ks_p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (result.n_reference, result.n_current) == (1000, 1000)
    assert (result.chi2_statistic, result.chi2_p_value, result.cramers_v, result.unseen_rate) == (None,) * 4
    assert result.reason == "KS p-value 1 >= 0.01 on 1,000 reference and 1,000 current rows."
    assert_plain_floats(result)


def test_numeric_deciles_by_hand():
    # reference 1..100: decile edges 10.9, 20.8, ..., 90.1 (linear interpolation); ten values per bin
    reference = np.arange(1.0, 101.0)
    current = np.array([5.0] * 50 + [95.0] * 50)  # half in the first bin, half in the last
    result = numeric_drift("x", reference, current)
    expected = 2 * (0.5 - 0.1) * math.log(0.5 / 0.1) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert result.psi == pytest.approx(expected, rel=1e-12)
    assert result.js_distance == pytest.approx(js_distance(np.array([10] * 10), np.array([50] + [0] * 8 + [50])))
    scipy_ks = stats.ks_2samp(reference, current)
    assert result.ks_statistic == pytest.approx(0.45, rel=1e-12)
    assert result.ks_statistic == scipy_ks.statistic
    assert result.ks_p_value == scipy_ks.pvalue
    assert result.status == "drifted"


def test_numeric_value_on_an_edge_counts_in_the_bin_below():
    reference = np.arange(1.0, 101.0)
    on_edge = numeric_drift("x", reference, np.full(40, 10.9))
    in_first_bin = numeric_drift("x", reference, np.full(40, 1.0))
    assert on_edge.psi == in_first_bin.psi


def test_numeric_constant_reference_has_two_open_bins():
    # edges collapse to {5}: bins (-inf, 5] and (5, inf); expected (1, 0) -> (1, 1e-4), actual (0, 1) -> (1e-4, 1)
    result = numeric_drift("x", np.full(100, 5.0), np.full(100, 6.0))
    assert result.psi == pytest.approx(2 * (1 - 1e-4) * math.log(1e4), rel=1e-12)
    assert result.js_distance == 1.0
    assert result.ks_statistic == 1.0


def test_numeric_infinities_are_values_in_the_outer_bins():
    reference = np.concatenate([np.arange(100.0), [np.inf, -np.inf]])
    current = np.concatenate([np.arange(100.0), [np.inf] * 40])
    result = numeric_drift("x", reference, current)
    assert result.n_current == 140 and result.missing_rate_current == 0.0
    assert math.isfinite(result.psi) and result.psi > 0
    assert result.status == "drifted"


def test_numeric_shift_on_200_rows_is_drifted_by_the_ks_p_value():
    rng = np.random.default_rng(5)
    reference, current = rng.normal(size=200), rng.normal(size=200) + 0.5
    result = numeric_drift("x", reference, current)
    scipy_ks = stats.ks_2samp(reference, current)
    assert result.ks_statistic == pytest.approx(scipy_ks.statistic, rel=1e-12)
    assert result.ks_p_value == pytest.approx(scipy_ks.pvalue, rel=1e-12)
    assert result.ks_p_value < 0.01
    assert result.status == "drifted"
    assert result.reason == f"KS p-value {result.ks_p_value:.3g} < 0.01 on 200 reference and 200 current rows."


def test_numeric_no_shift_on_200_rows_is_ok():
    rng = np.random.default_rng(6)
    result = numeric_drift("x", rng.normal(size=200), rng.normal(size=200))
    assert result.ks_p_value >= 0.01
    assert result.status == "ok"


def test_numeric_tiny_shift_on_a_million_rows_is_significant_but_not_drift():
    rng = np.random.default_rng(11)
    reference, current = rng.normal(size=1_000_000), rng.normal(size=1_000_000) + 0.01
    result = numeric_drift("x", reference, current)
    assert result.ks_p_value < 1e-6  # a p-value test would call this drift
    assert result.ks_statistic < 0.1
    assert result.status == "ok"
    assert result.reason.startswith("PSI ") and "on 1,000,000 reference and 1,000,000 current rows" in result.reason

    # even when the distance rule is met (PSI >= 0), the effect floor alone keeps it "ok"
    forced = numeric_drift("x", reference, current, thresholds=DriftThresholds(psi=0.0))
    assert forced.status == "ok"
    assert "effect floor" in forced.reason and f"KS {result.ks_statistic:.3g} < 0.1" in forced.reason


def test_numeric_large_shift_on_a_million_rows_is_drifted():
    rng = np.random.default_rng(12)
    result = numeric_drift("x", rng.normal(size=1_000_000), rng.normal(size=1_000_000) + 0.5)
    assert result.psi >= 0.2 and result.ks_statistic >= 0.1
    assert result.status == "drifted"
    assert result.reason == (
        f"PSI {result.psi:.3g} >= 0.2 and KS {result.ks_statistic:.3g} >= 0.1 "
        "on 1,000,000 reference and 1,000,000 current rows."
    )
    assert_plain_floats(result)


def test_numeric_large_sample_distance_met_but_effect_below_floor_is_ok():
    # reference 0..9999 in deciles of 1,000; current moves 5000..5499 up by 1000: bin 5 -> 500, bin 6 -> 1500
    reference = np.arange(10_000.0)
    current = reference.copy()
    current[5000:5500] += 1000
    result = numeric_drift("x", reference, current, thresholds=DriftThresholds(psi=0.05))
    expected_psi = (0.05 - 0.1) * math.log(0.05 / 0.1) + (0.15 - 0.1) * math.log(0.15 / 0.1)
    assert result.psi == pytest.approx(expected_psi, rel=1e-12)
    assert result.ks_statistic == pytest.approx(0.05, rel=1e-12)
    assert result.ks_p_value < 1e-9
    assert result.status == "ok"
    assert result.reason.startswith("PSI 0.0549 >= 0.05 but KS 0.05 < 0.1 (the effect floor")


def test_numeric_ks_matches_scipy_on_mid_sized_samples_with_ties():
    # max(n) > 10,000 and en <= 10,000: our statistic and scipy's kstwo.sf, as ks_2samp does it
    rng = np.random.default_rng(13)
    for reference, current in [
        (rng.normal(size=12_000), rng.normal(size=15_000) + 0.03),
        (np.round(rng.normal(size=12_000) * 2), np.round((rng.normal(size=15_000) + 0.05) * 2)),
    ]:
        result = numeric_drift("x", reference, current)
        scipy_ks = stats.ks_2samp(reference, current)
        assert result.ks_statistic == pytest.approx(scipy_ks.statistic, rel=1e-12)
        assert result.ks_p_value == pytest.approx(scipy_ks.pvalue, rel=1e-9)


def test_numeric_ks_p_value_on_large_samples_is_the_kolmogorov_limit():
    rng = np.random.default_rng(14)
    reference, current = rng.normal(size=30_000), rng.normal(size=40_000) + 0.02
    result = numeric_drift("x", reference, current)
    scipy_ks = stats.ks_2samp(reference, current)
    assert result.ks_statistic == pytest.approx(scipy_ks.statistic, rel=1e-12)
    en = 30_000 * 40_000 / 70_000
    assert result.ks_p_value == pytest.approx(float(stats.kstwobign.sf(math.sqrt(en) * result.ks_statistic)))
    assert result.ks_p_value == pytest.approx(scipy_ks.pvalue, rel=0.02)


def test_numeric_missing_values_are_excluded_and_reported_as_rates():
    rng = np.random.default_rng(15)
    reference, current = rng.normal(size=1000), rng.normal(size=400)
    reference[:100] = NAN
    current[::4] = NAN
    result = numeric_drift("x", reference, current)
    assert (result.n_reference, result.n_current) == (900, 300)
    assert result.missing_rate_reference == 0.1
    assert result.missing_rate_current == 0.25
    scipy_ks = stats.ks_2samp(reference[100:], current[~np.isnan(current)])
    assert result.ks_p_value == pytest.approx(scipy_ks.pvalue, rel=1e-12)


def test_numeric_all_nan_current_is_insufficient_data_without_numbers():
    result = numeric_drift("x", np.random.default_rng(16).normal(size=500), np.full(250, NAN))
    assert result.status == "insufficient_data"
    assert result.n_current == 0
    assert result.missing_rate_current == 1.0
    assert (result.psi, result.js_distance, result.ks_statistic, result.ks_p_value) == (None,) * 4
    assert result.reason == (
        "Only 0 non-missing current rows (500 reference and 0 current rows); at least 30 are needed on each side."
    )


def test_numeric_few_rows_is_insufficient_data_but_statistics_are_computed():
    rng = np.random.default_rng(17)
    result = numeric_drift("x", rng.normal(size=500), rng.normal(size=10) + 3)
    assert result.status == "insufficient_data"
    assert result.ks_statistic is not None and result.psi is not None
    assert "Only 10 non-missing current rows" in result.reason and "at least 30" in result.reason
    small_reference = numeric_drift("x", rng.normal(size=12), rng.normal(size=100))
    assert small_reference.status == "insufficient_data"
    assert small_reference.reason.startswith("Only 12 non-missing reference rows")


def test_numeric_current_none_is_absent_with_no_numbers():
    reference = np.array([1.0, 2.0, NAN, 4.0])
    result = numeric_drift("x", reference, None)
    assert result.status == "absent"
    assert (result.n_reference, result.n_current) == (3, 0)
    assert result.missing_rate_reference == 0.25
    assert result.missing_rate_current is None
    for name in [*FLOAT_FIELDS[:7], "unseen_rate"]:
        assert getattr(result, name) is None
    assert result.reason == "Feature 'x' is absent from the current data."


def test_prediction_drift_is_numeric_drift_named_prediction():
    rng = np.random.default_rng(18)
    reference, current = rng.beta(2, 5, size=3000), rng.beta(2.5, 5, size=2000)
    result = prediction_drift(reference, current)
    assert result == numeric_drift("prediction", reference, current)
    assert result.feature == "prediction"


def test_numeric_rejects_bad_input():
    with pytest.raises(ValueError):
        numeric_drift("x", np.zeros((3, 3)), np.zeros(3))
    with pytest.raises(ValueError):
        numeric_drift("x", np.zeros(3), np.zeros(3), bins=0)


# -- categorical -------------------------------------------------------------------------------------------


def test_categorical_unseen_rate_exactly():
    reference = ["a", "b", "c"] * 20
    current = ["a"] * 10 + ["b"] * 7 + ["x", "y", "x"]
    result = categorical_drift("c", reference, current)
    assert result.unseen_rate == 0.15
    assert result.kind == CATEGORICAL
    assert result.status == "insufficient_data"  # 20 current rows < 30
    assert (result.ks_statistic, result.ks_p_value) == (None, None)
    assert_plain_floats(result)


def test_categorical_chi_square_and_cramers_v_match_scipy():
    rng = np.random.default_rng(20)
    reference = ["a"] * 30 + ["b"] * 50 + ["c"] * 20
    current = ["a"] * 40 + ["b"] * 30 + ["c"] * 25 + ["d"] * 5
    rng.shuffle(reference)
    rng.shuffle(current)
    result = categorical_drift("c", reference, current)
    table = np.array([[30, 50, 20, 0], [40, 30, 25, 5]])
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    assert result.chi2_statistic == pytest.approx(statistic, rel=1e-12)
    assert result.chi2_p_value == pytest.approx(p_value, rel=1e-12)
    assert result.cramers_v == pytest.approx(math.sqrt(statistic / (200 * 1)), rel=1e-12)
    assert result.psi == pytest.approx(psi(table[0], table[1]), rel=1e-12)
    assert result.js_distance == pytest.approx(js_distance(table[0], table[1]), rel=1e-12)
    assert result.unseen_rate == 0.05
    assert result.status == ("drifted" if p_value < 0.01 else "ok")
    assert_plain_floats(result)


def test_categorical_two_categories_have_no_yates_correction():
    reference = ["yes"] * 40 + ["no"] * 60
    current = ["yes"] * 60 + ["no"] * 40
    result = categorical_drift("c", reference, current)
    statistic, p_value, _, _ = stats.chi2_contingency(np.array([[40, 60], [60, 40]]), correction=False)
    assert result.chi2_statistic == pytest.approx(statistic, rel=1e-12)
    assert result.chi2_statistic == pytest.approx(8.0, rel=1e-12)  # expected 50 in each cell: 4 * 10^2 / 50
    assert result.chi2_p_value == pytest.approx(p_value, rel=1e-12)
    assert result.cramers_v == pytest.approx(math.sqrt(8.0 / 200), rel=1e-12)
    assert result.status == "drifted"
    assert result.reason.startswith("chi-square p-value ") and result.reason.endswith(
        " < 0.01 on 100 reference and 100 current rows."
    )


def test_categorical_single_category_has_p_value_one():
    result = categorical_drift("c", ["a"] * 50, ["a"] * 80)
    assert (result.chi2_statistic, result.chi2_p_value, result.cramers_v) == (0.0, 1.0, 0.0)
    assert (result.psi, result.js_distance, result.unseen_rate) == (0.0, 0.0, 0.0)
    assert result.status == "ok"


def test_categorical_missing_values_none_and_nan():
    reference = ["a", "b"] * 18 + [None] * 4  # 40 rows, 4 missing
    current = ["a", "b"] * 20 + [float("nan") for _ in range(5)] + [None] * 5  # 50 rows, 10 missing, distinct NaNs
    result = categorical_drift("c", reference, current)
    assert (result.n_reference, result.n_current) == (36, 40)
    assert result.missing_rate_reference == 0.1
    assert result.missing_rate_current == 0.2
    assert result.unseen_rate == 0.0
    assert result.psi == 0.0


def test_categorical_input_forms_agree():
    rng = np.random.default_rng(21)
    words = np.array([f"value-{index}" for index in range(300)])
    reference_codes, current_codes = rng.integers(0, 280, 20_000), rng.integers(10, 300, 30_000)
    as_strings = categorical_drift("c", words[reference_codes], words[current_codes])
    as_objects = categorical_drift("c", words[reference_codes].astype(object), words[current_codes].astype(object))
    as_lists = categorical_drift("c", words[reference_codes].tolist(), words[current_codes].tolist())
    as_bytes = categorical_drift("c", words[reference_codes].astype("S"), words[current_codes].astype("S"))
    as_codes = categorical_drift("c", reference_codes, current_codes)
    assert as_strings == as_objects == as_lists
    for other in (as_bytes, as_codes):
        assert other.status == as_strings.status
        for name in ["psi", "js_distance", "chi2_statistic", "chi2_p_value", "cramers_v", "unseen_rate"]:
            assert getattr(other, name) == pytest.approx(getattr(as_strings, name), rel=1e-12)
    assert as_strings.unseen_rate == pytest.approx(np.mean(current_codes >= 280), rel=1e-12)
    # float codes with NaN as missing
    float_codes = current_codes.astype(np.float64)
    float_codes[:3000] = NAN
    with_nan = categorical_drift("c", reference_codes.astype(np.float64), float_codes)
    assert with_nan.missing_rate_current == 0.1 and with_nan.n_current == 27_000


def test_categorical_string_arrays_count_exactly_unicode_and_empty_strings_included():
    reference = ["", "a", "a ", "ab", "é", "日本", "b"] * 10
    current = ["", "a", "a ", "ab", "é", "日本", "ü"] * 10
    as_strings = categorical_drift("c", np.array(reference), np.array(current))
    assert as_strings == categorical_drift("c", reference, current)
    assert as_strings.unseen_rate == pytest.approx(1 / 7, rel=1e-12)


def test_categorical_string_hash_collisions_fall_back_to_sorting(monkeypatch):
    import apps.monitoring.drift as drift

    monkeypatch.setattr(drift, "_hash_rows", lambda units: np.zeros(units.shape[0], dtype=np.uint64))
    reference, current = ["a", "b", "c"] * 20, ["a", "b", "d"] * 20
    assert categorical_drift("c", np.array(reference), np.array(current)) == categorical_drift("c", reference, current)
    assert categorical_drift("c", np.array(reference), np.array(current)).unseen_rate == pytest.approx(1 / 3)


def test_categorical_large_samples_small_reweighting_is_ok_large_is_drifted():
    rng = np.random.default_rng(22)
    categories = np.array(["a", "b", "c", "d"])
    reference = categories[rng.choice(4, 200_000, p=[0.4, 0.3, 0.2, 0.1])]
    slight = categories[rng.choice(4, 200_000, p=[0.41, 0.3, 0.19, 0.1])]
    result = categorical_drift("c", reference, slight)
    assert result.chi2_p_value < 1e-6
    assert result.status == "ok"
    strong = categories[rng.choice(4, 200_000, p=[0.1, 0.2, 0.3, 0.4])]
    result = categorical_drift("c", reference, strong)
    assert result.status == "drifted"
    assert result.reason == (
        f"PSI {result.psi:.3g} >= 0.2 and Cramér's V {result.cramers_v:.3g} >= 0.1 "
        "on 200,000 reference and 200,000 current rows."
    )


def test_categorical_current_none_is_absent():
    result = categorical_drift("c", ["a", None], None)
    assert result.status == "absent"
    assert result.missing_rate_reference == 0.5 and result.missing_rate_current is None
    assert (result.psi, result.chi2_statistic, result.unseen_rate, result.cramers_v) == (None,) * 4


# -- many features and the model verdict -------------------------------------------------------------------

TEMPLATE = FeatureDrift(
    feature="",
    kind=NUMERIC,
    status="ok",
    n_reference=100,
    n_current=100,
    psi=0.0,
    js_distance=0.0,
    ks_statistic=0.0,
    ks_p_value=1.0,
    chi2_statistic=None,
    chi2_p_value=None,
    cramers_v=None,
    missing_rate_reference=0.0,
    missing_rate_current=0.0,
    unseen_rate=None,
    reason="",
)


def features(**statuses: str) -> list[FeatureDrift]:
    return [dataclasses.replace(TEMPLATE, feature=name, status=status) for name, status in statuses.items()]


def test_model_verdict_weighted_share():
    result = model_verdict(features(a="ok", b="drifted", c="drifted"), {"a": 0.5, "b": 0.2, "c": 0.3})
    assert result == {
        "status": "drifted",
        "drift_share": 0.5,
        "drifted": ["c", "b"],
        "assessed": 3,
        "reason": "2 of 3 assessed features drifted, weighted share 0.5 >= 0.5.",
    }
    result = model_verdict(features(a="ok", b="drifted", c="ok"), {"a": 4, "b": 3.5, "c": 2.5})
    assert (result["status"], result["drift_share"], result["drifted"]) == ("ok", 0.35, ["b"])
    assert result["reason"] == (
        "1 of 3 assessed features drifted, weighted share 0.35 < 0.5 and the most important feature 'a' did not drift."
    )


def test_model_verdict_most_important_feature_drifted():
    result = model_verdict(features(a="drifted", b="ok", c="ok"), {"a": 0.4, "b": 0.3, "c": 0.3})
    assert result["status"] == "drifted"
    assert result["drift_share"] == 0.4
    assert result["reason"] == (
        "The most important feature 'a' drifted (1 of 3 assessed features drifted, weighted share 0.4 < 0.5)."
    )


def test_model_verdict_missing_names_weigh_zero_and_unassessed_features_do_not_count():
    listed = features(a="ok", b="drifted", c="insufficient_data", d="absent")
    result = model_verdict(listed, {"a": 1.0, "c": 100.0, "d": 100.0})
    assert (result["status"], result["drift_share"], result["drifted"], result["assessed"]) == ("ok", 0.0, ["b"], 2)


def test_model_verdict_all_zero_weights_means_equal_weights():
    result = model_verdict(features(a="ok", b="drifted", c="ok"), {"a": 0.0})
    assert (result["status"], result["drift_share"], result["drifted"]) == ("ok", 0.333333, ["b"])
    result = model_verdict(features(a="drifted", b="drifted", c="ok"), {})
    assert (result["status"], result["drift_share"], result["drifted"]) == ("drifted", 0.666667, ["a", "b"])


def test_model_verdict_nothing_assessed_is_insufficient_data():
    result = model_verdict(features(a="insufficient_data", b="absent", c="absent"), {"a": 1.0})
    assert result == {
        "status": "insufficient_data",
        "drift_share": 0.0,
        "drifted": [],
        "assessed": 0,
        "reason": "No feature could be assessed (2 absent, 1 insufficient data).",
    }
    assert model_verdict([], {})["status"] == "insufficient_data"


def test_model_verdict_rejects_negative_weights():
    with pytest.raises(ValueError):
        model_verdict(features(a="ok"), {"a": -1.0})


def test_feature_drifts_runs_every_feature_in_order_with_threads_or_without():
    rng = np.random.default_rng(30)
    reference = {"n": rng.normal(size=2000), "c": np.array(["x", "y"])[rng.integers(0, 2, 2000)], "gone": np.ones(5)}
    current = {"n": rng.normal(size=3000) + 1, "c": np.array(["x", "y", "z"])[rng.integers(0, 3, 3000)]}
    kinds = {"n": NUMERIC, "c": CATEGORICAL, "gone": NUMERIC}
    threaded = feature_drifts(reference, current, kinds, threads=2)
    assert threaded == feature_drifts(reference, current, kinds, threads=1)
    assert [(result.feature, result.status) for result in threaded] == [
        ("n", "drifted"),
        ("c", "drifted"),
        ("gone", "absent"),
    ]
    with pytest.raises(ValueError):
        feature_drifts(reference, current, {"n": "text"})
    with pytest.raises(ValueError):
        feature_drifts(reference, current, {"missing": NUMERIC})


def test_reason_numbers_never_read_as_on_the_wrong_side_of_a_threshold():
    assert _number(0.31, 0.2) == "0.31"
    assert _number(0.19996, 0.2) == "0.19996"
    assert _number(0.2, 0.2) == "0.2"
    assert _number(0.0099999, 0.01) == "0.0099999"
    assert _number(1e-300, 0.01) == "1e-300"
