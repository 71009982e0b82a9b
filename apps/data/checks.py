"""Declarative data checks evaluated against a Parquet file, one column at a time. No Django here.

A check spec is a dict `{"kind", "column", "params", "severity"}`: `kind` is one of `KINDS`, `severity` is
"blocking" (a failure stops the data from being used) or "warning". `validate_check_spec` says what is wrong
with a spec before it is stored; `run_checks` evaluates specs and returns a `CheckResult` per spec, in order,
with a message a person can act on and the first failing data rows (1-based, counted across the whole file).

Columns are read one at a time and every check on a column runs before the next is read, so memory is
bounded by the largest column. Missing means null, and for floating point columns also NaN; only the
`not_null` and `max_missing_fraction` checks look at missing values, the others skip them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.data.ingest import _logical_type
from apps.data.profiling import read_column

KINDS = ("not_null", "unique", "range", "allowed_values", "regex", "max_missing_fraction", "row_count", "type")
SEVERITIES = ("blocking", "warning")
TYPES = ("integer", "float", "boolean", "string", "datetime")
MAX_FAILING_ROWS = 20
MAX_PATTERN_LENGTH = 500
MAX_LISTED_VALUES = 10
_PARAMS = {
    "not_null": (),
    "unique": (),
    "range": ("min", "max"),
    "allowed_values": ("values",),
    "regex": ("pattern",),
    "max_missing_fraction": ("fraction",),
    "row_count": ("min", "max"),
    "type": ("type",),
}


@dataclass
class CheckResult:
    """The outcome of one check: `failing_rows` holds the first failing data rows (1-based)."""

    kind: str
    column: str
    severity: str
    passed: bool
    message: str
    failing_rows: list[int] = field(default_factory=list)
    failing_count: int = 0


# -- validating specs ------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate_check_spec(kind: str, column: str, params: dict[str, Any] | None) -> dict[str, str]:
    """Problems with a check spec as field -> problem; empty when the spec is well formed.

    Fields are "kind", "column", "params" (for problems with the parameters as a whole, such as unknown
    keys) and the parameter names themselves ("min", "max", "values", "pattern", "fraction", "type").
    """
    if kind not in KINDS:
        return {"kind": f"unknown check {kind!r}; use one of {', '.join(KINDS)}"}
    problems: dict[str, str] = {}
    if column is not None and not isinstance(column, str):
        problems["column"] = "must be text"
    elif kind == "row_count":
        if column and column.strip():
            problems["column"] = "a row count check applies to the whole data; leave the column empty"
    elif not (column and column.strip()):
        problems["column"] = "name the column to check"
    if params is None:
        params = {}
    if not isinstance(params, dict):
        problems["params"] = "must be an object"
        return problems
    unknown = sorted(str(key) for key in params if key not in _PARAMS[kind])
    if unknown:
        allowed = ", ".join(_PARAMS[kind]) or "none"
        problems["params"] = f"unknown parameter {', '.join(map(repr, unknown))}; allowed: {allowed}"
    if kind == "range":
        _validate_bounds(params, problems, _is_number, "a finite number")
    elif kind == "row_count":
        _validate_bounds(params, problems, _is_count, "a whole number, zero or more")
    elif kind == "allowed_values":
        values = params.get("values")
        if not isinstance(values, list) or not values:
            problems["values"] = "give a non-empty list of values"
        elif not all(isinstance(value, str | int | float | bool) for value in values):
            problems["values"] = "each value must be text, a number or true/false"
    elif kind == "regex":
        pattern = params.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            problems["pattern"] = "give a regular expression"
        elif len(pattern) > MAX_PATTERN_LENGTH:
            problems["pattern"] = f"is longer than {MAX_PATTERN_LENGTH} characters"
        else:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems["pattern"] = f"is not a valid regular expression: {exc}"
    elif kind == "max_missing_fraction":
        fraction = params.get("fraction")
        if not _is_number(fraction) or not 0 <= fraction <= 1:
            problems["fraction"] = "give a number from 0 to 1"
    elif kind == "type" and params.get("type") not in TYPES:
        problems["type"] = f"give one of {', '.join(TYPES)}"
    return problems


def _validate_bounds(
    params: dict[str, Any], problems: dict[str, str], valid: Callable[[Any], bool], description: str
) -> None:
    given = [key for key in ("min", "max") if params.get(key) is not None]
    if not given:
        problems["params"] = "give at least one of min and max"
        return
    for key in given:
        if not valid(params[key]):
            problems[key] = f"must be {description}"
    if len(given) == 2 and "min" not in problems and "max" not in problems and params["min"] > params["max"]:
        problems["min"] = "must not be greater than max"


# -- running checks --------------------------------------------------------------------------------


def run_checks(path: Path, specs: list[dict[str, Any]]) -> list[CheckResult]:
    """Evaluate `specs` against the Parquet file at `path`; one result per spec, in the specs' order.

    A spec that is ill formed, or names a column the data lacks, gives a failed result rather than an
    exception; a spec without a valid severity counts as blocking.
    """
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    row_count = parquet.metadata.num_rows
    results: list[CheckResult | None] = [None] * len(specs)
    by_column: dict[str, list[int]] = {}
    for index, spec in enumerate(specs):
        kind, column = spec.get("kind"), spec.get("column") or ""
        params = spec.get("params") or {}
        severity = spec.get("severity") or "blocking"
        problems = validate_check_spec(kind, column, params)
        if severity not in SEVERITIES:
            problems["severity"] = f"give one of {', '.join(SEVERITIES)}"
            severity = "blocking"
        if problems:
            detail = "; ".join(f"{name}: {problem}" for name, problem in problems.items())
            results[index] = CheckResult(str(kind), str(column), severity, False, f"the check is ill formed ({detail})")
        elif kind == "row_count":
            results[index] = _row_count(row_count, params, severity)
        elif column not in schema.names:
            results[index] = CheckResult(kind, column, severity, False, f"column {column!r} is not in the data")
        elif kind == "type":
            results[index] = _type(schema.field(column).type, column, params, severity)
        else:
            by_column.setdefault(column, []).append(index)
    for column, indices in by_column.items():
        values = read_column(parquet, column)
        for index in indices:
            spec = specs[index]
            severity = spec.get("severity") or "blocking"
            results[index] = _column_check(values, spec["kind"], column, spec.get("params") or {}, severity)
        del values
    return [result for result in results if result is not None]


def blocking_failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    """The failed results whose severity is blocking."""
    return [result for result in results if not result.passed and result.severity == "blocking"]


def _row_count(rows: int, params: dict[str, Any], severity: str) -> CheckResult:
    low, high = params.get("min"), params.get("max")
    has = f"the data has {_plural(rows, 'row')}"
    if low is not None and rows < low:
        return CheckResult("row_count", "", severity, False, f"{has}; at least {low} required")
    if high is not None and rows > high:
        return CheckResult("row_count", "", severity, False, f"{has}; at most {high} allowed")
    bounds = [f"at least {low}" if low is not None else "", f"at most {high}" if high is not None else ""]
    return CheckResult("row_count", "", severity, True, f"{has}; {' and '.join(b for b in bounds if b)} required")


def _type(arrow_type: Any, column: str, params: dict[str, Any], severity: str) -> CheckResult:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    actual, expected = _logical_type(arrow_type), params["type"]
    if actual != expected:
        return CheckResult("type", column, severity, False, f"{column!r} is {actual}, expected {expected}")
    return CheckResult("type", column, severity, True, f"{column!r} is {actual}")


def _column_check(values: Any, kind: str, column: str, params: dict[str, Any], severity: str) -> CheckResult:
    import pyarrow as pa

    check = {
        "not_null": _not_null,
        "unique": _unique,
        "range": _range,
        "allowed_values": _allowed_values,
        "regex": _regex,
        "max_missing_fraction": _max_missing_fraction,
    }[kind]
    try:
        passed, message, mask = check(values, column, params)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        message = f"{column!r} holds {values.type}, which a {kind} check cannot handle ({exc})"
        return CheckResult(kind, column, severity, False, message)
    count, rows = _failing(mask) if mask is not None else (0, [])
    return CheckResult(kind, column, severity, passed, message, rows, count)


def _failing(mask: Any) -> tuple[int, list[int]]:
    """How many rows `mask` (a boolean ChunkedArray) marks, and the first of them as 1-based row numbers."""
    import pyarrow.compute as pc

    count, rows, offset = 0, [], 0
    for chunk in mask.chunks:
        marked = int(pc.sum(chunk).as_py() or 0)
        if marked and len(rows) < MAX_FAILING_ROWS:
            found = pc.indices_nonzero(chunk).slice(0, MAX_FAILING_ROWS - len(rows)).to_pylist()
            rows.extend(offset + index + 1 for index in found)
        count += marked
        offset += len(chunk)
    return count, rows


def _missing(values: Any) -> Any:
    import pyarrow.compute as pc

    if _logical_type(values.type) == "float" and not _is_decimal(values.type):
        return pc.or_kleene(pc.is_null(values), pc.fill_null(pc.is_nan(values), False))
    return pc.is_null(values)


def _is_decimal(arrow_type: Any) -> bool:
    import pyarrow as pa

    return pa.types.is_decimal(arrow_type)


def _not_null(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    mask = _missing(values)
    count = _count(mask)
    if count:
        return False, f"{_plural(count, 'row')} {_verb(count, 'has', 'have')} no value in {column!r}", mask
    return True, f"every row has a value in {column!r}", mask


def _unique(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    """Every occurrence of a value after its first is a duplicate; missing values are never duplicates."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    present = pc.invert(_missing(values))
    kept = values.filter(present)
    if len(pc.unique(kept)) == len(kept):  # the common case, without building the position table
        return True, f"{column!r} has no duplicated values", pc.and_(present, pa.scalar(False))
    positions = pa.chunked_array([pa.array(np.arange(len(values), dtype=np.int64))])
    table = pa.table({"value": values, "position": positions}).filter(present)
    firsts = table.group_by("value", use_threads=False).aggregate([("position", "min")])["position_min"]
    mask = pc.and_(present, pc.invert(pc.is_in(positions, value_set=firsts.combine_chunks())))
    count = _count(mask)
    if count:
        return False, f"{column!r} has {_plural(count, 'duplicated value')}", mask
    return True, f"{column!r} has no duplicated values", mask


def _range(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    import pyarrow.compute as pc

    kind = _logical_type(values.type)
    if kind not in ("integer", "float"):
        return False, f"{column!r} is {kind}; a range check needs numbers", None
    low, high = params.get("min"), params.get("max")
    outside = [pc.less(values, low)] if low is not None else []
    outside += [pc.greater(values, high)] if high is not None else []
    mask = pc.fill_null(outside[0] if len(outside) == 1 else pc.or_(*outside), False)
    if low is not None and high is not None:
        where, within = f"outside [{_show(low)}, {_show(high)}]", f"within [{_show(low)}, {_show(high)}]"
    elif low is not None:
        where, within = f"below {_show(low)}", f"at least {_show(low)}"
    else:
        where, within = f"above {_show(high)}", f"at most {_show(high)}"
    count = _count(mask)
    if count:
        return False, f"{_plural(count, 'value')} of {column!r} {_verb(count, 'is', 'are')} {where}", mask
    return True, f"every value of {column!r} is {within}", mask


def _allowed_values(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    allowed = params["values"]
    castable = []
    for value in allowed:  # values that cannot be this column's type can never match, so are left out
        try:
            castable.append(pa.array([value]).cast(values.type).to_pylist()[0])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OverflowError):
            continue
    value_set = pa.array(castable, type=values.type)
    mask = pc.and_(pc.invert(_missing(values)), pc.invert(pc.is_in(values, value_set=value_set)))
    mask = pc.fill_null(mask, False)
    listed = ", ".join(_show(value) for value in allowed[:MAX_LISTED_VALUES])
    if len(allowed) > MAX_LISTED_VALUES:
        listed += f" and {len(allowed) - MAX_LISTED_VALUES} more"
    count = _count(mask)
    if count:
        return False, f"{_plural(count, 'value')} of {column!r} {_verb(count, 'is', 'are')} not among {listed}", mask
    return True, f"every value of {column!r} is among {listed}", mask


def _regex(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    """Search semantics (like `re.search`): anchor the pattern with ^ and $ to match whole values.

    pyarrow evaluates the pattern with RE2; a pattern RE2 cannot compile (lookarounds, backreferences) is
    evaluated with Python's `re`, one chunk of the column at a time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = _logical_type(values.type)
    if kind != "string":
        return False, f"{column!r} is {kind}; a regex check needs text", None
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    pattern = params["pattern"]
    try:
        matches = pc.match_substring_regex(values, pattern=pattern)
    except pa.ArrowInvalid:
        compiled = re.compile(pattern)
        matches = pa.chunked_array(
            [
                pa.array([None if text is None else bool(compiled.search(text)) for text in chunk.to_pylist()])
                for chunk in values.chunks
            ],
            type=pa.bool_(),
        )
    mask = pc.fill_null(pc.invert(matches), False)
    count = _count(mask)
    if count:
        return False, f"{_plural(count, 'value')} of {column!r} {_verb(count, 'does', 'do')} not match {pattern}", mask
    return True, f"every value of {column!r} matches {pattern}", mask


def _max_missing_fraction(values: Any, column: str, params: dict[str, Any]) -> tuple[bool, str, Any]:
    mask = _missing(values)
    missing, allowed = _count(mask), params["fraction"]
    share = missing / len(values) if len(values) else 0.0
    message = f"{_percent(share)} of {column!r} is missing; at most {_percent(allowed)} allowed"
    return share <= allowed, message, mask


def _count(mask: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(mask).as_py() or 0)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _verb(count: int, singular: str, plural: str) -> str:
    return singular if count == 1 else plural


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, str) else str(value)


def _percent(fraction: float) -> str:
    text = f"{fraction * 100:.2f}".rstrip("0").rstrip(".")
    if text == "0" and fraction > 0:
        return "less than 0.01%"
    return f"{text}%"
