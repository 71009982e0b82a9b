"""Declarative feature sets, fitted once and applied by one code path. No Django here.

A feature set definition is an ordered list of features, each a transform of one or two source
columns:

    {"name": "income_log", "transform": "log1p", "source": "income", "description": "..."}
    {"name": "util", "transform": "ratio", "sources": ["balance", "limit"]}

`FittedPipeline.fit` learns what a transform needs from the training columns (means, quantile edges,
vocabularies, fill values) and freezes it in a plain dict. `transform_columns` then turns columns into
the model's float32 matrix with vectorised numpy; a one-row request (`transform_rows`), a batch and a
training table (`transform_table`) all go through it, so they give bit-identical matrices.

Missing values are NaN in the matrix (XGBoost's missing). Policies, per transform:
- log1p of a value <= -1, a ratio with a zero denominator, an unparseable or missing date: NaN.
- one_hot: a column per frequent value (`top_k`) and one for any other value; a missing value is all
  zeros. ordinal: the value's index in the sorted vocabulary; an unseen or missing value is NaN.
- bucketise: the index of the bucket, edges fixed or fitted as quantiles; missing stays NaN.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from apps.features.transforms import humanise, validate_request_rows

TRANSFORMS = (
    "passthrough",
    "standardise",
    "clip",
    "log1p",
    "bucketise",
    "one_hot",
    "ordinal",
    "missing_indicator",
    "fill",
    "date_part",
    "ratio",
    "difference",
)
NUMERIC_TYPES = ("integer", "float", "boolean")
_NUMERIC_TRANSFORMS = ("passthrough", "standardise", "clip", "log1p", "bucketise", "fill")
_TEXT_TRANSFORMS = ("one_hot", "ordinal")
_TWO_SOURCES = ("ratio", "difference")
_DATE_PARTS = ("year", "month", "weekday", "hour", "days_since")
_PARAMS: dict[str, set[str]] = {
    "passthrough": set(),
    "standardise": set(),
    "clip": {"min", "max"},
    "log1p": set(),
    "bucketise": {"edges", "quantiles"},
    "one_hot": {"top_k"},
    "ordinal": set(),
    "missing_indicator": set(),
    "fill": {"value", "statistic"},
    "date_part": {"part", "reference"},
    "ratio": set(),
    "difference": set(),
}
HISTOGRAM_BINS = 10


class DefinitionError(Exception):
    """A definition that cannot be fitted; `problems` lists {"feature", "field", "message"}."""

    def __init__(self, message: str, problems: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems


# -- definitions --------------------------------------------------------------------------------------


def sources_of(feature: Mapping[str, Any]) -> list[str]:
    """The source columns a feature reads (its personal-data tags are theirs)."""
    if feature.get("transform") in _TWO_SOURCES:
        return list(feature.get("sources") or [])
    return [feature["source"]] if feature.get("source") else []


def definition_hash(definition: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of the definition's canonical JSON: key order does not matter, every value does."""
    canonical = json.dumps(list(definition), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_params(feature: Mapping[str, Any], problem) -> None:
    transform = feature["transform"]
    params = feature.get("params") or {}
    if not isinstance(params, Mapping):
        problem("params", "must be an object")
        return
    for key in sorted(set(params) - _PARAMS[transform]):
        problem("params", f"unknown parameter {key!r} for {transform}")
    if transform == "clip":
        low, high = params.get("min"), params.get("max")
        if low is None and high is None:
            problem("params", "clip needs min, max or both")
        for key, value in (("min", low), ("max", high)):
            if value is not None and not _is_number(value):
                problem("params", f"{key} must be a finite number")
        if _is_number(low) and _is_number(high) and low > high:
            problem("params", "min must not exceed max")
    elif transform == "bucketise":
        edges, quantiles = params.get("edges"), params.get("quantiles")
        if (edges is None) == (quantiles is None):
            problem("params", "bucketise needs either edges or quantiles")
        elif edges is not None:
            if not isinstance(edges, list) or not edges or not all(_is_number(edge) for edge in edges):
                problem("params", "edges must be a non-empty list of finite numbers")
            elif any(b <= a for a, b in itertools.pairwise(edges)):
                problem("params", "edges must increase")
        elif isinstance(quantiles, bool) or not isinstance(quantiles, int) or not 2 <= quantiles <= 100:
            problem("params", "quantiles must be an integer from 2 to 100")
    elif transform == "one_hot":
        top_k = params.get("top_k", 10)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 1000:
            problem("params", "top_k must be an integer from 1 to 1000")
    elif transform == "fill":
        if ("value" in params) == ("statistic" in params):
            problem("params", "fill needs either a value or a statistic (mean, median, mode)")
        elif "value" in params and not _is_number(params["value"]):
            problem("params", "value must be a finite number")
        elif "statistic" in params and params["statistic"] not in ("mean", "median", "mode"):
            problem("params", "statistic must be mean, median or mode")
    elif transform == "date_part":
        part = params.get("part")
        if part not in _DATE_PARTS:
            problem("params", f"part must be one of {', '.join(_DATE_PARTS)}")
        if part == "days_since":
            try:
                dt.date.fromisoformat(str(params.get("reference")))
            except ValueError:
                problem("params", "days_since needs a reference date, e.g. 2020-01-01")


def validate_definition(definition: Any, schema: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every problem with a definition against the columns and logical types of the data it will read."""
    problems: list[dict[str, Any]] = []
    if not isinstance(definition, list) or not definition:
        return [{"feature": None, "field": "features", "message": "must be a non-empty list of features"}]
    seen: set[str] = set()
    for index, feature in enumerate(definition):
        label = feature.get("name") if isinstance(feature, Mapping) and feature.get("name") else f"#{index + 1}"

        def problem(field: str, message: str, label: str = label) -> None:
            problems.append({"feature": label, "field": field, "message": message})

        if not isinstance(feature, Mapping):
            problem("feature", "must be an object")
            continue
        name = feature.get("name")
        if not isinstance(name, str) or not name.strip() or not name.isprintable() or "=" in name:
            problem("name", "must be a non-empty name without '='")
        elif name in seen:
            problem("name", "is used by another feature")
        else:
            seen.add(name)
        if not isinstance(feature.get("description", ""), str):
            problem("description", "must be text")
        transform = feature.get("transform")
        if transform not in TRANSFORMS:
            problem("transform", f"must be one of {', '.join(TRANSFORMS)}")
            continue
        sources = sources_of(feature)
        if transform in _TWO_SOURCES:
            if len(sources) != 2 or not all(isinstance(source, str) for source in sources):
                problem("sources", f"{transform} needs two source columns")
                continue
        elif len(sources) != 1 or not isinstance(sources[0], str):
            problem("source", "needs one source column")
            continue
        for source in sources:
            if source not in schema:
                problem("source", f"column {source!r} is not in the data")
                continue
            kind = schema[source]
            if transform in _NUMERIC_TRANSFORMS + _TWO_SOURCES and kind not in NUMERIC_TYPES:
                problem("source", f"{transform} needs a numeric column; {source!r} is {kind}")
            elif transform in _TEXT_TRANSFORMS and kind != "string":
                problem("source", f"{transform} needs a text column; {source!r} is {kind}")
            elif transform == "date_part" and kind not in ("datetime", "string"):
                problem("source", f"date_part needs a date column; {source!r} is {kind}")
        _check_params(feature, problem)
    return problems


# -- reading columns ------------------------------------------------------------------------------------


def _is_arrow(values: Any) -> bool:
    return not isinstance(values, (list, tuple)) and type(values).__module__.startswith("pyarrow")


def _floats(values: Any) -> np.ndarray:
    """Numbers (or booleans) as float64 with NaN for missing, from a list or an arrow array."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        cast = pc.cast(values, pa.float64(), safe=False)
        return np.asarray(pc.fill_null(cast, math.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    return np.fromiter(
        (math.nan if value is None else float(value) for value in values), dtype=np.float64, count=len(values)
    )


def _codes(values: Any, index: Mapping[str, int]) -> np.ndarray:
    """Vocabulary positions: -1 for a missing value, -2 for one not in the vocabulary."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
        vocabulary = pa.array(sorted(index, key=index.__getitem__), type=pa.string())
        found = pc.index_in(text, value_set=vocabulary)
        codes = np.asarray(pc.fill_null(found, -2).to_numpy(zero_copy_only=False), dtype=np.int64)
        missing = np.asarray(pc.is_null(text).to_numpy(zero_copy_only=False), dtype=bool)
        codes[missing] = -1
        return codes
    return np.fromiter(
        (-1 if value is None else index.get(str(value), -2) for value in values), dtype=np.int64, count=len(values)
    )


def _datetimes(values: Any) -> np.ndarray:
    """datetime64[us] (UTC for aware values) with NaT for missing or unparseable values."""
    if _is_arrow(values):
        import pyarrow as pa
        import pyarrow.compute as pc

        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            values = _parse_text_dates(values.to_pylist())
            return values
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            if values.type.unit == "ns":
                values = pc.floor_temporal(values, unit="microsecond")
            values = pc.cast(values, pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us"))
        else:
            if pa.types.is_timestamp(values.type) and values.type.unit == "ns":
                values = pc.floor_temporal(values, unit="microsecond")  # as the row path drops nanoseconds
            values = pc.cast(values, pa.timestamp("us"))
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype="datetime64[us]")
    return _parse_text_dates(values)


def _parse_text_dates(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype="datetime64[us]")
    for position, value in enumerate(values):
        out[position] = _one_date(value)
    return out


def _one_date(value: Any) -> np.datetime64:
    if value is None:
        return np.datetime64("NaT", "us")
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return np.datetime64("NaT", "us")
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            try:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            except (OverflowError, ValueError):  # in UTC it would fall outside years 1 to 9999
                return np.datetime64("NaT", "us")
        return np.datetime64(value, "us")
    if isinstance(value, dt.date):
        return np.datetime64(value, "us")
    return np.datetime64("NaT", "us")


def _date_part(moments: np.ndarray, part: str, reference: str | None) -> np.ndarray:
    missing = np.isnat(moments)
    if part == "days_since":
        origin = np.datetime64(dt.date.fromisoformat(str(reference)), "us")
        result = (moments - origin) / np.timedelta64(1, "D")
    else:
        safe = np.where(missing, np.datetime64(0, "us"), moments)
        if part == "year":
            result = safe.astype("datetime64[Y]").astype(np.int64) + 1970
        elif part == "month":
            result = safe.astype("datetime64[M]").astype(np.int64) % 12 + 1
        elif part == "weekday":  # Monday 0 ... Sunday 6; 1970-01-01 was a Thursday
            result = (safe.astype("datetime64[D]").astype(np.int64) + 3) % 7
        else:
            result = safe.astype("datetime64[h]").astype(np.int64) % 24
        result = result.astype(np.float64)
    return np.where(missing, np.nan, result)


# -- fitting --------------------------------------------------------------------------------------------


def _finite_statistic(function: Any, values: np.ndarray) -> float:
    """mean, std or median of finite values that may overflow near the float64 limit: computed on values
    scaled down by their largest magnitude when the plain result is not finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = float(function(values))
        if not math.isfinite(result):
            scale = float(np.max(np.abs(values)))
            result = float(function(values / scale)) * scale
    return result if math.isfinite(result) else float(np.sign(result)) * float(np.finfo(np.float64).max)


def _vocabulary(values: Any, limit: int | None) -> list[str]:
    """Values by frequency (ties by value), at most `limit` of them; or all of them sorted."""
    counts: dict[str, int] = {}
    codes_source = values.to_pylist() if _is_arrow(values) else values
    for value in codes_source:
        if value is not None:
            key = str(value)
            counts[key] = counts.get(key, 0) + 1
    if limit is None:
        return sorted(counts)
    return [value for value, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:limit]]


def _fit_feature(feature: Mapping[str, Any], columns: Mapping[str, Any]) -> dict[str, Any]:
    transform = feature["transform"]
    params = dict(feature.get("params") or {})
    state: dict[str, Any] = {
        "name": feature["name"],
        "transform": transform,
        "sources": sources_of(feature),
        "params": params,
        "description": feature.get("description", ""),
    }
    source = state["sources"][0]
    if transform == "standardise":
        x = _floats(columns[source])
        present = x[~np.isnan(x)]
        mean = _finite_statistic(np.mean, present) if len(present) else 0.0
        std = _finite_statistic(np.std, present) if len(present) else 1.0
        state.update(mean=mean, std=std if std > 0 else 1.0)
    elif transform == "bucketise":
        if "edges" in params:
            state["edges"] = [float(edge) for edge in params["edges"]]
        else:
            x = _floats(columns[source])
            present = x[~np.isnan(x)]
            points = np.linspace(0, 1, params["quantiles"] + 1)[1:-1]
            edges = np.unique(np.quantile(present, points)) if len(present) else np.array([])
            state["edges"] = [float(edge) for edge in edges]
    elif transform == "one_hot":
        state["vocabulary"] = _vocabulary(columns[source], params.get("top_k", 10))
    elif transform == "ordinal":
        state["vocabulary"] = _vocabulary(columns[source], None)
    elif transform == "fill":
        if "value" in params:
            state["fill"] = float(params["value"])
        else:
            x = _floats(columns[source])
            present = x[~np.isnan(x)]
            if not len(present):
                state["fill"] = 0.0
            elif params["statistic"] == "mean":
                state["fill"] = _finite_statistic(np.mean, present)
            elif params["statistic"] == "median":
                state["fill"] = _finite_statistic(np.median, present)
            else:
                values, counts = np.unique(present, return_counts=True)
                state["fill"] = float(values[np.argmax(counts)])
    elif transform == "date_part":
        state["part"], state["reference"] = params["part"], params.get("reference")
    return state


def rows_that_cannot_be_transformed(
    features: Sequence[Mapping[str, Any]], columns: Mapping[str, Any], limit: int = 20
) -> tuple[list[dict[str, Any]], int]:
    """Values a transform turns into a missing value although one was given: a ratio's zero denominator,
    a date that does not parse. Returns the first `limit` as {"row" (from 1), "feature", "field", "message"}
    and the total count, so a job can report them row by row."""
    problems: list[dict[str, Any]] = []
    total = 0
    for feature in features:
        sources = feature.get("sources") or sources_of(feature)
        if any(source not in columns for source in sources):
            continue
        if feature["transform"] == "ratio":
            with np.errstate(invalid="ignore"):
                numerator, denominator = _floats(columns[sources[0]]), _floats(columns[sources[1]])
            bad = np.flatnonzero((denominator == 0) & ~np.isnan(numerator))
            field, message = sources[1], f"{sources[1]!r} is 0, so {feature['name']!r} is missing"
        elif feature["transform"] == "date_part":
            values = columns[sources[0]]
            given = ~np.asarray(_missing_mask(values), dtype=bool)
            bad = np.flatnonzero(given & np.isnat(_datetimes(values)))
            field, message = sources[0], f"{sources[0]!r} is not a date or time, so {feature['name']!r} is missing"
        else:
            continue
        total += len(bad)
        problems.extend(
            {"row": int(row) + 1, "feature": feature["name"], "field": field, "message": message}
            for row in bad[: max(limit - len(problems), 0)]
        )
    return problems, total


def _missing_mask(values: Any) -> Any:
    if _is_arrow(values):
        import pyarrow.compute as pc

        return pc.is_null(values).to_numpy(zero_copy_only=False)
    return [value is None for value in values]


def _describe_input(name: str, kind: str, values: Any) -> dict[str, Any]:
    """How a request must send one source column, learnt from the training values."""
    plain = values.to_pylist() if _is_arrow(values) else list(values)
    present = [value for value in plain if value is not None and not (isinstance(value, float) and math.isnan(value))]
    item: dict[str, Any] = {"name": name, "nullable": len(present) < len(plain)}
    if kind == "string":
        item.update(type="category", categories=sorted({str(value) for value in present}))
    elif kind == "datetime":
        item.update(type="datetime")
    elif kind == "boolean":
        item.update(type="boolean")
    else:
        numbers = [float(value) for value in present]
        item.update(
            type="integer" if kind == "integer" else "number",
            minimum=min(numbers, default=None),
            maximum=max(numbers, default=None),
        )
    return item


def _check_input(item: Mapping[str, Any], row: Mapping[str, Any]) -> str | None:
    name = item["name"]
    if name not in row:
        return "is required"
    value = row[name]
    if value is None:
        return None if item.get("nullable") else "must not be null"
    kind = item["type"]
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, not {type(value).__name__}"
        if not math.isfinite(value):
            return "must be a finite number"
    elif kind == "boolean":
        if not isinstance(value, bool):
            return f"must be true or false, not {type(value).__name__}"
    elif kind == "datetime":
        if not isinstance(value, str) or np.isnat(_one_date(value)):
            return "must be an ISO 8601 date or time, e.g. 2024-05-31T12:00:00"
    elif not isinstance(value, str):
        return f"must be text, not {type(value).__name__}"
    return None


def _outputs(state: Mapping[str, Any]) -> list[str]:
    if state["transform"] == "one_hot":
        return [f"{state['name']}={value}" for value in state["vocabulary"]] + [f"{state['name']}=other"]
    return [state["name"]]


# -- the compiled transformation ------------------------------------------------------------------------
# Features that share a transform run as one numpy call over a 2-D block of their columns: the same
# element-wise functions on the same float64 values give the same bits whether a block holds one row or
# a million, and one call per transform instead of one per feature is what keeps a one-row request cheap.
# Every single-column output is computed in float64 into a staging block (one row per output column) and
# rounded to float32 once, as it is stored in the matrix; one-hot columns are ones written into zeros.

_FLOAT_TRANSFORMS = (*_NUMERIC_TRANSFORMS, *_TWO_SOURCES)
# float64 constants as arrays: numpy converts a Python number to the same value, only more slowly
_MINUS_ONE, _ZERO, _NAN = (np.array(value, dtype=np.float64) for value in (-1.0, 0.0, math.nan))


def _all_plain(columns: Sequence[Any]) -> bool:
    return not any(_is_arrow(values) for values in columns)


class _Program:
    """The steps of one fitted feature set's transformation, built once from its frozen state.

    `run` reads each numeric source column once into `floats` (one row per source), each date column at
    most once, and lets every step write its outputs."""

    def __init__(self, features: Sequence[Mapping[str, Any]]) -> None:
        starts = list(itertools.accumulate((len(_outputs(feature)) for feature in features), initial=0))
        self.width = starts[-1]
        self.float_sources = sorted(
            {
                source
                for feature in features
                if feature["transform"] in _FLOAT_TRANSFORMS
                for source in feature["sources"]
            }
        )
        self._float_row = {source: row for row, source in enumerate(self.float_sources)}
        groups: dict[str, list[tuple[Mapping[str, Any], int]]] = {}
        for feature, start in zip(features, starts[:-1], strict=True):
            groups.setdefault(feature["transform"], []).append((feature, start))
        staged_columns: list[int] = []
        self.steps: list[Callable[..., None]] = []
        for transform, members in groups.items():
            if transform == "one_hot":
                self.steps.append(self._one_hot(members))
                continue
            block = slice(len(staged_columns), len(staged_columns) + len(members))
            staged_columns.extend(start for _, start in members)
            self.steps.append(getattr(self, f"_{transform}")([feature for feature, _ in members], block))
        self.staged_columns = np.array(staged_columns, dtype=np.intp)

    def run(self, columns: Mapping[str, Any], n_rows: int, *, plain: bool) -> np.ndarray:
        floats = self._read_floats(columns, n_rows, plain)
        staged = np.empty((len(self.staged_columns), n_rows), dtype=np.float64)
        matrix = np.zeros((n_rows, self.width), dtype=np.float32)
        dates: dict[str, np.ndarray] = {}
        for step in self.steps:
            step(columns, plain, floats, staged, matrix, dates)
        # float64 results are rounded to float32 as they are stored, exactly as astype would
        matrix[:, self.staged_columns] = staged.T
        return matrix

    def _read_floats(self, columns: Mapping[str, Any], n_rows: int, plain: bool) -> np.ndarray:
        values = [columns[source] for source in self.float_sources]
        if plain:  # one pass over every value of every column, as _floats reads each
            return np.fromiter(
                (math.nan if value is None else float(value) for column in values for value in column),
                dtype=np.float64,
                count=len(values) * n_rows,
            ).reshape(len(values), n_rows)
        floats = np.empty((len(values), n_rows), dtype=np.float64)
        for row, column in enumerate(values):
            floats[row] = _floats(column)
        return floats

    def _rows(self, features: Sequence[Mapping[str, Any]], position: int = 0) -> np.ndarray:
        return np.array([self._float_row[feature["sources"][position]] for feature in features], dtype=np.intp)

    # -- numeric transforms, on rows of `floats` --------------------------------------------------------

    def _passthrough(self, features, block):
        rows = self._rows(features)

        def step(columns, plain, floats, staged, matrix, dates):
            staged[block] = floats.take(rows, 0)

        return step

    def _standardise(self, features, block):
        rows = self._rows(features)
        means = np.array([[feature["mean"]] for feature in features], dtype=np.float64)
        stds = np.array([[feature["std"]] for feature in features], dtype=np.float64)

        def step(columns, plain, floats, staged, matrix, dates):
            staged[block] = (floats.take(rows, 0) - means) / stds

        return step

    def _clip(self, features, block):
        # np.clip per feature, with the bounds exactly as the definition gives them (integers included)
        bounds = [
            (
                self._float_row[feature["sources"][0]],
                feature["params"].get("min", -np.inf),
                feature["params"].get("max", np.inf),
            )
            for feature in features
        ]

        def step(columns, plain, floats, staged, matrix, dates):
            for offset, (row, low, high) in enumerate(bounds):
                staged[block.start + offset] = np.clip(floats[row], low, high)

        return step

    def _log1p(self, features, block):
        rows = self._rows(features)

        def step(columns, plain, floats, staged, matrix, dates):
            x = floats.take(rows, 0)
            valid = x > _MINUS_ONE  # log1p only ever sees values above -1
            staged[block] = np.where(valid, np.log1p(np.where(valid, x, _ZERO)), _NAN)

        return step

    def _bucketise(self, features, block):
        rows = self._rows(features)
        edges = [np.asarray(feature["edges"], dtype=np.float64) for feature in features]

        def step(columns, plain, floats, staged, matrix, dates):
            for offset, (row, feature_edges) in enumerate(zip(rows, edges, strict=True)):
                # bucket indexes are small integers: exact in float64
                staged[block.start + offset] = feature_edges.searchsorted(floats[row], "right")
            np.copyto(staged[block], _NAN, where=np.isnan(floats.take(rows, 0)))

        return step

    def _fill(self, features, block):
        rows = self._rows(features)
        fills = np.array([[feature["fill"]] for feature in features], dtype=np.float64)

        def step(columns, plain, floats, staged, matrix, dates):
            x = floats.take(rows, 0)
            staged[block] = np.where(np.isnan(x), fills, x)

        return step

    def _ratio(self, features, block):
        numerators, denominators = self._rows(features, 0), self._rows(features, 1)

        def step(columns, plain, floats, staged, matrix, dates):
            y = floats.take(denominators, 0)
            np.divide(floats.take(numerators, 0), y, out=staged[block])
            np.copyto(staged[block], _NAN, where=y == _ZERO)  # a zero denominator gives a missing value

        return step

    def _difference(self, features, block):
        lefts, rights = self._rows(features, 0), self._rows(features, 1)

        def step(columns, plain, floats, staged, matrix, dates):
            staged[block] = floats.take(lefts, 0) - floats.take(rights, 0)

        return step

    # -- transforms that read their source column themselves ------------------------------------------

    def _date_part(self, features, block):
        parts = [(feature["sources"][0], feature["part"], feature.get("reference")) for feature in features]

        def step(columns, plain, floats, staged, matrix, dates):
            for offset, (source, part, reference) in enumerate(parts):
                if source not in dates:
                    dates[source] = _datetimes(columns[source])
                staged[block.start + offset] = _date_part(dates[source], part, reference)

        return step

    def _missing_indicator(self, features, block):
        sources = [feature["sources"][0] for feature in features]

        def step(columns, plain, floats, staged, matrix, dates):
            values = [columns[source] for source in sources]
            if plain:
                staged[block] = np.fromiter(
                    (
                        value is None or (isinstance(value, float) and math.isnan(value))
                        for column in values
                        for value in column
                    ),
                    dtype=bool,
                    count=len(values) * staged.shape[1],
                ).reshape(len(values), -1)
                return
            import pyarrow.compute as pc

            for offset, column in enumerate(values):
                if _is_arrow(column):
                    missing = pc.is_null(column, nan_is_null=True).to_numpy(zero_copy_only=False)
                else:
                    missing = [value is None or (isinstance(value, float) and math.isnan(value)) for value in column]
                staged[block.start + offset] = np.asarray(missing, dtype=bool)

        return step

    def _ordinal(self, features, block):
        # positions in the sorted vocabulary; a missing or unseen value is NaN
        sources = [feature["sources"][0] for feature in features]
        indexes = [{value: position for position, value in enumerate(feature["vocabulary"])} for feature in features]

        def step(columns, plain, floats, staged, matrix, dates):
            values = [columns[source] for source in sources]
            if plain:
                staged[block] = np.fromiter(
                    (
                        math.nan if value is None else index.get(str(value), math.nan)
                        for index, column in zip(indexes, values, strict=True)
                        for value in column
                    ),
                    dtype=np.float64,
                    count=len(values) * staged.shape[1],
                ).reshape(len(values), -1)
                return
            for offset, (index, column) in enumerate(zip(indexes, values, strict=True)):
                codes = _codes(column, index)
                staged[block.start + offset] = np.where(codes >= 0, codes, np.nan)

        return step

    def _one_hot(self, members):
        # each value's column in the matrix; any other value has the last one, a missing value none
        specs = [
            (
                feature["sources"][0],
                {value: position for position, value in enumerate(feature["vocabulary"])},
                {value: start + position for position, value in enumerate(feature["vocabulary"])},
                start + len(feature["vocabulary"]),
                start,
            )
            for feature, start in members
        ]
        width = self.width

        def step(columns, plain, floats, staged, matrix, dates):
            values = [columns[spec[0]] for spec in specs]
            cells = matrix.reshape(-1)
            if plain:
                cells[
                    np.fromiter(
                        (
                            row * width + column_of.get(str(value), other)
                            for (_, _, column_of, other, _), column in zip(specs, values, strict=True)
                            for row, value in enumerate(column)
                            if value is not None
                        ),
                        dtype=np.intp,
                    )
                ] = 1.0
                return
            for (_, index, _, other, start), column in zip(specs, values, strict=True):
                codes = _codes(column, index)  # -1 missing, -2 unseen
                present = np.flatnonzero(codes != -1)
                found = codes[present]
                cells[present * width + np.where(found == -2, other, start + found)] = 1.0

        return step


class FittedPipeline:
    """A fitted feature set: frozen state, its definition's hash, and the one transformation."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.features: list[dict[str, Any]] = [dict(item) for item in state["features"]]
        self.definition_hash: str = state["definition_hash"]
        self.inputs: list[dict[str, Any]] = [dict(item) for item in state.get("inputs") or []]
        self.subject_key: str = state.get("subject_key", "")
        self.statistics: dict[str, dict[str, Any]] = dict(state.get("statistics") or {})
        self.output_names: list[str] = [name for feature in self.features for name in _outputs(feature)]
        self.source_columns: list[str] = sorted({source for f in self.features for source in f["sources"]})
        self._program = _Program(self.features)

    @classmethod
    def fit(
        cls,
        definition: list[dict[str, Any]],
        columns: Mapping[str, Any],
        schema: Mapping[str, str],
        *,
        subject_key: str = "",
    ) -> FittedPipeline:
        """Learn each feature's state from the training columns; refuse an invalid definition."""
        problems = validate_definition(definition, schema)
        if problems:
            raise DefinitionError(f"{len(problems)} problem(s) in the feature set.", problems)
        features = [_fit_feature(feature, columns) for feature in definition]
        sources = sorted({source for feature in definition for source in sources_of(feature)})
        pipeline = cls(
            {
                "features": features,
                "definition_hash": definition_hash(definition),
                "inputs": [_describe_input(name, schema[name], columns[name]) for name in sources],
                "subject_key": subject_key,
            }
        )
        duplicates = sorted({name for name in pipeline.output_names if pipeline.output_names.count(name) > 1})
        if duplicates:
            raise DefinitionError(
                "Output columns collide.",
                [
                    {"feature": name.split("=")[0], "field": "name", "message": f"output {name!r} is produced twice"}
                    for name in duplicates
                ],
            )
        pipeline.statistics = _statistics(pipeline.output_names, pipeline.transform_columns(columns))
        return pipeline

    def to_state(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "definition_hash": self.definition_hash,
            "statistics": self.statistics,
            "inputs": self.inputs,
            "subject_key": self.subject_key,
        }

    @property
    def names(self) -> list[str]:
        return self.output_names

    def describe(self, output_name: str, row: Mapping[str, Any]) -> tuple[str, Any]:
        """An output column's label for people (its description, or its name) and the request values behind it."""
        feature_name = output_name.partition("=")[0]  # a one-hot column speaks for its feature
        feature = next((item for item in self.features if item["name"] == feature_name), None)
        if feature is None:
            return output_name, None
        label = feature.get("description") or humanise(feature_name)
        values = [row.get(source) for source in feature["sources"]]
        if len(values) == 1:
            return label, values[0]
        return label, f" {'/' if feature['transform'] == 'ratio' else '-'} ".join(str(value) for value in values)

    # -- requests ------------------------------------------------------------------------------------

    def signature(self) -> list[dict[str, Any]]:
        """The source columns a request sends, typed; text inputs list the values seen in training."""
        return [dict(item) for item in self.inputs]

    def validate_rows(self, rows: Any) -> list[dict[str, Any]]:
        """Every problem with request rows, as {"row", "field", "message"}. Unseen text values are accepted:
        each transform has its policy for them (one_hot: "other"; ordinal: missing)."""
        allowed = {item["name"] for item in self.inputs} | ({self.subject_key} if self.subject_key else set())
        return validate_request_rows(
            rows,
            allowed=allowed,
            subject_key=self.subject_key,
            noun="input values",
            check=lambda row: [(item["name"], message) for item in self.inputs if (message := _check_input(item, row))],
        )

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FittedPipeline:
        return cls(state)

    # -- the one transformation ----------------------------------------------------------------------

    def transform_columns(self, columns: Mapping[str, Any]) -> np.ndarray:
        """Source columns (lists or arrow arrays) to the float32 matrix, in `output_names` order."""
        values = [columns[name] for name in self.source_columns]
        if len({len(column) for column in values}) > 1:
            raise ValueError("Source columns differ in length.")
        return self._transform(columns, plain=_all_plain(values))

    def transform_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        columns = {name: [row.get(name) for row in rows] for name in self.source_columns}
        return self._transform(columns, plain=True)

    def transform_table(self, table: Any) -> np.ndarray:
        return self._transform({name: table.column(name) for name in self.source_columns}, plain=False)

    def _transform(self, columns: Mapping[str, Any], *, plain: bool) -> np.ndarray:
        """`plain`: every source column is a Python sequence, none an arrow array."""
        n_rows = len(columns[self.source_columns[0]]) if self.source_columns else 0
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return self._program.run(columns, n_rows, plain=plain)


def _statistics(names: list[str], matrix: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per output column of the training matrix: the baseline monitoring compares live traffic with."""
    stats: dict[str, dict[str, Any]] = {}
    for position, name in enumerate(names):
        column = matrix[:, position].astype(np.float64)
        finite = column[np.isfinite(column)]
        entry: dict[str, Any] = {"count": len(column), "missing": int(len(column) - len(finite))}
        if len(finite):
            low, high = float(finite.min()), float(finite.max())
            try:
                counts, edges = np.histogram(finite, bins=1 if low == high else HISTOGRAM_BINS)
            except ValueError:  # a range too narrow to split at this magnitude: one bin
                counts, edges = np.array([len(finite)]), np.array([low, high])
            entry.update(
                mean=_finite_statistic(np.mean, finite),
                std=_finite_statistic(np.std, finite),
                min=low,
                max=high,
                histogram={"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
            )
        stats[name] = entry
    return stats
