"""Column statistics of a Parquet file for validation reports, one column at a time. No Django here.

`profile_parquet` reads a single column, summarises it and lets it go before reading the next, so memory is
bounded by the largest column, never the whole table. Every number in the result is JSON-safe: infinities
and NaN become None, and all values are plain Python ints, floats, strings or None.

Missing means null, and for floating point columns also NaN. Numeric statistics (min, max, mean, std,
quantiles) are taken over the values that are not missing, so an infinity can make one of them undefined
(None); the histogram only ever counts finite values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from apps.data.ingest import _logical_type

# Columns profiled at once: arrow's kernels release the GIL, so two threads use both cores of a small
# machine while memory stays bounded by two columns (and their working copies), never the table.
PROFILE_THREADS = 2
QUANTILES = {"p01": 0.01, "p05": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}


def profile_parquet(path: Path, *, histogram_bins: int = 20, top_k: int = 10) -> dict[str, dict[str, Any]]:
    """Statistics per column of the Parquet file at `path`, keyed by column name in schema order.

    Every column has `type` (integer, float, boolean, string or datetime), `count`, `missing` and
    `distinct`. Columns with values also get, by type: integer and float `min`, `max`, `mean`, `std`
    (population), `quantiles` (p01 to p99, linear interpolation, clamped to [min, max] against rounding)
    and `histogram` (`edges`, `counts`; one bin when all values are equal, None when none is finite);
    boolean `true` and `false`; string `top` (the `top_k` most frequent values, ties by value),
    `min_length` and `max_length` in characters; datetime `min` and `max` as ISO 8601 text.
    """
    import pyarrow.parquet as pq

    if histogram_bins < 1:
        raise ValueError("histogram_bins must be at least 1")
    if top_k < 0:
        raise ValueError("top_k must not be negative")
    from concurrent.futures import ThreadPoolExecutor

    names = pq.ParquetFile(path).schema_arrow.names

    def one(name: str) -> dict[str, Any]:
        # Each thread opens its own reader; arrow's kernels release the GIL, so columns profile in parallel
        # and memory stays bounded by a few columns at a time.
        column = read_column(pq.ParquetFile(path), name)
        return profile_column(column, histogram_bins=histogram_bins, top_k=top_k)

    with ThreadPoolExecutor(max_workers=PROFILE_THREADS) as pool:
        results = list(pool.map(one, names))
    return dict(zip(names, results, strict=True))


def read_column(parquet: Any, name: str) -> Any:
    """One column of an open `pyarrow.parquet.ParquetFile` as a ChunkedArray, dictionaries decoded."""
    import pyarrow as pa

    column = parquet.read(columns=[name]).column(0)
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column


def profile_column(column: Any, *, histogram_bins: int = 20, top_k: int = 10) -> dict[str, Any]:
    """The statistics `profile_parquet` gives for one column (a pyarrow Array or ChunkedArray)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], type=column.type)
    kind = _logical_type(column.type)
    if kind == "float":
        column = column.cast(pa.float64(), safe=False)
        present = column.filter(pc.invert(pc.is_nan(column)))  # filter also drops the nulls
    else:
        present = column.drop_null()
    stats: dict[str, Any] = {
        "type": kind,
        "count": len(column),
        "missing": len(column) - len(present),
        "distinct": None if kind == "string" and len(present) else _distinct(present),
    }
    if len(present) == 0:
        return stats
    if kind in ("integer", "float"):
        stats.update(_numeric(present, kind, histogram_bins))
    elif kind == "boolean":
        true = int(pc.sum(present).as_py() or 0)
        stats.update({"true": true, "false": len(present) - true})
    elif kind == "string":
        stats.update(_text(present, top_k))
        if stats["distinct"] is None and "top" not in stats:
            stats["distinct"] = _distinct(present)  # not text after all (binary, nested): counted, if it can be
    elif kind == "datetime":
        extremes = pc.min_max(present)
        stats.update({"min": _iso(extremes["min"]), "max": _iso(extremes["max"])})
    return stats


def _distinct(present: Any) -> int | None:
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(present) == 0:  # also covers columns of arrow's null type, which cannot be counted
        return 0
    try:
        return len(pc.unique(present))  # several times faster than count_distinct on large columns
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # nested types cannot be hashed
        return None


def _numeric(present: Any, kind: str, bins: int) -> dict[str, Any]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    extremes = pc.min_max(present)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    if kind == "integer":
        low, high = int(low), int(high)
    else:
        low, high = _finite(low), _finite(high)
    quantiles = pc.quantile(present, q=list(QUANTILES.values()), interpolation="linear").to_pylist()
    if extremes["min"].as_py() is not None:  # interpolation may round a hair outside the data: clamp it
        first, last = float(extremes["min"].as_py()), float(extremes["max"].as_py())
        quantiles = [min(max(value, first), last) for value in quantiles]
    stats: dict[str, Any] = {
        "min": low,
        "max": high,
        "mean": _finite(pc.mean(present).as_py()),
        "std": _finite(pc.stddev(present, ddof=0).as_py()),
        "quantiles": {key: _finite(value) for key, value in zip(QUANTILES, quantiles, strict=True)},
    }
    values = present.cast(pa.float64(), safe=False)  # large integers round, as in numpy
    values = (
        np.concatenate([chunk.to_numpy(zero_copy_only=False) for chunk in values.chunks])
        if values.num_chunks
        else np.empty(0)
    )
    del present
    values = values[np.isfinite(values)]
    if len(values) == 0:
        stats["histogram"] = None
        return stats
    first, last = float(values.min()), float(values.max())
    counts, edges = np.histogram(values, bins=1 if first == last else bins)
    stats["histogram"] = {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}
    return stats


def _text(present: Any, top_k: int) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(present.type) or pa.types.is_large_string(present.type)):
        try:
            present = present.cast(pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):  # binary that is not UTF-8, nested types
            return {}
    counted = pc.value_counts(present)
    table = pa.table({"value": counted.field("values"), "count": counted.field("counts")})
    keys = [("count", "descending"), ("value", "ascending")]
    # select_k is O(n log k): a column of a million distinct ids is not sorted whole for its top ten.
    top = pc.take(table, pc.select_k_unstable(table, k=top_k, sort_keys=keys)) if top_k else table.slice(0, 0)
    top = top.sort_by(keys)
    lengths = pc.min_max(pc.utf8_length(present))
    return {
        "distinct": len(counted),  # value_counts already found them: no second pass
        "top": top.to_pylist(),
        "min_length": int(lengths["min"].as_py()),
        "max_length": int(lengths["max"].as_py()),
    }


def _iso(scalar: Any) -> str:
    try:
        return scalar.as_py().isoformat()
    except (ValueError, OverflowError, AttributeError):  # outside Python's datetime range
        return str(scalar)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
