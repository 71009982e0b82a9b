"""Training an XGBoost model from columns: split, fit features, boost with early stopping, evaluate.

No Django here: the worker's service feeds it columns and stores what it returns. The booster comes
back as UBJ bytes (never pickle). Same inputs and seed give the same bytes, with or without a
hyperparameter search.

Columns arrive as a `pyarrow.Table` or as a mapping of column name -> values (lists, numpy or arrow
arrays). Either way they are read as arrow arrays and every step is vectorised: a million rows never go
through a per-value Python loop. A list column that arrow cannot type (mixed text and numbers, say) is
kept as a numpy object array and takes the slower per-value path of the feature pipeline.

The automatic pipeline (no feature set) is fitted here with numpy and arrow, to exactly the state and
matrix `FeaturePipeline.fit` and `transform_columns` give on the same rows as Python lists; the tests
hold the two paths to that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from apps.features.pipeline import (
    DefinitionError,
    FittedPipeline,
    rows_that_cannot_be_transformed,
    sources_of,
)
from apps.features.transforms import CATEGORICAL, NUMERIC, Feature, FeaturePipeline

CLASSIFICATION = "classification"
REGRESSION = "regression"
TASK_TYPES = ("auto", CLASSIFICATION, REGRESSION)

HOLDOUTS = ("stratified", "random", "time")
CLASS_WEIGHTS = ("none", "balanced")
# search metric: (task it applies to, True when larger is better)
SEARCH_METRICS: dict[str, tuple[str, bool]] = {
    "auc": (CLASSIFICATION, True),
    "log_loss": (CLASSIFICATION, False),
    "accuracy": (CLASSIFICATION, True),
    "rmse": (REGRESSION, False),
    "mae": (REGRESSION, False),
    "r2": (REGRESSION, True),
}

MIN_ROWS = 20
MIN_TRAIN_ROWS = 10
# The holdout sample kept with a version (ONNX parity checks, explanations): at most this many test rows.
HOLDOUT_SAMPLE_ROWS = 20_000
# Mean |SHAP| importance is measured on the first rows of that sample. XGBoost's exact TreeSHAP costs
# about 0.2 ms per row for 100 trees of depth 6 on two cores: 20,000 rows would add 4 s to every training
# run, half of what boosting a million rows costs. 1,000 rows rank the features just as well (the mean
# |contribution| of each is known to a few per cent) for a fifth of a second.
SHAP_SAMPLE_ROWS = 1_000
# TreeSHAP's cost grows with trees x leaves x depth^2; bigger models get fewer rows (never under 100) so
# that the sample costs about what 1,000 rows of 100 depth-6 trees do.
SHAP_BUDGET = SHAP_SAMPLE_ROWS * 100 * 2**6 * 6**2
SHAP_MIN_ROWS = 100
LATENCY_REPEATS = 200


class Param(NamedTuple):
    """One training parameter: numbers have a range; text has a set of choices (empty: any short text)."""

    kind: type
    minimum: float | None
    maximum: float | None
    default: Any
    exclusive: bool = False  # the minimum itself is refused
    choices: tuple[str, ...] = ()


PARAMS: dict[str, Param] = {
    "n_estimators": Param(int, 1, 5000, 200),
    "max_depth": Param(int, 1, 16, 6),
    "learning_rate": Param(float, 0.0, 1.0, 0.1, True),
    "subsample": Param(float, 0.0, 1.0, 1.0, True),
    "colsample_bytree": Param(float, 0.0, 1.0, 1.0, True),
    "min_child_weight": Param(float, 0.0, 1e6, 1.0),
    "reg_lambda": Param(float, 0.0, 1e6, 1.0),
    "early_stopping_rounds": Param(int, 1, 1000, 20),
    "test_size": Param(float, 0.05, 0.5, 0.2),
    "validation_size": Param(float, 0.05, 0.5, 0.2),
    "seed": Param(int, 0, 2**31 - 1, 42),
    "nthread": Param(int, 1, 64, 2),
    "holdout": Param(str, None, None, "stratified", choices=HOLDOUTS),
    "time_column": Param(str, None, None, ""),
    "class_weight": Param(str, None, None, "none", choices=CLASS_WEIGHTS),
    "search_trials": Param(int, 0, 500, 0),
    "search_metric": Param(str, None, None, "auto", choices=("auto", *SEARCH_METRICS)),
}

PARAM_DOCS: dict[str, str] = {
    "n_estimators": "Most boosting rounds (trees per class), 1 to 5000; early stopping usually ends sooner.",
    "max_depth": "Deepest a tree may grow, 1 to 16.",
    "learning_rate": "Shrinkage of each tree's contribution, above 0 and at most 1.",
    "subsample": "Share of training rows sampled for each tree, above 0 and at most 1.",
    "colsample_bytree": "Share of features sampled for each tree, above 0 and at most 1.",
    "min_child_weight": "Least total row weight (hessian) a leaf needs, 0 to 1e6.",
    "reg_lambda": "L2 penalty on leaf weights, 0 to 1e6.",
    "early_stopping_rounds": "Stop after this many rounds without a better validation loss, 1 to 1000.",
    "test_size": "Share of rows held out to evaluate the model, 0.05 to 0.5.",
    "validation_size": "Share of the remaining rows used for early stopping and the search, 0.05 to 0.5.",
    "seed": "Seed for splits, sampling and the search: same data and seed give the same model, 0 to 2^31-1.",
    "nthread": "CPU threads XGBoost uses, 1 to 64.",
    "holdout": "How test and validation rows are chosen: stratified (by class; random when a class has under "
    "3 rows, and for regression), random, or time (the newest rows by time_column).",
    "time_column": "The date, time or number column that orders rows for the time holdout; not a feature then.",
    "class_weight": "none, or balanced: each class weighs n/(classes x rows of the class); classification only.",
    "search_trials": "Hyperparameter search trials (optuna TPE), 0 to 500; 0 trains once with the values given.",
    "search_metric": "What the search optimises on validation rows: auto (auc for two classes, log_loss for "
    "more, rmse for regression), auc, log_loss, accuracy, rmse, mae or r2.",
}

# The search space: (low, high, log scale). max_depth is an integer.
SEARCH_SPACE: dict[str, tuple[float, float, bool]] = {
    "max_depth": (2, 10, False),
    "learning_rate": (0.01, 0.3, True),
    "subsample": (0.5, 1.0, False),
    "colsample_bytree": (0.5, 1.0, False),
    "min_child_weight": (0.5, 20.0, True),
    "reg_lambda": (1e-3, 10.0, True),
}
# Headline metrics kept in `TrainingResult.metrics`; the full set is in `evaluation["metrics"]`.
HEADLINE_METRICS = {CLASSIFICATION: ("auc", "accuracy", "log_loss"), REGRESSION: ("rmse", "mae", "r2")}


class TrainingDataError(Exception):
    """The data cannot train a model; the message says what to fix."""


class TrainingCancelled(Exception):
    """`should_stop` asked training to stop; nothing was produced."""


def validate_params(params: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Resolved parameters (defaults filled in) and a field -> problem map."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return {}, {"params": "must be an object"}
    problems: dict[str, str] = {}
    resolved: dict[str, Any] = {}
    for name in params.keys() - PARAMS.keys():
        problems[name] = f"unknown parameter; known: {', '.join(sorted(PARAMS))}"
    for name, spec in PARAMS.items():
        value = params.get(name, spec.default)
        if spec.kind is str:
            if spec.choices:
                if not isinstance(value, str) or value not in spec.choices:
                    problems[name] = f"must be one of {', '.join(spec.choices)}"
                    continue
            elif not isinstance(value, str) or len(value) > 200:
                problems[name] = "must be a string of at most 200 characters"
                continue
            resolved[name] = value
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems[name] = f"must be a{'n integer' if spec.kind is int else ' number'}"
            continue
        if spec.kind is int and value != int(value):
            problems[name] = "must be an integer"
            continue
        value = spec.kind(value)
        low, high = spec.minimum, spec.maximum
        if value < low or value > high or (spec.exclusive and value == low):
            problems[name] = f"must be {'greater than' if spec.exclusive else 'at least'} {low} and at most {high}"
            continue
        resolved[name] = value
    if "holdout" in resolved and "time_column" in resolved:
        if resolved["holdout"] == "time" and not resolved["time_column"]:
            problems["time_column"] = "must name a column when holdout is time"
        elif resolved["holdout"] != "time" and resolved["time_column"]:
            problems["time_column"] = "must be empty unless holdout is time"
    return resolved, problems


@dataclass
class TrainingResult:
    """What a training run produced: the booster's UBJ bytes, its fitted features, how it did on the test
    rows, and what it needs for later checks (the holdout sample, the test row positions)."""

    model_ubj: bytes
    pipeline: FeaturePipeline | FittedPipeline
    task_type: str
    labels: list[Any]
    metrics: dict[str, float | None]
    params: dict[str, Any]
    best_iteration: int
    rows: dict[str, int]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warning_count: int = 0
    # evaluate() on the test rows: metrics, curves, calibration, importance, fairness (a JSON-safe dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    # one-row inplace_predict on a single thread, as serving runs it: {"median_us", "p95_us"}
    latency: dict[str, float] = field(default_factory=dict)
    # at most HOLDOUT_SAMPLE_ROWS test rows (float32, model input order) and the booster's raw output on them
    holdout_matrix: np.ndarray = field(default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    holdout_predictions: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    library_versions: dict[str, str | None] = field(default_factory=dict)
    # one dict per search trial: number, params, score, state, best_iteration (empty without a search)
    trials: list[dict[str, Any]] = field(default_factory=list)
    search_metric: str = ""
    holdout: str = ""  # the holdout used: a stratified request with a class under 3 rows falls back to random
    # positions (0-based, ascending) of the test rows among the input rows, rows without a target included
    test_rows: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    # wall seconds per phase: prepare (read, check, split), features, dmatrix, boost, predict, shap, evaluate,
    # latency, other; and total
    timings: dict[str, float] = field(default_factory=dict)


class _Clock:
    """Wall time per phase of a training run, for the job page and the benchmark."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self.last
        self.last = now

    def done(self) -> dict[str, float]:
        self.lap("other")
        self.laps["total"] = self.last - self.started
        return {phase: round(seconds, 4) for phase, seconds in self.laps.items()}


def xgb_feature_names(names: Sequence[str]) -> list[str]:
    """Feature names XGBoost accepts (no '[', ']' or '<'), unique by position."""
    return [f"f{index}_" + "".join("_" if char in "[]<" else char for char in name) for index, name in enumerate(names)]


def infer_task_type(values: Sequence[Any]) -> str:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        return REGRESSION
    return CLASSIFICATION


# -- columns ---------------------------------------------------------------------------------------------


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.startswith("pyarrow")


def _column(values: Any) -> Any:
    """An arrow array, or a numpy object array for values arrow cannot type (mixed kinds, huge integers)."""
    import pyarrow as pa

    if _is_arrow(values):
        return values
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return np.fromiter(values, dtype=object, count=len(values))


def _as_columns(data: Any) -> dict[str, Any]:
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return {name: data.column(name) for name in data.column_names}
    if not isinstance(data, Mapping):
        raise TrainingDataError("The columns must be a pyarrow Table or a mapping of column name to values.")
    columns = {name: _column(values) for name, values in data.items()}
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise TrainingDataError(f"The columns have different lengths: {sorted(lengths)}.")
    return columns


def _take(values: Any, rows: np.ndarray | None) -> Any:
    if rows is None:
        return values
    return values.take(rows) if _is_arrow(values) else values[rows]


def _python_values(values: Any) -> list[Any]:
    return values.to_pylist() if _is_arrow(values) else list(values)


def _missing(values: Any) -> np.ndarray:
    """True where a value is null or a float NaN."""
    if _is_arrow(values):
        import pyarrow.compute as pc

        return np.asarray(pc.is_null(values, nan_is_null=True).to_numpy(zero_copy_only=False), dtype=bool)
    return np.fromiter(
        (value is None or (isinstance(value, float) and math.isnan(value)) for value in values),
        dtype=bool,
        count=len(values),
    )


def _arrow_kind(values: Any) -> str:
    """integer, float, boolean, string, datetime, null or other; "object" for a numpy object column."""
    if not _is_arrow(values):
        return "object"
    import pyarrow as pa

    kind = values.type
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_integer(kind):
        return "integer"
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "string"
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return "datetime"
    if pa.types.is_null(kind):
        return "null"
    return "other"


def _floats(values: Any) -> np.ndarray:
    """A numeric, boolean or null arrow column as float64, NaN for missing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(values.type):
        values = pc.cast(values, values.type.value_type)
    cast = pc.cast(values, pa.float64())
    if cast.null_count:
        cast = pc.fill_null(cast, math.nan)
    return np.asarray(cast.to_numpy(zero_copy_only=False), dtype=np.float64)


def _dictionary(values: Any) -> tuple[np.ndarray, list[Any]]:
    """Positions into a list of distinct values (-1 for missing) and that list."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    encoded = values if pa.types.is_dictionary(values.type) else pc.dictionary_encode(values)
    positions = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
    return np.asarray(positions, dtype=np.int64), encoded.dictionary.to_pylist()


# -- the target and the split ----------------------------------------------------------------------


@dataclass
class _Prepared:
    columns: dict[str, Any]  # only the rows that have a target
    kept: np.ndarray | None  # their positions among the input rows; None when every row has a target
    task_type: str
    labels: list[Any]
    y: np.ndarray
    holdout: str
    times: np.ndarray | None
    sizes: tuple[int, int]  # test rows, validation rows


def _share(rows: int, fraction: float) -> int:
    return math.ceil(round(rows * fraction, 6))


def _class_codes(values: Any) -> tuple[list[Any], np.ndarray]:
    """Sorted labels (by their text) and each row's label index as float32; `values` has no missing value."""
    if _arrow_kind(values) in ("integer", "float", "boolean", "string"):
        positions, distinct = _dictionary(values)
        labels = sorted(distinct, key=str)
        index = {label: position for position, label in enumerate(labels)}
        remap = np.array([index[value] for value in distinct], dtype=np.float32)
        return labels, remap[positions]
    plain = _python_values(values)
    labels = sorted(set(plain), key=str)
    index = {label: position for position, label in enumerate(labels)}
    return labels, np.fromiter((index[value] for value in plain), dtype=np.float32, count=len(plain))


def _numbers(values: Any) -> np.ndarray | None:
    kind = _arrow_kind(values)
    if kind in ("integer", "float", "boolean"):
        return _floats(values)
    if kind == "object":
        try:
            return np.array(list(values), dtype=np.float64)
        except (TypeError, ValueError):
            return None
    return None


def _allocate(counts: np.ndarray, total: int, reserve: int) -> np.ndarray | None:
    """Rows per class summing to `total`, proportional to `counts` (largest remainders first), each class at
    least one row and leaving at least `reserve` rows of it behind; None when that cannot be done."""
    high = counts - reserve
    if (high < 1).any() or len(counts) > total or high.sum() < total:
        return None
    quota = counts * (total / counts.sum())
    take = np.clip(np.floor(quota).astype(np.int64), 1, high)
    while (gap := total - int(take.sum())) != 0:
        if gap > 0:
            room = np.flatnonzero(take < high)
            order = room[np.argsort(-(quota[room] - take[room]), kind="stable")]
            take[order[:gap]] += 1
        else:
            room = np.flatnonzero(take > 1)
            order = room[np.argsort(-(take[room] - quota[room]), kind="stable")]
            take[order[:-gap]] -= 1
    return take


def _time_values(values: Any, name: str, schema: Mapping[str, str]) -> tuple[np.ndarray | None, str | None]:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = _arrow_kind(values)
    if kind == "datetime":
        raw = values.type.value_type if pa.types.is_dictionary(values.type) else values.type
        if pa.types.is_date32(raw):
            values = pc.cast(values, pa.int32())
        times = pc.cast(values, pa.int64())
        missing = int(times.null_count)
        ordered = np.asarray(pc.fill_null(times, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    elif kind in ("integer", "float"):
        ordered = _floats(values)
        missing = int(np.isnan(ordered).sum())
    else:
        described = schema.get(name) or ("mixed" if kind == "object" else kind)
        return None, (
            f"The time column {name!r} holds {described} values; the time holdout needs dates, times or numbers."
        )
    if missing:
        return None, (
            f"The time column {name!r} has no value in {missing} row(s) that have a target; "
            "the time holdout needs a time on every row."
        )
    return ordered, None


def _inspect(
    columns: dict[str, Any], target: str, task_type: str, resolved: Mapping[str, Any], schema: Mapping[str, str]
) -> tuple[_Prepared | None, list[str]]:
    """Everything that can be known about the data before fitting: the problems that stop training."""
    if task_type not in TASK_TYPES:
        return None, [f"The task type must be auto, {CLASSIFICATION} or {REGRESSION}, not {task_type!r}."]
    if target not in columns:
        return None, [f"The target column {target!r} is not in the dataset."]
    missing = _missing(columns[target])
    kept = np.flatnonzero(~missing) if missing.any() else None
    if kept is not None:
        columns = {name: _take(values, kept) for name, values in columns.items()}
    values = columns[target]
    if task_type == "auto":
        kind = _arrow_kind(values)
        if kind == "object":
            task_type = infer_task_type(_python_values(values))
        else:
            task_type = REGRESSION if kind in ("integer", "float") else CLASSIFICATION
    labels: list[Any] = []
    if task_type == CLASSIFICATION:
        labels, y = _class_codes(values)
        if len(labels) == 1:
            return None, [f"The target column {target!r} has a single class; classification needs two."]
    else:
        numbers = _numbers(values)
        if numbers is None:
            return None, [f"The target column {target!r} is not numeric; regression needs numbers."]
        if not np.isfinite(numbers).all():
            return None, [f"The target column {target!r} has infinite values; regression needs finite numbers."]
        y = numbers
    rows = len(y)
    if rows < MIN_ROWS:
        return None, [f"Only {rows} rows have a target value; at least {MIN_ROWS} are needed."]

    problems: list[str] = []
    if resolved["class_weight"] == "balanced" and task_type == REGRESSION:
        problems.append("class_weight 'balanced' weighs classes, so it applies to classification only.")
    metric = resolved["search_metric"]
    if metric != "auto" and SEARCH_METRICS[metric][0] != task_type:
        fitting = ", ".join(name for name, (task, _) in SEARCH_METRICS.items() if task == task_type)
        problems.append(f"search_metric {metric!r} does not apply to {task_type}; use {fitting}.")
    n_test = _share(rows, resolved["test_size"])
    n_valid = _share(rows - n_test, resolved["validation_size"])
    n_fit = rows - n_test - n_valid
    if n_fit < MIN_TRAIN_ROWS:
        problems.append(
            f"Only {n_fit} rows are left for training after holding out {n_test} for test and {n_valid} for "
            f"validation; at least {MIN_TRAIN_ROWS} are needed."
        )
    holdout, times = resolved["holdout"], None
    if holdout == "time":
        name = resolved["time_column"]
        if name not in columns:
            problems.append(f"The time column {name!r} is not in the dataset.")
        else:
            times, problem = _time_values(columns[name], name, schema)
            if problem:
                problems.append(problem)
    elif holdout == "stratified":
        counts = np.bincount(y.astype(np.int64)) if task_type == CLASSIFICATION else np.zeros(0)
        if task_type != CLASSIFICATION or counts.min() < 3:
            holdout = "random"
        elif n_fit >= MIN_TRAIN_ROWS:
            test_counts = _allocate(counts, n_test, reserve=2)
            if test_counts is None or _allocate(counts - test_counts, n_valid, reserve=1) is None:
                problems.append(
                    f"A stratified holdout puts every class in training, validation and test, but the "
                    f"{len(counts)} classes do not fit in {n_test} test and {n_valid} validation rows; raise "
                    "test_size and validation_size, or use holdout 'random'."
                )
    prepared = _Prepared(columns, kept, task_type, labels, y, holdout, times, (n_test, n_valid))
    return prepared, problems


def _split(prepared: _Prepared, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row positions of the fit, validation and test rows, each in dataset order."""
    rows = len(prepared.y)
    n_test, n_valid = prepared.sizes
    part = np.zeros(rows, dtype=np.int8)  # 0 fit, 1 validation, 2 test
    if prepared.holdout == "time":
        # Ties keep dataset order; the newest rows are the test rows, the next newest validation.
        assert prepared.times is not None  # _inspect read them for the time holdout
        order = np.argsort(prepared.times, kind="stable")
        part[order[rows - n_test - n_valid : rows - n_test]] = 1
        part[order[rows - n_test :]] = 2
    else:
        order = np.random.default_rng(seed).permutation(rows)
        if prepared.holdout == "random":
            part[order[n_test : n_test + n_valid]] = 1
            part[order[:n_test]] = 2
        else:
            codes = prepared.y.astype(np.int64)
            counts = np.bincount(codes)
            test_counts = _allocate(counts, n_test, reserve=2)
            assert test_counts is not None  # _inspect refused the data otherwise
            valid_counts = _allocate(counts - test_counts, n_valid, reserve=1)
            assert valid_counts is not None
            shuffled = codes[order].astype(np.int16 if len(counts) < 2**15 else np.int64)  # int16 sorts by radix
            order = order[np.argsort(shuffled, kind="stable")]  # grouped by class, shuffled within
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            label = np.repeat(np.arange(len(counts)), counts)
            offset = np.arange(rows) - starts[label]  # position within its class
            part[order[offset < (test_counts + valid_counts)[label]]] = 1
            part[order[offset < test_counts[label]]] = 2
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2)


def check_trainable(
    columns_or_table: Any,
    *,
    target: str,
    task_type: str = "auto",
    params: Mapping[str, Any] | None = None,
    schema: Mapping[str, str] | None = None,
) -> list[str]:
    """Problems that would stop `train` on this data, found without training: cheap enough for the moment a
    job is submitted. Empty when training can start; `train` raises TrainingDataError with the same text."""
    resolved, problems = validate_params(params)
    if problems:
        return [_params_message(problems)]
    try:
        columns = _as_columns(columns_or_table)
    except TrainingDataError as exc:
        return [str(exc)]
    return _inspect(columns, target, task_type, resolved, schema or {})[1]


def _params_message(problems: Mapping[str, str]) -> str:
    return "Invalid parameters: " + "; ".join(f"{k} {v}" for k, v in sorted(problems.items()))


# -- features ----------------------------------------------------------------------------------------


def _auto_features(
    columns: Mapping[str, Any],
    splits: Sequence[np.ndarray],
    exclude: set[str],
    subject_key: str,
    threads: int = 1,
) -> tuple[FeaturePipeline, list[np.ndarray]]:
    """`FeaturePipeline.fit` on the rows of `splits[0]`, and the float32 matrix `transform_columns` gives
    for the rows of each split; vectorised, without materialising the matrix of every row. Text columns
    are encoded and row blocks gathered on `threads` threads (arrow and numpy release the GIL)."""
    with ThreadPoolExecutor(max_workers=threads) as pool:
        return _auto_features_on(pool, columns, splits, exclude, subject_key)


def _auto_features_on(
    pool: ThreadPoolExecutor,
    columns: Mapping[str, Any],
    splits: Sequence[np.ndarray],
    exclude: set[str],
    subject_key: str,
) -> tuple[FeaturePipeline, list[np.ndarray]]:
    import pyarrow as pa

    names = [name for name in columns if name not in exclude and name != subject_key]
    fit = splits[0]
    text = [name for name in names if _arrow_kind(columns[name]) == "string"]
    encoded = dict(zip(text, pool.map(lambda name: _dictionary(columns[name]), text), strict=True))
    sources: list[np.ndarray] = []  # per feature, its value for every row, as the matrix will hold it
    features: list[Feature | None] = []  # None: numeric, fitted from the fit rows as they are gathered
    for name in names:
        values = columns[name]
        kind = _arrow_kind(values)
        if kind in ("integer", "float", "boolean"):
            if pa.types.is_integer(values.type) and values.null_count == 0:
                sources.append(np.asarray(values.to_numpy()))  # integers straight to float32, as from a list
            else:
                sources.append(_floats(values))
            features.append(None)
        elif kind in ("string", "null"):
            if kind == "null":
                positions, distinct = np.full(len(values), -1, dtype=np.int64), list[Any]()
            else:
                positions, distinct = encoded[name]
            seen = positions[fit]
            used = np.bincount(seen[seen >= 0], minlength=len(distinct)) > 0
            vocabulary = sorted(value for value, hit in zip(distinct, used, strict=True) if hit)
            nullable = bool((seen < 0).any())
            features.append(Feature(name=name, kind=CATEGORICAL, vocabulary=tuple(vocabulary), nullable=nullable))
            code = {value: index for index, value in enumerate(vocabulary)}
            lookup = np.array([code.get(value, math.nan) for value in distinct] + [math.nan], dtype=np.float32)
            sources.append(lookup[positions])  # -1 (missing) reads the trailing NaN
        else:  # dates, decimals, mixed lists: the pipeline's own per-value path
            fitted = FeaturePipeline.fit({name: _python_values(_take(values, fit))})
            features.extend(fitted.features)
            sources.append(fitted.transform_columns({name: _python_values(values)})[:, 0])
    numeric = [position for position, feature in enumerate(features) if feature is None]
    matrices = [_gather(pool, sources, rows, numeric if index == 0 else ()) for index, rows in enumerate(splits)]
    lows, highs, present = matrices[0][1]
    for position in numeric:
        values = columns[names[position]]
        if present[position]:
            features[position] = Feature(
                name=names[position],
                kind=NUMERIC,
                minimum=float(lows[position]),
                maximum=float(highs[position]),
                integer=_arrow_kind(values) != "float",
                nullable=int(present[position]) < len(fit),
            )
        else:  # no value at all among the fit rows: an empty category, missing everywhere
            features[position] = Feature(name=names[position], kind=CATEGORICAL, vocabulary=(), nullable=len(fit) > 0)
            for matrix, _ in matrices:
                matrix[:, position] = math.nan
    fitted_features = [feature for feature in features if feature is not None]
    return FeaturePipeline(fitted_features, subject_key=subject_key), [matrix for matrix, _ in matrices]


GATHER_BLOCK_ROWS = 65_536


def _gather(
    pool: ThreadPoolExecutor, sources: Sequence[np.ndarray], rows: np.ndarray, measured: Sequence[int]
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The float32 matrix of `rows` (one column per source) and, for the `measured` columns, the least and
    greatest value and the count of values that are not NaN, read from the sources at full precision.

    Built a block of rows at a time: writing a column into a row-major matrix touches one cache line per
    row, so a whole million-row column at once is three times slower than a block that stays in cache."""
    out = np.empty((len(rows), len(sources)), dtype=np.float32)
    measure = set(measured)

    def fill(start: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        part = rows[start : start + GATHER_BLOCK_ROWS]
        block = out[start : start + len(part)]
        lows = np.full(len(sources), np.inf)
        highs = np.full(len(sources), -np.inf)
        present = np.zeros(len(sources), dtype=np.int64)
        for position, source in enumerate(sources):
            values = source[part]
            block[:, position] = values
            if position in measure:
                if values.dtype.kind == "f":
                    present[position] = len(values) - np.count_nonzero(np.isnan(values))
                    if not present[position]:
                        continue
                    lows[position], highs[position] = np.fmin.reduce(values), np.fmax.reduce(values)
                else:
                    present[position] = len(values)
                    lows[position], highs[position] = values.min(), values.max()
        return lows, highs, present

    blocks = list(pool.map(fill, range(0, len(rows), GATHER_BLOCK_ROWS)))
    if not blocks:
        return out, (np.full(len(sources), np.inf), np.full(len(sources), -np.inf), np.zeros(len(sources), np.int64))
    lows = np.min([block[0] for block in blocks], axis=0)
    highs = np.max([block[1] for block in blocks], axis=0)
    present = np.sum([block[2] for block in blocks], axis=0)
    return out, (lows, highs, present)


def _feature_set(
    definition: list[dict[str, Any]],
    columns: Mapping[str, Any],
    splits: Sequence[np.ndarray],
    schema: Mapping[str, str],
    subject_key: str,
) -> tuple[FittedPipeline, list[np.ndarray]]:
    features = definition if isinstance(definition, list) else []
    sources = {
        source
        for feature in features
        if isinstance(feature, Mapping)
        for source in sources_of(feature)
        if isinstance(source, str) and source in columns
    }
    try:
        pipeline = FittedPipeline.fit(
            definition, {name: _take(columns[name], splits[0]) for name in sources}, schema, subject_key=subject_key
        )
    except DefinitionError as exc:
        details = "; ".join(f"{p['feature']}: {p['field']} {p['message']}" for p in exc.problems[:10])
        raise TrainingDataError(f"The feature set does not fit the data: {details}") from None
    matrix = pipeline.transform_columns({name: columns[name] for name in pipeline.source_columns})
    return pipeline, [matrix[rows] for rows in splits]


# -- boosting ------------------------------------------------------------------------------------------


def _booster_params(resolved: Mapping[str, Any], task_type: str, classes: int) -> dict[str, Any]:
    params: dict[str, Any] = {
        "max_depth": resolved["max_depth"],
        "eta": resolved["learning_rate"],
        "subsample": resolved["subsample"],
        "colsample_bytree": resolved["colsample_bytree"],
        "min_child_weight": resolved["min_child_weight"],
        "lambda": resolved["reg_lambda"],
        "seed": resolved["seed"],
        "nthread": resolved["nthread"],
        "tree_method": "hist",
    }
    if task_type == REGRESSION:
        params.update(objective="reg:squarederror", eval_metric="rmse")
    elif classes == 2:
        params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=classes)
    return params


def _score(metric: str, classes: int, y: np.ndarray, predicted: np.ndarray) -> float:
    """A search metric on validation rows; NaN where it is undefined (a class missing for AUC)."""
    from sklearn import metrics

    if metric in ("rmse", "mae", "r2"):
        error = predicted - y
        if metric == "rmse":
            return float(math.sqrt(np.mean(error**2)))
        if metric == "mae":
            return float(np.mean(np.abs(error)))
        spread = float(((y - y.mean()) ** 2).sum())
        return 1.0 - float((error**2).sum()) / spread if spread else math.nan
    codes = y.astype(np.int64)
    probabilities = np.column_stack([1.0 - predicted, predicted]) if classes == 2 else predicted
    if metric == "accuracy":
        return float((probabilities.argmax(axis=1) == codes).mean())
    if metric == "log_loss":
        return float(metrics.log_loss(codes, probabilities, labels=list(range(classes))))
    if len(np.unique(codes)) < classes:
        return math.nan
    if classes == 2:
        return float(metrics.roc_auc_score(codes, predicted))
    return float(metrics.roc_auc_score(codes, probabilities, multi_class="ovr", labels=list(range(classes))))


def _library_versions() -> dict[str, str | None]:
    from importlib import metadata

    import pyarrow
    import sklearn
    import xgboost

    try:
        optuna_version: str | None = metadata.version("optuna")
    except metadata.PackageNotFoundError:
        optuna_version = None
    return {
        "xgboost": xgboost.__version__,
        "numpy": np.__version__,
        "pyarrow": pyarrow.__version__,
        "scikit-learn": sklearn.__version__,
        "optuna": optuna_version,
    }


def _shap_rows(booster: Any, max_depth: int, classes: int) -> int:
    """How many rows the mean |SHAP| importance is measured on, for this model's size (see SHAP_BUDGET)."""
    trees = booster.num_boosted_rounds() * (classes if classes > 2 else 1)
    cost = max(trees, 1) * 2**max_depth * max_depth**2
    return int(min(SHAP_SAMPLE_ROWS, max(SHAP_MIN_ROWS, SHAP_BUDGET // cost)))


def train(
    columns: Any,
    *,
    target: str,
    subject_key: str = "",
    task_type: str = "auto",
    params: Mapping[str, Any] | None = None,
    on_progress: Callable[[float], None] | None = None,
    feature_definition: list[dict[str, Any]] | None = None,
    schema: Mapping[str, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_trial: Callable[[dict[str, Any]], None] | None = None,
    protected: Mapping[str, Sequence[Any]] | None = None,
    favourable_index: int | None = None,
    fairness_limits: Mapping[str, float] | None = None,
) -> TrainingResult:
    """Train and evaluate on a held-out split.

    Raises TrainingDataError for data or parameters that cannot train (the messages of `check_trainable`),
    and TrainingCancelled when `should_stop` returns True: it is asked after every boosting round and
    before every search trial, so it should be cheap (throttle any database read behind it).

    With `feature_definition` (a feature set, checked against `schema`), the model's inputs are that
    set's fitted features; without, every column but the target, the subject key and (for the time
    holdout) the time column. `on_progress(fraction)` follows the rounds; during a search the fraction is
    (finished trials + rounds of this trial / n_estimators) / search_trials.

    With `search_trials` > 0, an optuna TPE study seeded with `seed` tries that many settings of
    SEARCH_SPACE, each boosted on the fit rows with early stopping on the validation rows and scored on
    them with `search_metric`; trials whose validation loss trails the median of earlier trials at the
    same round are pruned. `on_trial` gets each finished trial. The best trial's booster is the model.

    `protected` maps attribute -> values aligned with every input row; the test rows' values measure
    fairness (binary models), with `favourable_index` and `fairness_limits` passed to `evaluate`.
    """
    import xgboost as xgb

    from apps.registry.evaluation import FAIRNESS_DEFAULTS, evaluate, measure_latency

    resolved, problems = validate_params(dict(params or {}))
    if problems:
        raise TrainingDataError(_params_message(problems))
    unknown_limits = set(fairness_limits or {}) - FAIRNESS_DEFAULTS.keys()
    if unknown_limits:
        raise TrainingDataError(
            f"Unknown fairness limits: {', '.join(sorted(unknown_limits))}; "
            f"known: {', '.join(sorted(FAIRNESS_DEFAULTS))}."
        )
    if favourable_index is not None and favourable_index not in (0, 1):
        raise TrainingDataError(f"The favourable class index must be 0 or 1, not {favourable_index!r}.")
    clock = _Clock()
    table = _as_columns(columns)
    n_input = len(next(iter(table.values()))) if table else 0
    groups_all = {name: _column(values) for name, values in (protected or {}).items()}
    for name, values in groups_all.items():
        if len(values) != n_input:
            raise TrainingDataError(f"The protected attribute {name!r} has {len(values)} values for {n_input} rows.")
    prepared, reasons = _inspect(table, target, task_type, resolved, schema or {})
    if reasons or prepared is None:
        raise TrainingDataError(" ".join(reasons))
    task_type, labels, y = prepared.task_type, prepared.labels, prepared.y
    classes = len(labels)
    seed = resolved["seed"]
    fit, valid, test = _split(prepared, seed)
    clock.lap("prepare")

    pipeline: FeaturePipeline | FittedPipeline
    if feature_definition is not None:
        pipeline, matrices = _feature_set(
            feature_definition, prepared.columns, (fit, valid, test), schema or {}, subject_key
        )
    else:
        exclude = {target} | ({resolved["time_column"]} if prepared.holdout == "time" else set())
        pipeline, matrices = _auto_features(
            prepared.columns, (fit, valid, test), exclude, subject_key, threads=resolved["nthread"]
        )
    if not pipeline.features:
        raise TrainingDataError("The dataset has no feature columns besides the target and the subject key.")
    fit_matrix, valid_matrix, test_matrix = matrices
    del matrices
    clock.lap("features")

    weights: dict[str, np.ndarray | None] = {"fit": None, "valid": None}
    if resolved["class_weight"] == "balanced":
        counts = np.bincount(y[fit].astype(np.int64), minlength=classes)
        per_class = np.divide(len(fit), classes * counts, out=np.zeros(classes), where=counts > 0)
        weights = {"fit": per_class[y[fit].astype(np.int64)], "valid": per_class[y[valid].astype(np.int64)]}
    names = xgb_feature_names(pipeline.names)
    nthread = resolved["nthread"]
    dfit = xgb.DMatrix(fit_matrix, label=y[fit], weight=weights["fit"], feature_names=names, nthread=nthread)
    dvalid = xgb.DMatrix(valid_matrix, label=y[valid], weight=weights["valid"], feature_names=names, nthread=nthread)
    del fit_matrix
    clock.lap("dmatrix")
    base_params = _booster_params(resolved, task_type, classes)
    rounds = resolved["n_estimators"]
    loss = base_params["eval_metric"]

    class Rounds(xgb.callback.TrainingCallback):
        """Progress, cancellation and (in a search) pruning, after every round."""

        def __init__(self, finished: int = 0, trial: Any = None, sign: float = 1.0) -> None:
            self.finished, self.trial, self.sign = finished, trial, sign

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if on_progress is not None:
                trials = max(resolved["search_trials"], 1)
                on_progress((self.finished + (epoch + 1) / rounds) / trials)
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"Training was cancelled after {epoch + 1} round(s).")
            if self.trial is not None:
                self.trial.report(self.sign * evals_log["valid"][loss][-1], epoch)
                if self.trial.should_prune():
                    import optuna

                    raise optuna.TrialPruned()
            return False

    def boost(booster_params: Mapping[str, Any], callback: Rounds) -> tuple[Any, int]:
        booster = xgb.train(
            dict(booster_params),
            dfit,
            num_boost_round=rounds,
            evals=[(dvalid, "valid")],
            early_stopping_rounds=resolved["early_stopping_rounds"],
            verbose_eval=False,
            callbacks=[callback],
        )
        best = int(booster.best_iteration)
        return booster[: best + 1], best

    trials: list[dict[str, Any]] = []
    search_metric = ""
    chosen = dict(resolved)
    if resolved["search_trials"]:
        search_metric = resolved["search_metric"]
        if search_metric == "auto":
            search_metric = "rmse" if task_type == REGRESSION else ("auc" if classes == 2 else "log_loss")
        booster, best, best_params, trials = _search(
            resolved, base_params, search_metric, classes, y[valid], valid_matrix, boost, Rounds, should_stop, on_trial
        )
        chosen.update(best_params)
    else:
        booster, best = boost(base_params, Rounds())
    del valid_matrix
    clock.lap("boost")

    # Evaluation on every test row; SHAP contributions and the kept holdout on a seeded sample of them.
    predicted = np.asarray(booster.inplace_predict(test_matrix))
    clock.lap("predict")
    n_test = len(test)
    sampled = n_test > SHAP_SAMPLE_ROWS
    order = np.random.default_rng(seed).permutation(n_test) if sampled else np.arange(n_test)
    holdout_rows = order[:HOLDOUT_SAMPLE_ROWS]
    holdout_matrix = np.ascontiguousarray(test_matrix[holdout_rows])
    if on_progress is not None:
        on_progress(1.0)
    shap_rows = holdout_rows[: _shap_rows(booster, chosen["max_depth"], classes)]
    contribs = np.asarray(
        booster.predict(xgb.DMatrix(holdout_matrix[: len(shap_rows)], feature_names=names), pred_contribs=True)
    )
    clock.lap("shap")
    partial = len(shap_rows) < n_test
    if on_progress is not None:
        on_progress(1.0)
    human = dict(zip(names, pipeline.names, strict=True))
    gain = {human[name]: float(value) for name, value in booster.get_score(importance_type="total_gain").items()}
    test_input_rows = test if prepared.kept is None else prepared.kept[test]
    groups = {name: _python_values(_take(values, test_input_rows)) for name, values in groups_all.items()}
    common: dict[str, Any] = {
        "task_type": task_type,
        "labels": labels,
        "feature_names": list(pipeline.names),
        "gain": gain,
    }
    binary = task_type == CLASSIFICATION and classes == 2
    evaluation = evaluate(
        **common,
        y_true=y[test],
        predicted=predicted,
        contribs=None if partial else contribs,
        groups=groups or None,
        favourable_index=favourable_index if binary else None,
        fairness_limits=dict(fairness_limits or {}),
    )
    if partial:
        explained = evaluate(**common, y_true=y[test][shap_rows], predicted=predicted[shap_rows], contribs=contribs)
        evaluation["importance"] = explained["importance"]
    evaluation["importance_rows"] = len(shap_rows)
    clock.lap("evaluate")
    model_ubj = bytes(booster.save_raw("ubj"))
    serving = xgb.Booster()
    serving.load_model(bytearray(model_ubj))
    serving.set_param({"nthread": 1})  # as the model loader serves it
    one_row = np.ascontiguousarray(holdout_matrix[:1])
    latency = measure_latency(lambda: serving.inplace_predict(one_row), repeats=LATENCY_REPEATS)
    clock.lap("latency")

    # Row numbers count from 1 over the rows that have a target, in the dataset's order.
    warnings, warning_count = (
        rows_that_cannot_be_transformed(feature_definition, prepared.columns)
        if feature_definition is not None
        else ([], 0)
    )
    headline = {name: evaluation["metrics"].get(name) for name in HEADLINE_METRICS[task_type]}
    return TrainingResult(
        model_ubj=model_ubj,
        pipeline=pipeline,
        task_type=task_type,
        labels=labels,
        metrics=headline,
        params=chosen,
        best_iteration=best,
        rows={
            "train": len(fit),
            "validation": len(valid),
            "test": n_test,
            "dropped_without_target": n_input - len(y),
        },
        warnings=warnings,
        warning_count=warning_count,
        evaluation=evaluation,
        latency=latency,
        holdout_matrix=holdout_matrix,
        holdout_predictions=np.ascontiguousarray(predicted[holdout_rows]),
        library_versions=_library_versions(),
        trials=trials,
        search_metric=search_metric,
        holdout=prepared.holdout,
        test_rows=np.asarray(test_input_rows, dtype=np.int64),
        timings=clock.done(),
    )


def _search(
    resolved: Mapping[str, Any],
    base_params: Mapping[str, Any],
    metric: str,
    classes: int,
    y_valid: np.ndarray,
    valid_matrix: np.ndarray,
    boost: Callable[..., tuple[Any, int]],
    rounds_callback: type,
    should_stop: Callable[[], bool] | None,
    on_trial: Callable[[dict[str, Any]], None] | None,
) -> tuple[Any, int, dict[str, Any], list[dict[str, Any]]]:
    """An optuna study over SEARCH_SPACE; returns the best trial's booster, best round, params and all trials."""
    import optuna
    import xgboost as xgb

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    maximise = SEARCH_METRICS[metric][1]
    study = optuna.create_study(
        direction="maximize" if maximise else "minimize",
        sampler=optuna.samplers.TPESampler(seed=resolved["seed"]),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=10),
    )
    best: dict[str, Any] = {}
    trials: list[dict[str, Any]] = []

    def objective(trial: Any) -> float:
        if should_stop is not None and should_stop():
            raise TrainingCancelled(f"Training was cancelled after {trial.number} search trial(s).")
        chosen = {
            name: trial.suggest_int(name, int(low), int(high))
            if name == "max_depth"
            else trial.suggest_float(name, low, high, log=log)
            for name, (low, high, log) in SEARCH_SPACE.items()
        }
        params = dict(base_params)
        params.update(
            max_depth=chosen["max_depth"],
            eta=chosen["learning_rate"],
            subsample=chosen["subsample"],
            colsample_bytree=chosen["colsample_bytree"],
            min_child_weight=chosen["min_child_weight"],
            **{"lambda": chosen["reg_lambda"]},
        )
        # The validation loss is minimised; a maximised study sees it negated, so the pruner compares alike.
        booster, best_round = boost(params, rounds_callback(trial.number, trial, -1.0 if maximise else 1.0))
        trial.set_user_attr("best_iteration", best_round)
        score = _score(metric, classes, y_valid, np.asarray(booster.inplace_predict(valid_matrix)))
        if math.isfinite(score) and (not best or (score > best["score"] if maximise else score < best["score"])):
            best.update(score=score, booster=booster, best_iteration=best_round, params=chosen)
        return score

    def record(study: Any, frozen: Any) -> None:
        state = {
            optuna.trial.TrialState.COMPLETE: "complete",
            optuna.trial.TrialState.PRUNED: "pruned",
        }.get(frozen.state, "failed")
        item = {
            "number": frozen.number,
            "params": dict(frozen.params),
            "score": frozen.value if state == "complete" else None,
            "state": state,
            "best_iteration": frozen.user_attrs.get("best_iteration") if state == "complete" else None,
        }
        trials.append(item)
        if on_trial is not None:
            on_trial(item)

    study.optimize(
        objective,
        n_trials=resolved["search_trials"],
        catch=(xgb.core.XGBoostError, ValueError),
        callbacks=[record],
    )
    if not best:
        raise TrainingDataError(
            f"No search trial gave a {metric} score on the validation rows; check that they hold every class, "
            "or choose another search_metric."
        )
    return best["booster"], best["best_iteration"], best["params"], trials
