"""Drift between a reference sample and a current sample of one feature, and a verdict per model. No Django here.

Only numpy and scipy. Every statistic is computed with vectorised numpy over the whole column, so a report
over a million rows by thirty features takes a few seconds (see bench/drift.py).

Numeric features (`numeric_drift`)
    Missing means NaN; infinities are values (they land in the open outer bins). Bins come from the reference:
    the interior edges are the reference quantiles at 1/bins, 2/bins, ... (linear interpolation, deciles by
    default), non-finite edges dropped and duplicates removed, and the outer bins are open to -inf and +inf,
    so every value of either sample falls in a bin and a constant reference still gives two bins. A bin is
    (e_i, e_i+1]: a value equal to an edge counts in the bin below it. Both samples are sorted once; bin counts
    are then `np.searchsorted(sorted_sample, edges)` differences, O(bins log n).

    KS, by sample size:
      - max(n_ref, n_cur) <= 10,000: `scipy.stats.ks_2samp(method="auto")` itself (exact where scipy can);
      - larger: the statistic D exactly, from the two sorted samples (only the smaller one searched in the
        larger, integer arithmetic; `scipy.stats.ks_2samp` sorts and searches both, about 0.7 s at a million
        rows), and the p-value, with en = n_ref * n_cur / (n_ref + n_cur):
          - en <= 10,000: `scipy.stats.kstwo.sf(D, round(en))`, what `ks_2samp` computes for these sizes;
          - en > 10,000: the limiting Kolmogorov distribution, `scipy.special.kolmogorov(sqrt(en) * D)`.
            `kstwo.sf` costs about 0.2 s per call at en ~ 170,000, more than the rest of a million-row
            feature; the limit is a little above it (within 3 % for p >= 1e-8 at en > 10,000, 0.5 % at
            en ~ 170,000), and since min(n_ref, n_cur) >= en, such p-values never decide a verdict with the
            default `large_sample` (5,000): large samples are judged by distances and effect size (below).

Categorical features (`categorical_drift`)
    Missing means None or a float NaN. Categories are the union of both samples' values (compared as Python
    values: 1 and "1" are different categories); "unseen" are those in the current sample only. Counting is
    by `np.unique` for numeric and fixed-width string arrays (strings through a vectorised 64-bit hash, checked
    for collisions, so a million strings count in tens of milliseconds), and by a `collections.Counter` for
    object arrays and sequences. The chi-square test of homogeneity is `scipy.stats.chi2_contingency` on the
    2 x k table of counts without Yates' correction, also for k == 2, so the statistic is the plain Pearson
    chi-square that Cramér's V is defined on; with k == 1 the statistic is 0 and the p-value 1.0.
    Cramér's V = sqrt(chi2 / (n * (min(2, k) - 1))), n the table total (0.0 when k == 1).

PSI and JS
    `psi` turns counts into proportions, clips each proportion below at `epsilon` (1e-4) without renormalising,
    and sums (a - e) * ln(a / e) over the bins; clipping keeps an empty bin (or an unseen category) finite and
    bounded: a share s in a bin the other side never saw contributes about s * ln(s / 1e-4). `js_distance` is
    the square root of the base-2 Jensen-Shannon divergence of the two proportion vectors, in [0, 1]; no
    clipping is needed there (0 * log 0 = 0).

Verdict per feature (`DriftThresholds`)
    - the current data has no such column (`current is None`): "absent", every statistic None;
    - fewer than `min_rows` non-missing rows on either side: "insufficient_data" (statistics are still
      computed when both sides have at least one value; the reason gives the counts and the minimum);
    - min(n_ref, n_cur) < `large_sample`: "drifted" iff the test's p-value (KS or chi-square) < `p_value`;
    - otherwise: "drifted" iff (PSI >= `psi` or JS >= `js`) and the effect size reaches its floor (KS statistic
      >= `effect_floor_ks`, Cramér's V >= `effect_floor_cramers_v`). On a million rows any shift at all has a
      tiny p-value; the floor keeps shifts too small to matter from being called drift.

Many features and the model (`feature_drifts`, `model_verdict`)
    `feature_drifts` runs the above for every feature, two at a time in threads (numpy's sort, search and
    unique release the GIL). `model_verdict` weighs each assessed feature by its importance; see there.

All floats in the results are Python floats; nothing is rounded except `model_verdict`'s drift_share.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import special, stats

NUMERIC, CATEGORICAL = "numeric", "categorical"
OK, DRIFTED, INSUFFICIENT_DATA, ABSENT = "ok", "drifted", "insufficient_data", "absent"

# Sample sizes for the KS p-value (see the module docstring).
KS_SCIPY_MAX_N = 10_000
KS_KSTWO_MAX_EN = 10_000
PSI_EPSILON = 1e-4
# Features computed at once by feature_drifts: numpy releases the GIL in sort, search and unique.
DRIFT_THREADS = 2
_HASH_SEED = 0x5EED_D51F7


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2  # PSI at or above: drifted
    js: float = 0.1  # Jensen-Shannon distance (base 2, so in [0, 1]) at or above: drifted
    p_value: float = 0.01  # KS / chi-square p-value below: significant
    effect_floor_ks: float = 0.1  # KS statistic below this is never "drifted", however small the p-value
    effect_floor_cramers_v: float = 0.1  # Cramér's V below this is never "drifted" (large samples)
    large_sample: int = 5000  # min(n_ref, n_cur) at or above: distances with the effect floor decide
    min_rows: int = 30  # fewer non-missing rows on either side: "insufficient_data"


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str  # NUMERIC or CATEGORICAL
    status: str  # "ok" | "drifted" | "insufficient_data" | "absent"
    n_reference: int  # non-missing reference rows
    n_current: int  # non-missing current rows (0 when absent)
    psi: float | None
    js_distance: float | None
    ks_statistic: float | None  # numeric only
    ks_p_value: float | None  # numeric only
    chi2_statistic: float | None  # categorical only
    chi2_p_value: float | None  # categorical only
    cramers_v: float | None  # categorical only
    missing_rate_reference: float
    missing_rate_current: float | None
    unseen_rate: float | None  # categorical: share of current non-missing values unseen in the reference
    reason: str


# -- distances on counts -----------------------------------------------------------------------------------


def _proportions(counts: Any, name: str) -> np.ndarray:
    values = np.asarray(counts, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    total = values.sum()
    if total <= 0:
        raise ValueError(f"{name} must not be all zero")
    return values / total


def _pair(expected_counts: Any, actual_counts: Any) -> tuple[np.ndarray, np.ndarray]:
    expected = _proportions(expected_counts, "expected_counts")
    actual = _proportions(actual_counts, "actual_counts")
    if expected.shape != actual.shape:
        raise ValueError(f"count vectors differ in length: {expected.shape[0]} and {actual.shape[0]}")
    return expected, actual


def psi(expected_counts: np.ndarray, actual_counts: np.ndarray, *, epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of `actual` against `expected`, from counts per bin (same bins, same order).

    Proportions are clipped below at `epsilon` (not renormalised), then PSI = sum((a - e) * ln(a / e)).
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    expected, actual = _pair(expected_counts, actual_counts)
    expected = np.maximum(expected, epsilon)
    actual = np.maximum(actual, epsilon)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def js_distance(expected_counts: np.ndarray, actual_counts: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (the square root of the divergence), in [0, 1], from counts per bin."""
    expected, actual = _pair(expected_counts, actual_counts)
    middle = (expected + actual) / 2

    def half_kl(p: np.ndarray) -> float:
        used = p > 0  # 0 * log(0 / m) = 0; where p > 0, m >= p / 2 > 0
        return float(np.sum(p[used] * np.log2(p[used] / middle[used])))

    divergence = (half_kl(expected) + half_kl(actual)) / 2
    return float(math.sqrt(min(1.0, max(0.0, divergence))))


# -- numeric -----------------------------------------------------------------------------------------------


def _numeric_values(values: Any, name: str) -> tuple[np.ndarray, int]:
    """The sorted non-missing values and the total row count."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    missing = np.isnan(array)
    present = array[~missing] if missing.any() else array
    return np.sort(present), int(array.shape[0])


def _quantile_edges(sorted_reference: np.ndarray, bins: int) -> np.ndarray:
    """Interior bin edges: reference quantiles at 1/bins .. (bins-1)/bins, finite and distinct, ascending."""
    n = sorted_reference.shape[0]
    positions = np.arange(1, bins) / bins * (n - 1)
    low = np.floor(positions).astype(np.int64)
    high = np.minimum(low + 1, n - 1)
    fraction = positions - low
    with np.errstate(invalid="ignore"):  # inf - inf between infinite neighbours: dropped below
        edges = sorted_reference[low] + (sorted_reference[high] - sorted_reference[low]) * fraction
    return np.unique(edges[np.isfinite(edges)])


def _bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e1], (e1, e2], ..., (ek, inf) of an already sorted sample."""
    cumulative = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], cumulative, [sorted_values.shape[0]])))


def _ks_statistic(sorted_a: np.ndarray, sorted_b: np.ndarray) -> float:
    """Two-sample KS statistic sup |F_a - F_b| of two sorted samples, exactly.

    F_a - F_b only rises at points of a, so its maximum is at some a[i]; there F_a >= (i + 1) / n_a with
    equality at the last of equal values, so max over i of (i + 1) / n_a - F_b(a[i]) is exact. Likewise
    for F_b - F_a at points of b, where F_a(b[j]) = #{i: a[i] <= b[j]} = #{i: left_i <= j},
    left_i = searchsorted(b, a[i], "left"); a cumulative bincount. Only the smaller sample is searched.
    """
    if sorted_a.shape[0] > sorted_b.shape[0]:
        sorted_a, sorted_b = sorted_b, sorted_a
    n_a, n_b = sorted_a.shape[0], sorted_b.shape[0]
    right = np.searchsorted(sorted_b, sorted_a, side="right")
    a_above = np.max(np.arange(1, n_a + 1, dtype=np.int64) * n_b - right.astype(np.int64) * n_a)
    left = np.searchsorted(sorted_b, sorted_a, side="left")
    a_at_or_below = np.cumsum(np.bincount(left, minlength=n_b + 1)[:n_b])
    b_above = np.max(np.arange(1, n_b + 1, dtype=np.int64) * n_a - a_at_or_below.astype(np.int64) * n_b)
    return float(max(0, int(a_above), int(b_above)) / (n_a * n_b))


def _ks_test(sorted_reference: np.ndarray, sorted_current: np.ndarray) -> tuple[float, float]:
    n_ref, n_cur = sorted_reference.shape[0], sorted_current.shape[0]
    if max(n_ref, n_cur) <= KS_SCIPY_MAX_N:
        with warnings.catch_warnings():  # scipy says when the exact p-value gives way to the asymptotic one
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.ks_2samp(sorted_reference, sorted_current, method="auto")
        return float(result.statistic), float(result.pvalue)
    statistic = _ks_statistic(sorted_reference, sorted_current)
    en = n_ref * n_cur / (n_ref + n_cur)
    if en <= KS_KSTWO_MAX_EN:
        p_value = stats.kstwo.sf(statistic, round(en))
    else:
        p_value = special.kolmogorov(math.sqrt(en) * statistic)
    return statistic, float(min(1.0, max(0.0, p_value)))


def numeric_drift(
    feature: str,
    reference: np.ndarray,
    current: np.ndarray | None,
    *,
    bins: int = 10,
    thresholds: DriftThresholds = DriftThresholds(),  # frozen, so sharing the default is safe
) -> FeatureDrift:
    """Drift of one numeric feature; NaN is missing. See the module docstring for the bins, tests and verdict."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    sorted_reference, rows_reference = _numeric_values(reference, "reference")
    n_ref = int(sorted_reference.shape[0])
    missing_reference = _rate(rows_reference - n_ref, rows_reference)
    if current is None:
        return _absent(feature, NUMERIC, n_ref, missing_reference)
    sorted_current, rows_current = _numeric_values(current, "current")
    n_cur = int(sorted_current.shape[0])
    missing_current = _rate(rows_current - n_cur, rows_current)

    psi_value = js_value = ks_value = ks_p = None
    if n_ref and n_cur:
        edges = _quantile_edges(sorted_reference, bins)
        expected = _bin_counts(sorted_reference, edges)
        actual = _bin_counts(sorted_current, edges)
        psi_value = psi(expected, actual)
        js_value = js_distance(expected, actual)
        ks_value, ks_p = _ks_test(sorted_reference, sorted_current)

    status, reason = _verdict(
        thresholds, n_ref, n_cur, psi_value, js_value, ("KS", ks_value, thresholds.effect_floor_ks), ("KS", ks_p)
    )
    return FeatureDrift(
        feature=feature,
        kind=NUMERIC,
        status=status,
        n_reference=n_ref,
        n_current=n_cur,
        psi=psi_value,
        js_distance=js_value,
        ks_statistic=ks_value,
        ks_p_value=ks_p,
        chi2_statistic=None,
        chi2_p_value=None,
        cramers_v=None,
        missing_rate_reference=missing_reference,
        missing_rate_current=missing_current,
        unseen_rate=None,
        reason=reason,
    )


def prediction_drift(
    reference_scores: np.ndarray,
    current_scores: np.ndarray | None,
    *,
    bins: int = 10,
    thresholds: DriftThresholds = DriftThresholds(),
) -> FeatureDrift:
    """Drift of a model's output (probabilities or values): `numeric_drift` under the name "prediction"."""
    return numeric_drift("prediction", reference_scores, current_scores, bins=bins, thresholds=thresholds)


# -- categorical -------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _hash_rows(units: np.ndarray) -> np.ndarray:
    """A 64-bit hash per row of a (rows, width) array of string code units: multiply-add, wrapping uint64."""
    rows, width = units.shape
    multipliers = np.random.default_rng(_HASH_SEED).integers(1, 2**63, size=width, dtype=np.uint64) | np.uint64(1)
    hashes = np.full(rows, np.uint64(width), dtype=np.uint64)
    term = np.empty(rows, dtype=np.uint64)
    for column in range(width):  # in place: uint64 arithmetic wraps, which is what a hash wants
        hashes *= np.uint64(0x9E3779B97F4A7C15)
        np.multiply(units[:, column], multipliers[column], out=term, casting="unsafe")
        hashes += term
    return hashes


def _string_counts(array: np.ndarray) -> tuple[list[Any], np.ndarray] | None:
    """Distinct values and counts of a fixed-width string array through a 64-bit hash of its code units.

    Sorting a million strings is slow; sorting a million integers is not. Every row is hashed (multiply-add
    over its code units, wrapping uint64), the hashes are counted with np.unique, and the rows are compared
    with their hash's representative, so a collision is detected (None is returned and the caller sorts the
    strings instead) rather than ever merging two values.
    """
    rows = array.shape[0]
    width = array.dtype.itemsize // np.dtype(array.dtype.char + "1").itemsize
    if width == 0 or rows == 0:
        return None
    units = np.ascontiguousarray(array).view(np.uint32 if array.dtype.kind == "U" else np.uint8).reshape(rows, width)
    hashes = _hash_rows(units)
    distinct, counts = np.unique(hashes, return_counts=True)
    inverse = np.searchsorted(distinct, hashes)
    representatives = np.empty(distinct.shape[0], dtype=array.dtype)
    representatives[inverse] = array  # any row of each hash; then every row must equal its representative
    if not np.array_equal(representatives[inverse], array):
        return None
    return representatives.tolist(), counts


def _category_counts(values: Any, name: str) -> tuple[dict[Any, int], int, int]:
    """Counts per category of the non-missing values, the number of missing values and the row count."""
    if values is None:
        raise ValueError(f"{name} is required")
    array = values if isinstance(values, np.ndarray) else None
    if array is not None and array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional")
    if array is not None and array.dtype.kind in "biuf":
        rows = int(array.shape[0])
        if array.dtype.kind == "f":
            array = array[~np.isnan(array)]
        keys, counts = np.unique(array, return_counts=True)
        return dict(zip(keys.tolist(), counts.tolist(), strict=True)), rows - int(array.shape[0]), rows
    if array is not None and array.dtype.kind in "US":
        found = _string_counts(array)
        keys, counts = found if found is not None else np.unique(array, return_counts=True)
        if not isinstance(keys, list):
            keys = keys.tolist()
        return dict(zip(keys, np.asarray(counts).tolist(), strict=True)), 0, int(array.shape[0])
    items = array.tolist() if array is not None else list(values)
    counted = Counter(items)
    missing = 0
    result: dict[Any, int] = {}
    for key, count in counted.items():
        if _is_missing(key):
            missing += count  # every NaN object is its own key (NaN != NaN): summed here
        else:
            result[key] = count
    return result, missing, len(items)


def _chi_square(table: np.ndarray) -> tuple[float, float, float]:
    """Chi-square statistic, p-value and Cramér's V of a 2 x k table with no empty column."""
    k = table.shape[1]
    if k < 2:
        return 0.0, 1.0, 0.0
    statistic, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    total = float(table.sum())
    cramers_v = math.sqrt(float(statistic) / (total * (min(2, k) - 1)))
    return float(statistic), float(p_value), float(cramers_v)


def categorical_drift(
    feature: str,
    reference: Sequence | np.ndarray,
    current: Sequence | np.ndarray | None,
    *,
    thresholds: DriftThresholds = DriftThresholds(),
) -> FeatureDrift:
    """Drift of one categorical feature; None or NaN is missing. See the module docstring for the details."""
    reference_counts, reference_missing, rows_reference = _category_counts(reference, "reference")
    n_ref = sum(reference_counts.values())
    missing_reference = _rate(reference_missing, rows_reference)
    if current is None:
        return _absent(feature, CATEGORICAL, n_ref, missing_reference)
    current_counts, current_missing, rows_current = _category_counts(current, "current")
    n_cur = sum(current_counts.values())
    missing_current = _rate(current_missing, rows_current)

    psi_value = js_value = chi2_value = chi2_p = cramers_v = unseen_rate = None
    if n_cur:
        unseen = sum(count for key, count in current_counts.items() if key not in reference_counts)
        unseen_rate = unseen / n_cur
    if n_ref and n_cur:
        categories = list(reference_counts) + [key for key in current_counts if key not in reference_counts]
        # One order whatever the input's form (strings, objects, a list), so sums agree bit for bit; values
        # that do not order (say 1 and "a") stay in first seen order.
        with contextlib.suppress(TypeError):
            categories = sorted(categories)
        expected = np.array([reference_counts.get(key, 0) for key in categories], dtype=np.int64)
        actual = np.array([current_counts.get(key, 0) for key in categories], dtype=np.int64)
        psi_value = psi(expected, actual)
        js_value = js_distance(expected, actual)
        chi2_value, chi2_p, cramers_v = _chi_square(np.vstack([expected, actual]))

    status, reason = _verdict(
        thresholds,
        n_ref,
        n_cur,
        psi_value,
        js_value,
        ("Cramér's V", cramers_v, thresholds.effect_floor_cramers_v),
        ("chi-square", chi2_p),
    )
    return FeatureDrift(
        feature=feature,
        kind=CATEGORICAL,
        status=status,
        n_reference=n_ref,
        n_current=n_cur,
        psi=psi_value,
        js_distance=js_value,
        ks_statistic=None,
        ks_p_value=None,
        chi2_statistic=chi2_value,
        chi2_p_value=chi2_p,
        cramers_v=cramers_v,
        missing_rate_reference=missing_reference,
        missing_rate_current=missing_current,
        unseen_rate=unseen_rate,
        reason=reason,
    )


# -- many features ----------------------------------------------------------------------------------------


def feature_drifts(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    kinds: Mapping[str, str],
    *,
    bins: int = 10,
    thresholds: DriftThresholds = DriftThresholds(),
    threads: int = DRIFT_THREADS,
) -> list[FeatureDrift]:
    """`numeric_drift` or `categorical_drift` for every feature of `kinds` (name -> NUMERIC or CATEGORICAL), in order.

    A feature missing from `current` (or None there) is "absent"; every feature must be in `reference`. With
    `threads` > 1 features run in a thread pool: sorting, searching and counting in numpy release the GIL,
    so two threads use both cores of a small machine (memory: a few columns' working copies at a time).
    """
    for name, kind in kinds.items():
        if kind not in (NUMERIC, CATEGORICAL):
            raise ValueError(f"kind of {name!r} must be {NUMERIC!r} or {CATEGORICAL!r}, not {kind!r}")
        if name not in reference:
            raise ValueError(f"feature {name!r} is not in the reference data")

    def one(name: str) -> FeatureDrift:
        if kinds[name] == NUMERIC:
            return numeric_drift(name, reference[name], current.get(name), bins=bins, thresholds=thresholds)
        return categorical_drift(name, reference[name], current.get(name), thresholds=thresholds)

    names = list(kinds)
    if threads <= 1 or len(names) <= 1:
        return [one(name) for name in names]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(one, names))


# -- verdicts ----------------------------------------------------------------------------------------------


def _rate(part: int, whole: int) -> float:
    return float(part / whole) if whole else 0.0


def _number(value: float, threshold: float) -> str:
    """`value` short (3 significant digits), but never so short that it reads as on the other side of `threshold`."""
    for digits in (3, 6, 17):
        text = f"{value:.{digits}g}"
        shown = float(text)
        if (shown >= threshold) == (value >= threshold) and (shown != threshold or value == threshold):
            return text
    return repr(value)


def _rows(n_ref: int, n_cur: int) -> str:
    return f"{n_ref:,} reference and {n_cur:,} current rows"


def _absent(feature: str, kind: str, n_ref: int, missing_reference: float) -> FeatureDrift:
    return FeatureDrift(
        feature=feature,
        kind=kind,
        status=ABSENT,
        n_reference=n_ref,
        n_current=0,
        psi=None,
        js_distance=None,
        ks_statistic=None,
        ks_p_value=None,
        chi2_statistic=None,
        chi2_p_value=None,
        cramers_v=None,
        missing_rate_reference=missing_reference,
        missing_rate_current=None,
        unseen_rate=None,
        reason=f"Feature {feature!r} is absent from the current data.",
    )


def _verdict(
    thresholds: DriftThresholds,
    n_ref: int,
    n_cur: int,
    psi_value: float | None,
    js_value: float | None,
    effect: tuple[str, float | None, float],
    test: tuple[str, float | None],
) -> tuple[str, str]:
    """The status and the reason: the size rule, then the p-value (small) or distances and effect (large)."""
    rows = _rows(n_ref, n_cur)
    if min(n_ref, n_cur) < thresholds.min_rows:
        side = "reference" if n_ref < thresholds.min_rows and n_ref <= n_cur else "current"
        return INSUFFICIENT_DATA, (
            f"Only {min(n_ref, n_cur):,} non-missing {side} rows ({rows}); at least {thresholds.min_rows:,} "
            "are needed on each side."
        )
    test_name, p_value = test
    effect_name, effect_value, floor = effect
    assert psi_value is not None and js_value is not None and p_value is not None and effect_value is not None
    if min(n_ref, n_cur) < thresholds.large_sample:
        shown = _number(p_value, thresholds.p_value)
        if p_value < thresholds.p_value:
            return DRIFTED, f"{test_name} p-value {shown} < {thresholds.p_value:g} on {rows}."
        return OK, f"{test_name} p-value {shown} >= {thresholds.p_value:g} on {rows}."

    psi_text = f"PSI {_number(psi_value, thresholds.psi)}"
    js_text = f"JS {_number(js_value, thresholds.js)}"
    effect_text = f"{effect_name} {_number(effect_value, floor)}"
    if psi_value >= thresholds.psi:
        distance = f"{psi_text} >= {thresholds.psi:g}"
    elif js_value >= thresholds.js:
        distance = f"{js_text} >= {thresholds.js:g}"
    else:
        return OK, f"{psi_text} < {thresholds.psi:g} and {js_text} < {thresholds.js:g} on {rows}."
    if effect_value >= floor:
        return DRIFTED, f"{distance} and {effect_text} >= {floor:g} on {rows}."
    return OK, (
        f"{distance} but {effect_text} < {floor:g} (the effect floor for large samples; the {test_name} "
        f"p-value {p_value:.3g} does not decide) on {rows}."
    )


def model_verdict(features: list[FeatureDrift], importances: dict[str, float]) -> dict:
    """One verdict for a model from its features' drift, weighted by importance.

    Only features with status "ok" or "drifted" are assessed. A feature weighs its importance (0 when not
    named; negative or non-finite importances are an error); if every assessed feature weighs 0, all weigh 1.
    drift_share is the drifted features' share of the assessed weight (rounded to 6 places). The model has
    drifted iff drift_share >= 0.5 or the single most important assessed feature drifted; "single" means
    its weight is strictly above every other assessed feature's, so with equal weights only the share counts.
    """
    for name, weight in importances.items():
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"importance of {name!r} must be finite and non-negative, not {weight!r}")
    assessed = [feature for feature in features if feature.status in (OK, DRIFTED)]
    if not assessed:
        by_status = Counter(feature.status for feature in features)
        detail = ", ".join(f"{count} {status.replace('_', ' ')}" for status, count in sorted(by_status.items()))
        return {
            "status": INSUFFICIENT_DATA,
            "drift_share": 0.0,
            "drifted": [],
            "assessed": 0,
            "reason": f"No feature could be assessed ({detail or 'no features'}).",
        }
    weights = {feature.feature: float(importances.get(feature.feature, 0.0)) for feature in assessed}
    if not any(weights.values()):
        weights = dict.fromkeys(weights, 1.0)
    total = sum(weights.values())
    drifted = sorted(
        {feature.feature for feature in assessed if feature.status == DRIFTED}, key=lambda name: (-weights[name], name)
    )
    share = round(min(1.0, sum(weights[name] for name in drifted) / total), 6)

    ranked = sorted(weights.items(), key=lambda item: -item[1])
    top_name = ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else None
    top_drifted = top_name is not None and top_name in drifted
    counted = f"{len(drifted)} of {len(weights)} assessed features drifted, weighted share {share:g}"
    if share >= 0.5:
        status, reason = DRIFTED, f"{counted} >= 0.5."
    elif top_drifted:
        status, reason = DRIFTED, f"The most important feature {top_name!r} drifted ({counted} < 0.5)."
    else:
        status, reason = OK, f"{counted} < 0.5"
        reason += f" and the most important feature {top_name!r} did not drift." if top_name else "."
    return {
        "status": status,
        "drift_share": float(share),
        "drifted": drifted,
        "assessed": len(weights),
        "reason": reason,
    }
