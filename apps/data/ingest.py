"""Reading uploads into Parquet, with schema and column statistics. No Django here.

Problems are reported as `IngestError` with a list of `{"row", "column", "message"}` items so a person
knows exactly what to fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOP_VALUES = 5


class IngestError(Exception):
    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass
class IngestResult:
    row_count: int
    schema: list[dict[str, Any]]
    statistics: dict[str, dict[str, Any]] = field(default_factory=dict)


def _logical_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    return "string"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def column_statistics(table: Any) -> dict[str, dict[str, Any]]:
    """Count, missing, distinct; min/max/mean/std for numbers; the most frequent values for the rest."""
    import pyarrow.compute as pc

    stats: dict[str, dict[str, Any]] = {}
    for name in table.column_names:
        column = table.column(name)
        kind = _logical_type(column.type)
        entry: dict[str, Any] = {
            "type": kind,
            "count": len(column),
            "missing": column.null_count,
            "distinct": pc.count_distinct(column).as_py(),
        }
        if kind in ("integer", "float") and len(column) > column.null_count:
            entry["min"] = _finite(pc.min(column).as_py())
            entry["max"] = _finite(pc.max(column).as_py())
            entry["mean"] = _finite(pc.mean(column).as_py())
            entry["std"] = _finite(pc.stddev(column).as_py())
        elif kind == "string":
            counts = pc.value_counts(column).to_pylist()
            counts.sort(key=lambda item: (-item["counts"], str(item["values"])))
            entry["top"] = [
                {"value": item["values"], "count": item["counts"]}
                for item in counts[:TOP_VALUES]
                if item["values"] is not None
            ]
        stats[name] = entry
    return stats


def table_schema(table: Any) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": _logical_type(f.type), "nullable": table.column(f.name).null_count > 0}
        for f in table.schema
    ]


def _check_header(names: list[str]) -> None:
    problems = []
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            problems.append({"row": 1, "column": position, "message": "empty column name"})
        elif name in seen:
            problems.append(
                {"row": 1, "column": position, "message": f"duplicate column name {name!r} (also column {seen[name]})"}
            )
        else:
            seen[name] = position
    if problems:
        raise IngestError("The header row has problems.", problems)


def _ragged_rows(source: Path, limit: int = 20) -> list[dict[str, Any]]:
    """Rows whose field count differs from the header's, with their line numbers (first `limit`, and a total)."""
    import csv

    problems: list[dict[str, Any]] = []
    total = 0
    with open(source, newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle)
        width = len(next(reader, []))
        for fields in reader:
            if fields and len(fields) != width:
                total += 1
                if len(problems) < limit:
                    problems.append(
                        {
                            "row": reader.line_num,
                            "column": None,
                            "message": f"has {len(fields)} fields; the header has {width}",
                        }
                    )
    if total > limit:
        problems.append({"row": None, "column": None, "message": f"{total} rows in all have the wrong field count"})
    return problems


def read_csv(source: Path) -> Any:
    """Read a CSV file into an Arrow table, refusing malformed files with the row and column at fault."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(source, "rb") as handle:
        head = handle.read(64 * 1024)
    if not head.strip():
        raise IngestError("The file is empty.")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not just a multi-byte character cut by the sample
            raise IngestError(f"The file is not UTF-8 (invalid byte at offset {exc.start}).") from None
    header_line = head.splitlines()[0].decode("utf-8", errors="replace")
    import csv

    _check_header(next(csv.reader([header_line])))
    try:
        table = pacsv.read_csv(
            source,
            read_options=pacsv.ReadOptions(use_threads=True),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise IngestError(f"The CSV could not be parsed: {exc}", _ragged_rows(source)) from None
    if table.num_rows == 0:
        raise IngestError("The file has a header but no data rows.")
    for position, column in enumerate(table.schema):
        if pa.types.is_null(column.type):  # an all-empty column: keep it, typed as nullable text
            table = table.set_column(position, column.name, table.column(position).cast(pa.string()))
    return table


def write_parquet(table: Any, target: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, target, compression="zstd")


def ingest_csv(source: Path, target: Path) -> IngestResult:
    """Read `source` (CSV), write `target` (Parquet, zstd) and describe it."""
    table = read_csv(source)
    write_parquet(table, target)
    return IngestResult(row_count=table.num_rows, schema=table_schema(table), statistics=column_statistics(table))
