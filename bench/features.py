"""The feature pipeline's cost next to the model's, for one row and for a million rows, on this machine.

What is measured, in one run, on the German Credit demo data (apps/data/demo/german_credit.csv, read with
pyarrow) and a demo feature set that uses standardise, log1p, bucketise (edges and quantiles), ratio,
one_hot, ordinal and passthrough:

- one row: `FittedPipeline.transform_rows([row])` on one dict row (the shape of a serving request), against
  `Booster.inplace_predict` on the transformed (1, k) float32 row; each 20,000 calls after a warm-up of
  2,000, timed call by call with perf_counter_ns; median and p99. The booster runs with nthread=1, as
  Faro's model loader sets it for serving.
- a million rows: the 1,000 demo rows tiled to 1,000,000 as one pyarrow.Table (contiguous, one chunk per
  column, like a table read for training or batch scoring), `transform_table` on it, best of 3 wall times,
  in rows/s; against `inplace_predict` on the resulting matrix with nthread = all cores, best of 3.

The model is a small XGBoost binary classifier (xgboost.train, 200 rounds, max_depth 6) trained on the
transformed demo matrix with label creditability == "good"; it only exists so that the predict numbers
are for a realistic model on exactly the pipeline's output. The goals are: one-row transform median
<= 50 % of one-row predict median, and >= 1,000,000 rows/s for transform_table on a million rows.

Run from the repository root: `.venv/bin/python bench/features.py`. Needs nothing but the virtualenv.
The last line of output is

    BENCH features: row_ratio=<one-row transform median / one-row predict median> bulk_rows_per_s=<rows/s>
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import xgboost as xgb

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apps.features.pipeline import FittedPipeline, definition_hash, validate_definition  # noqa: E402

DEMO_CSV = REPO / "apps" / "data" / "demo" / "german_credit.csv"
LABEL = "creditability"
ID = "applicant_id"
ROW_CALLS = 20_000
ROW_WARMUP = 2_000
BULK_ROWS = 1_000_000
BULK_REPEATS = 3
ROW_RATIO_GOAL = 0.5
BULK_GOAL = 1_000_000

DEFINITION = [
    {"name": "duration_std", "transform": "standardise", "source": "duration_in_month"},
    {"name": "duration_quartile", "transform": "bucketise", "source": "duration_in_month", "params": {"quantiles": 4}},
    {"name": "amount_log", "transform": "log1p", "source": "credit_amount"},
    {"name": "amount_std", "transform": "standardise", "source": "credit_amount"},
    {"name": "amount_per_month", "transform": "ratio", "sources": ["credit_amount", "duration_in_month"]},
    {"name": "age_std", "transform": "standardise", "source": "age_in_years"},
    {"name": "age_band", "transform": "bucketise", "source": "age_in_years", "params": {"edges": [25, 35, 50, 65]}},
    {
        "name": "installment_rate",
        "transform": "passthrough",
        "source": "installment_rate_in_percentage_of_disposable_income",
    },
    {"name": "residence_since", "transform": "passthrough", "source": "present_residence_since"},
    {"name": "existing_credits", "transform": "passthrough", "source": "number_of_existing_credits_at_this_bank"},
    {
        "name": "dependants",
        "transform": "passthrough",
        "source": "number_of_people_being_liable_to_provide_maintenance_for",
    },
    {"name": "checking", "transform": "one_hot", "source": "status_of_existing_checking_account"},
    {"name": "history", "transform": "one_hot", "source": "credit_history"},
    {"name": "purpose", "transform": "one_hot", "source": "purpose", "params": {"top_k": 6}},
    {"name": "savings", "transform": "one_hot", "source": "savings_account_and_bonds"},
    {"name": "employment", "transform": "ordinal", "source": "present_employment_since"},
    {"name": "status_sex", "transform": "one_hot", "source": "personal_status_and_sex"},
    {"name": "debtors", "transform": "one_hot", "source": "other_debtors_or_guarantors"},
    {"name": "property", "transform": "one_hot", "source": "property"},
    {"name": "installment_plans", "transform": "one_hot", "source": "other_installment_plans"},
    {"name": "housing", "transform": "one_hot", "source": "housing"},
    {"name": "job", "transform": "ordinal", "source": "job"},
    {"name": "telephone", "transform": "ordinal", "source": "telephone"},
    {"name": "foreign_worker", "transform": "ordinal", "source": "foreign_worker"},
]


def logical_type(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    return "string"


def percentile(sorted_values: list[int], fraction: float) -> float:
    index = min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1)))
    return float(sorted_values[index])


def per_call_ns(function, argument, calls: int, warmup: int) -> list[int]:
    for _ in range(warmup):
        function(argument)
    clock = time.perf_counter_ns
    timings = []
    append = timings.append
    for _ in range(calls):
        start = clock()
        function(argument)
        append(clock() - start)
    timings.sort()
    return timings


def best_of(function, argument, repeats: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(argument)
        best = min(best, time.perf_counter() - start)
    return best, result


def microseconds(ns: float) -> str:
    return f"{ns / 1000:9.1f} µs"


def main() -> None:
    table = pacsv.read_csv(DEMO_CSV)
    schema = {name: logical_type(table.schema.field(name).type) for name in table.column_names}
    problems = validate_definition(DEFINITION, schema)
    if problems:
        raise SystemExit(f"the demo feature set does not fit the demo data: {problems}")
    features = table.drop_columns([LABEL])
    started = time.perf_counter()
    pipeline = FittedPipeline.fit(DEFINITION, {name: features.column(name) for name in features.column_names}, schema)
    fit_seconds = time.perf_counter() - started
    matrix = pipeline.transform_table(features)
    label = np.array([value == "good" for value in table.column(LABEL).to_pylist()], dtype=np.float32)

    params = {
        "objective": "binary:logistic",
        "max_depth": 6,
        "eta": 0.1,
        "tree_method": "hist",
        "nthread": os.cpu_count() or 1,
        "seed": 7,
    }
    started = time.perf_counter()
    booster = xgb.train(params, xgb.DMatrix(matrix, label=label), num_boost_round=200)
    train_seconds = time.perf_counter() - started

    print(f"data: {DEMO_CSV.relative_to(REPO)}, {table.num_rows} rows, {len(schema)} columns")
    print(
        f"feature set: {len(DEFINITION)} features -> {len(pipeline.output_names)} model inputs, "
        f"definition_hash {definition_hash(DEFINITION)[:16]}…, fit {fit_seconds * 1000:.1f} ms"
    )
    print(f"model: xgboost {xgb.__version__}, 200 rounds, max_depth 6, trained in {train_seconds:.2f} s")
    versions = f"numpy {np.__version__}, pyarrow {pa.__version__}, python {sys.version.split()[0]}"
    print(f"machine: {os.cpu_count()} cores, {versions}")

    # -- (a) one row ------------------------------------------------------------------------------
    row = features.slice(0, 1).to_pylist()[0]
    transformed_row = pipeline.transform_rows([row])
    assert transformed_row.tobytes() == matrix[:1].tobytes(), "a request row must transform like the table"
    booster.set_param({"nthread": 1})
    transform_ns = per_call_ns(pipeline.transform_rows, [row], ROW_CALLS, ROW_WARMUP)
    predict_ns = per_call_ns(booster.inplace_predict, transformed_row, ROW_CALLS, ROW_WARMUP)
    transform_median = statistics.median(transform_ns)
    predict_median = statistics.median(predict_ns)
    row_ratio = transform_median / predict_median
    print()
    print(f"(a) one row, {ROW_CALLS:,} calls each after {ROW_WARMUP:,} warm-up calls")
    print(
        f"    transform_rows([row])          median {microseconds(transform_median)}   "
        f"p99 {microseconds(percentile(transform_ns, 0.99))}"
    )
    print(
        f"    Booster.inplace_predict(row)   median {microseconds(predict_median)}   "
        f"p99 {microseconds(percentile(predict_ns, 0.99))}   (nthread=1)"
    )
    verdict = "met" if row_ratio <= ROW_RATIO_GOAL else "MISSED"
    print(f"    transform / predict = {row_ratio:.3f}   goal <= {ROW_RATIO_GOAL:.2f}: {verdict}")

    # -- (b) a million rows -----------------------------------------------------------------------
    repeats = -(-BULK_ROWS // features.num_rows)
    indices = pa.array(np.tile(np.arange(features.num_rows), repeats)[:BULK_ROWS])
    big = features.take(indices).combine_chunks()
    del indices
    transform_seconds, big_matrix = best_of(pipeline.transform_table, big, BULK_REPEATS)
    assert big_matrix.shape == (BULK_ROWS, len(pipeline.output_names))
    assert np.array_equal(big_matrix[: features.num_rows], matrix, equal_nan=True)
    booster.set_param({"nthread": os.cpu_count() or 1})
    predict_seconds, _ = best_of(booster.inplace_predict, big_matrix, BULK_REPEATS)
    bulk_rows_per_s = BULK_ROWS / transform_seconds
    print()
    print(f"(b) {BULK_ROWS:,} rows ({big.nbytes / 1e6:.0f} MB pyarrow.Table), best of {BULK_REPEATS}")
    print(f"    transform_table                {transform_seconds:8.3f} s   {bulk_rows_per_s:14,.0f} rows/s")
    print(
        f"    Booster.inplace_predict        {predict_seconds:8.3f} s   {BULK_ROWS / predict_seconds:14,.0f} rows/s"
        f"   (nthread={os.cpu_count()})"
    )
    verdict = "met" if bulk_rows_per_s >= BULK_GOAL else "MISSED"
    print(f"    goal >= {BULK_GOAL:,} rows/s: {verdict}")
    print()
    print(f"BENCH features: row_ratio={row_ratio:.3f} bulk_rows_per_s={round(bulk_rows_per_s)}")


if __name__ == "__main__":
    main()
