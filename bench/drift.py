"""A drift report over a million rows by thirty features, next to a bare numpy pass over the same arrays.

What is measured, in one run, on generated data (numpy's default_rng, seed 20240611, so every run sees the
same numbers): a reference of 200,000 rows and a current window of 1,000,000 rows, 30 features:

- 20 numeric float64 columns (normal, log-normal, uniform, Poisson counts with many ties, a bimodal mix),
  each with 0-5 % NaN; in the current window three are shifted by half a standard deviation or more, one
  is scaled by 1.5, and one is moved by only 0.01 of a standard deviation (a shift a million rows makes
  "significant" but that is too small to matter, so it must not count as drift);
- 10 categorical columns of 8 to 50 categories: eight fixed-width numpy string arrays (small-int codes
  mapped to strings, the cheap form) and two object arrays with ~2 % None (the form pyarrow's to_numpy
  gives for a string column); in the current window three have their category shares moved and two see
  categories the reference never had.

Timed, best of 3 wall times with time.perf_counter:

- Faro: the full report, `apps.monitoring.drift.feature_drifts` (numeric_drift or categorical_drift for all
  30 features, PSI, JS, KS or chi-square and Cramér's V, missing and unseen rates, a verdict each; its
  default two threads) and `model_verdict` with importance weights. For information, also with one thread.
- Baseline: the least a drift pass must do, in bare numpy: per numeric column np.histogram of the reference
  and of the current values (NaN removed) on 10 shared equal-width bins over the reference's range (numpy's
  fast path for uniform bins); per categorical column np.unique(..., return_counts=True) of both (None
  removed from the object columns first, as np.unique cannot order None and str). No statistics, no
  verdict. np.unique sorts: on the object columns that is most of the baseline's time.

The goal is seconds <= 10 for the Faro report. Run from the repository root: `.venv/bin/python bench/drift.py`.
Needs nothing but the virtualenv. The last line of output is

    BENCH drift: seconds=<Faro best> baseline_seconds=<baseline best> ratio=<Faro/baseline> drifted=<n>
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apps.monitoring.drift import (  # noqa: E402
    CATEGORICAL,
    DRIFTED,
    NUMERIC,
    feature_drifts,
    model_verdict,
)

SEED = 20240611
REFERENCE_ROWS = 200_000
CURRENT_ROWS = 1_000_000
REPEATS = 3
GOAL_SECONDS = 10.0
BASELINE_BINS = 10

# name, distribution, missing rate, change in the current window
NUMERIC_SPECS = [
    ("income", "lognormal", 0.02, "shift 0.5 sd"),
    ("age", "normal", 0.00, "none"),
    ("balance", "normal", 0.05, "shift 1.0 sd"),
    ("tenure_months", "poisson", 0.01, "none"),
    ("utilisation", "uniform", 0.03, "scale 1.5"),
    ("num_accounts", "poisson", 0.00, "shift 0.6 sd"),
    ("score_a", "normal", 0.01, "shift 0.01 sd"),
    ("score_b", "normal", 0.02, "none"),
    ("score_c", "bimodal", 0.00, "none"),
    ("spend_7d", "lognormal", 0.04, "none"),
    ("spend_30d", "lognormal", 0.04, "none"),
    ("visits_7d", "poisson", 0.00, "none"),
    ("visits_30d", "poisson", 0.00, "none"),
    ("latency_ms", "lognormal", 0.01, "none"),
    ("ratio_x", "uniform", 0.02, "none"),
    ("ratio_y", "uniform", 0.00, "none"),
    ("delta_1", "normal", 0.03, "none"),
    ("delta_2", "normal", 0.00, "none"),
    ("mix_1", "bimodal", 0.01, "none"),
    ("mix_2", "bimodal", 0.05, "none"),
]

# name, categories, storage ("str" fixed-width numpy strings, "object" with None), change in the current window
CATEGORICAL_SPECS = [
    ("country", 30, "str", "none"),
    ("device", 8, "str", "reweight"),
    ("channel", 12, "str", "none"),
    ("product", 50, "str", "unseen"),
    ("segment", 10, "str", "none"),
    ("plan", 8, "str", "reweight"),
    ("region", 20, "str", "none"),
    ("browser", 15, "str", "none"),
    ("merchant_type", 40, "object", "unseen"),
    ("payment_method", 9, "object", "reweight"),
]


def numeric_column(rng: np.random.Generator, distribution: str, rows: int, change: str, missing: float):
    if distribution == "normal":
        values = rng.normal(50.0, 10.0, rows)
        sd = 10.0
    elif distribution == "lognormal":
        values = rng.lognormal(8.0, 0.7, rows)
        sd = float(np.sqrt((np.exp(0.49) - 1) * np.exp(16.49)))
    elif distribution == "uniform":
        values = rng.uniform(0.0, 1.0, rows)
        sd = float(np.sqrt(1 / 12))
    elif distribution == "poisson":
        values = rng.poisson(4.0, rows).astype(np.float64)
        sd = 2.0
    else:  # bimodal
        values = np.where(rng.random(rows) < 0.3, rng.normal(-2.0, 0.5, rows), rng.normal(1.0, 0.8, rows))
        sd = 1.5
    if change.startswith("shift"):
        values = values + float(change.split()[1]) * sd
    elif change.startswith("scale"):
        mean = values.mean()
        values = mean + (values - mean) * float(change.split()[1])
    if missing:
        values[rng.random(rows) < missing] = np.nan
    return values


def categorical_column(rng: np.random.Generator, name: str, base: np.ndarray, storage: str, rows: int, change: str):
    k = base.shape[0]
    names = np.array([f"{name}_{index:02d}" for index in range(k + 5)])
    shares = base
    if change == "reweight":
        shares = np.roll(np.sort(base)[::-1], k // 2)  # the commonest categories become rare, rare ones common
    if change == "unseen":
        shares = np.concatenate([shares * 0.85, np.full(5, 0.03)])  # 15 % of rows in 5 new categories
    else:
        shares = np.concatenate([shares, np.zeros(5)])
    values = names[rng.choice(k + 5, size=rows, p=shares / shares.sum())]
    if storage == "object":
        values = values.astype(object)
        values[rng.random(rows) < 0.02] = None
    return values


def generate() -> tuple[dict, dict, dict, dict]:
    rng = np.random.default_rng(SEED)
    reference, current, kinds = {}, {}, {}
    for name, distribution, missing, change in NUMERIC_SPECS:
        kinds[name] = NUMERIC
        reference[name] = numeric_column(rng, distribution, REFERENCE_ROWS, "none", missing)
        current[name] = numeric_column(rng, distribution, CURRENT_ROWS, change, missing)
    for name, k, storage, change in CATEGORICAL_SPECS:
        kinds[name] = CATEGORICAL
        base = np.sort(rng.dirichlet(np.full(k, 2.0)))
        reference[name] = categorical_column(rng, name, base, storage, REFERENCE_ROWS, "none")
        current[name] = categorical_column(rng, name, base, storage, CURRENT_ROWS, change)
    weights = rng.dirichlet(np.ones(len(kinds)))
    importances = {name: float(weight) for name, weight in zip(kinds, weights, strict=True)}
    return reference, current, kinds, importances


def faro_report(reference, current, kinds, importances, threads=None):
    options = {} if threads is None else {"threads": threads}
    features = feature_drifts(reference, current, kinds, **options)
    return features, model_verdict(features, importances)


def baseline(reference, current, kinds) -> int:
    touched = 0
    for name, kind in kinds.items():
        ref, cur = reference[name], current[name]
        if kind == NUMERIC:
            ref = ref[~np.isnan(ref)]
            cur = cur[~np.isnan(cur)]
            shared = {"bins": BASELINE_BINS, "range": (float(ref.min()), float(ref.max()))}  # numpy's fast path
            touched += int(np.histogram(ref, **shared)[0].sum() + np.histogram(cur, **shared)[0].sum())
        else:
            if ref.dtype == object:
                ref = ref[np.not_equal(ref, None)]
                cur = cur[np.not_equal(cur, None)]
            touched += int(np.unique(ref, return_counts=True)[1].sum() + np.unique(cur, return_counts=True)[1].sum())
    return touched


def best_of(function, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    started = time.perf_counter()
    reference, current, kinds, importances = generate()
    print(
        f"data: reference {REFERENCE_ROWS:,} rows, current {CURRENT_ROWS:,} rows, {len(NUMERIC_SPECS)} numeric and "
        f"{len(CATEGORICAL_SPECS)} categorical features, seed {SEED}, generated in "
        f"{time.perf_counter() - started:.1f} s"
    )
    print(
        f"machine: {os.cpu_count()} cores, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"python {sys.version.split()[0]}"
    )

    faro_seconds, (features, verdict) = best_of(lambda: faro_report(reference, current, kinds, importances), REPEATS)
    one_thread_seconds, _ = best_of(lambda: faro_report(reference, current, kinds, importances, 1), REPEATS)
    baseline_seconds, _ = best_of(lambda: baseline(reference, current, kinds), REPEATS)
    ratio = faro_seconds / baseline_seconds
    drifted = [feature for feature in features if feature.status == DRIFTED]

    print()
    print(f"{'feature':<16} {'kind':<11} {'status':<8} {'PSI':>9} {'JS':>7} {'KS / V':>7} {'p-value':>9}  reason")
    for feature in features:
        effect = feature.ks_statistic if feature.kind == NUMERIC else feature.cramers_v
        p_value = feature.ks_p_value if feature.kind == NUMERIC else feature.chi2_p_value
        print(
            f"{feature.feature:<16} {feature.kind:<11} {feature.status:<8} {feature.psi:9.4f} "
            f"{feature.js_distance:7.4f} {effect:7.4f} {p_value:9.2g}  {feature.reason}"
        )
    print()
    print(f"model verdict: {verdict['status']}, drift_share {verdict['drift_share']}; {verdict['reason']}")
    print()
    print(f"best of {REPEATS}:")
    print(f"    Faro report (feature_drifts + model_verdict)   {faro_seconds:8.3f} s")
    print(f"    Faro report, one thread                        {one_thread_seconds:8.3f} s   (for information)")
    print(f"    baseline (np.histogram / np.unique only)       {baseline_seconds:8.3f} s")
    print(f"    ratio Faro / baseline                          {ratio:8.2f}")
    print(f"    drifted features: {len(drifted)} ({', '.join(feature.feature for feature in drifted)})")
    verdict_text = "met" if faro_seconds <= GOAL_SECONDS else "MISSED"
    print(f"    goal seconds <= {GOAL_SECONDS:g}: {verdict_text}")
    print()
    print(
        f"BENCH drift: seconds={faro_seconds:.3f} baseline_seconds={baseline_seconds:.3f} ratio={ratio:.3f} "
        f"drifted={len(drifted)}"
    )


if __name__ == "__main__":
    main()
