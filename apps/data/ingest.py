"""Reading uploads into Parquet, in bounded memory. No Django here.

A CSV, Parquet or JSON Lines file is read in blocks and written block by block into a zstd Parquet file,
so memory is bounded by the block size, not the file. CSV types are inferred by pyarrow from the first
block; when a later block disagrees (an integer column meets "1.5"), that column is widened and the file
is read again, so types always fit every row.

Problems are reported as `IngestError` with `{"row", "column", "message"}` items so a person knows exactly
what to fix.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Files are read in blocks of READ_BLOCK_SIZE; a row longer than a block is read again with blocks of
# MAX_ROW_BYTES, the longest row accepted. Small blocks keep the CSV reader's memory low.
READ_BLOCK_SIZE = 1024 * 1024
MAX_ROW_BYTES = 8 * 1024 * 1024
# Rows gathered into one Parquet row group: fewer, larger groups compress better and read faster.
ROW_GROUP_ROWS = 128 * 1024
MAX_LISTED_PROBLEMS = 20
FORMATS = ("csv", "parquet", "jsonl")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_DELIMITERS = ",;\t|"
_CONVERSION = re.compile(r"In CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+)")


class IngestError(Exception):
    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


@dataclass
class SourceOptions:
    format: str | None = None
    delimiter: str | None = None
    encoding: str | None = None


@dataclass
class IngestResult:
    row_count: int
    schema: list[dict[str, Any]]
    source_format: str
    details: dict[str, Any] = field(default_factory=dict)


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


def arrow_schema_to_list(schema: Any, nullable: dict[str, bool] | None = None) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": _logical_type(f.type), "nullable": bool((nullable or {}).get(f.name, False))}
        for f in schema
    ]


def schema_changes(parent: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Columns added, removed and retyped from `parent` to `new`; removing or retyping breaks consumers."""
    old_types = {column["name"]: column["type"] for column in parent}
    new_types = {column["name"]: column["type"] for column in new}
    changes = {
        "added": [name for name in new_types if name not in old_types],
        "removed": [name for name in old_types if name not in new_types],
        "retyped": [
            {"name": name, "from": old_types[name], "to": new_types[name]}
            for name in new_types
            if name in old_types and old_types[name] != new_types[name]
        ],
    }
    changes["breaking"] = bool(changes["removed"] or changes["retyped"])
    return changes


# -- detection -------------------------------------------------------------------------------------


def detect_format(path: Path, name: str, declared: str | None) -> str:
    """The file's format from its declared format or name, refused when the content says otherwise."""
    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    if not head.strip():
        raise IngestError("The file is empty.")
    suffix = Path(name).suffix.lower()
    fmt = declared or _EXTENSIONS.get(suffix)
    if fmt is None:
        raise IngestError(f"Cannot tell the format of {name!r}: name it .csv, .parquet or .jsonl, or declare it.")
    if fmt not in FORMATS:
        raise IngestError(f"Unknown format {fmt!r}; use one of {', '.join(FORMATS)}.")
    is_parquet = head[:4] == b"PAR1"
    if fmt == "parquet" and not is_parquet:
        raise IngestError(f"{name} is not a Parquet file (it lacks the PAR1 signature).")
    if fmt != "parquet":
        if is_parquet:
            raise IngestError(f"{name} is a Parquet file, not {fmt.upper()}; name it .parquet.")
        if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise IngestError(f"{name} is a binary file, not {fmt.upper()} text.")
    return fmt


def _detect_encoding(head: bytes, declared: str | None) -> str:
    if declared:
        try:
            head.decode(declared, errors="strict") if declared.lower().replace("-", "") != "utf8" else None
        except LookupError:
            raise IngestError(f"Unknown encoding {declared!r}.") from None
        except UnicodeDecodeError:
            pass  # a sample may cut a character; the reader reports real problems with their position
        return declared
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4 or len(head) < 64 * 1024:  # not a character cut by the sample's end
            line = head[: exc.start].count(b"\n") + 1
            raise IngestError(
                "The file is not UTF-8; declare its encoding (for example latin-1).",
                [{"row": line, "column": None, "message": f"invalid UTF-8 byte at offset {exc.start}"}],
            ) from None
    return "utf-8"


def _detect_delimiter(sample: str, declared: str | None) -> str:
    if declared:
        if len(declared) != 1:
            raise IngestError(f"The delimiter must be one character, not {declared!r}.")
        return declared
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _check_header(names: list[str]) -> None:
    problems = []
    seen: dict[str, int] = {}
    for position, name in enumerate(names, start=1):
        if not name.strip():
            problems.append({"row": 1, "column": position, "message": "empty column name"})
        elif not (name.isascii() and name.isprintable()):
            problems.append(
                {
                    "row": 1,
                    "column": position,
                    "message": f"column name {name!r} has characters outside printable ASCII",
                }
            )
        elif name in seen:
            problems.append(
                {"row": 1, "column": position, "message": f"duplicate column name {name!r} (also column {seen[name]})"}
            )
        else:
            seen[name] = position
    if problems:
        raise IngestError("The header row has problems.", problems)


# -- reading ---------------------------------------------------------------------------------------


class _Widen(Exception):
    def __init__(self, column: int, failed_type: str) -> None:
        self.column = column
        self.failed_type = failed_type


def _csv_problems(path: Path, delimiter: str, encoding: str) -> list[dict[str, Any]]:
    """Rows whose field count differs from the header's, unterminated quotes and oversized fields, by line."""
    problems: list[dict[str, Any]] = []
    total = 0
    previous_limit = csv.field_size_limit(MAX_ROW_BYTES)
    try:
        with open(path, newline="", encoding=encoding, errors="replace") as handle:
            reader = csv.reader(handle, delimiter=delimiter, strict=True)
            width = len(next(reader, []))
            while True:
                start = reader.line_num + 1
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    total += 1
                    problems.append(
                        {"row": start, "column": None, "message": f"cannot be read ({exc}); is a quote left open?"}
                    )
                    break
                if fields and len(fields) != width:
                    total += 1
                    if len(problems) < MAX_LISTED_PROBLEMS:
                        problems.append(
                            {
                                "row": start,
                                "column": None,
                                "message": f"has {len(fields)} fields; the header has {width}",
                            }
                        )
    finally:
        csv.field_size_limit(previous_limit)
    if total > len(problems):
        problems.append({"row": None, "column": None, "message": f"{total} rows in all have problems"})
    return problems


def _csv_batches(
    path: Path, options: SourceOptions, types: dict[str, Any], on_bytes: Callable[[int], None], block_size: int
) -> tuple[Any, Iterator[Any], dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    with open(path, "rb") as handle:
        head = handle.read(64 * 1024)
    encoding = _detect_encoding(head, options.encoding)
    sample = head.decode(encoding, errors="replace").lstrip("\ufeff")
    delimiter = _detect_delimiter(sample, options.delimiter)
    header = next(csv.reader([sample.splitlines()[0] if sample.splitlines() else ""], delimiter=delimiter), [])
    _check_header(header)
    if _quote_count(path) % 2:
        raise IngestError("A quoted field is never closed.", _csv_problems(path, delimiter, encoding))
    handle = open(path, "rb")  # noqa: SIM115 -- closed by the generator below
    try:
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=block_size, encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        handle.close()
        raise _translate(exc, path, delimiter, encoding, block_size) from None

    def translate(exc: Exception) -> Exception:
        return _translate(exc, path, delimiter, encoding, block_size)

    return reader.schema, _stream(reader, handle, on_bytes, translate), {"delimiter": delimiter, "encoding": encoding}


def _quote_count(path: Path) -> int:
    count = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(MAX_ROW_BYTES):
            count += chunk.count(b'"')
    return count


def _invalid_text(batch: Any, fmt: str) -> None:
    """pyarrow reads undecodable text as binary; name the column and the first row instead."""
    import pyarrow as pa

    for name, array in zip(batch.schema.names, batch.columns, strict=True):
        if pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type):
            for index, value in enumerate(array.to_pylist()):
                try:
                    if value is not None:
                        value.decode("utf-8")
                except UnicodeDecodeError:
                    raise IngestError(
                        f"Column {name!r} has text that is not UTF-8; declare the file's encoding.",
                        [{"row": None, "column": name, "message": f"value {index + 1} of a block is not UTF-8"}],
                    ) from None
            raise IngestError(f"Column {name!r} holds binary data, which {fmt.upper()} uploads cannot carry.")


def _stream(
    reader: Any, handle: Any, on_bytes: Callable[[int], None], translate: Callable[[Exception], Exception]
) -> Iterator[Any]:
    """The batches of an arrow streaming reader, reporting bytes read; closes the file when done."""
    import pyarrow as pa

    try:
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise translate(exc) from None
            on_bytes(handle.tell())
            yield batch
    finally:
        handle.close()


class _Grow(Exception):
    """A row did not fit in a reading block: read again with blocks of MAX_ROW_BYTES."""


def _translate(exc: Exception, path: Path, delimiter: str, encoding: str, block_size: int) -> Exception:
    text = str(exc)
    match = _CONVERSION.search(text)
    if match:
        return _Widen(int(match.group(1)), match.group(2))
    if "straddling" in text or "straddles" in text:
        if block_size < MAX_ROW_BYTES:
            return _Grow()
        problems = _csv_problems(path, delimiter, encoding)
        limit = MAX_ROW_BYTES
        size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
        return IngestError(f"A row or field is larger than {size}, the most a row may hold.", problems)
    if "UTF8" in text or "decode" in text.lower():
        return IngestError(f"The file is not valid {encoding}; declare its encoding.")
    return IngestError(f"The CSV could not be parsed: {text}", _csv_problems(path, delimiter, encoding))


def _parquet_batches(path: Path, on_bytes: Callable[[int], None]) -> tuple[Any, Iterator[Any], dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"The Parquet file is truncated or damaged: {exc}") from None
    _check_header(parquet.schema_arrow.names)
    total = max(parquet.metadata.num_row_groups, 1)

    def batches() -> Iterator[Any]:
        try:
            for index in range(parquet.metadata.num_row_groups):
                yield from parquet.read_row_group(index).to_batches()
                on_bytes(int((index + 1) / total * path.stat().st_size))
        except (pa.ArrowInvalid, OSError) as exc:
            raise IngestError(f"The Parquet file is truncated or damaged: {exc}") from None

    return parquet.schema_arrow, batches(), {}


def _jsonl_batches(path: Path, on_bytes: Callable[[int], None]) -> tuple[Any, Iterator[Any], dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.json as pajson

    handle = open(path, "rb")  # noqa: SIM115 -- closed by the generator below
    try:
        reader = pajson.open_json(handle, read_options=pajson.ReadOptions(block_size=MAX_ROW_BYTES))
    except pa.ArrowInvalid as exc:
        handle.close()
        raise IngestError(f"The JSON Lines file could not be parsed: {exc}") from None
    _check_header(reader.schema.names)

    def translate(exc: Exception) -> Exception:
        return IngestError(f"The JSON Lines file could not be parsed: {exc}")

    return reader.schema, _stream(reader, handle, on_bytes, translate), {}


_WIDER = {"int64": "double", "double": "string", "bool": "string", "null": "string", "timestamp": "string"}


def _widened(current: str) -> Any:
    import pyarrow as pa

    key = "timestamp" if current.startswith("timestamp") else current
    return pa.float64() if _WIDER.get(key, "string") == "double" else pa.string()


# -- writing ---------------------------------------------------------------------------------------


def _normalise(batch: Any) -> Any:
    """All-empty columns become nullable text; everything else keeps its type."""
    import pyarrow as pa

    columns = []
    for column in batch.columns:
        columns.append(column.cast(pa.string()) if pa.types.is_null(column.type) else column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def write_version(
    source: Path,
    name: str,
    target: Path,
    options: SourceOptions | None = None,
    *,
    parent: Path | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> IngestResult:
    """Read `source` and write `target` (Parquet, zstd); with `parent`, the parent's rows come first.

    Raises IngestError naming the rows and columns at fault. `on_progress` gets the fraction of the
    upload read. Appending needs the same columns with the same types as the parent.
    """

    options = options or SourceOptions()
    fmt = detect_format(source, name, options.format)
    size = max(source.stat().st_size, 1)

    def report(position: int) -> None:
        if on_progress is not None:
            on_progress(min(position / size, 1.0))

    types: dict[str, Any] = {}
    block_size = READ_BLOCK_SIZE
    for _attempt in range(64):
        try:
            if fmt == "csv":
                schema, batches, details = _csv_batches(source, options, types, report, block_size)
            elif fmt == "parquet":
                schema, batches, details = _parquet_batches(source, report)
            else:
                schema, batches, details = _jsonl_batches(source, report)
            return _write(schema, batches, details, fmt, target, parent)
        except _Widen as widen:
            column = schema.names[widen.column]
            current = str(types.get(column, widen.failed_type))
            types[column] = _widened(current)
            if current == "string":
                raise IngestError(f"Column {column!r} cannot be read as text.") from None
        except _Grow:
            block_size = MAX_ROW_BYTES
    raise IngestError("The column types could not be settled.")  # pragma: no cover - 64 widenings


def parquet_writer(target: Path, schema: Any) -> Any:
    """The one Parquet writer configuration of versions: zstd, and dictionaries for text columns only
    (a dictionary of mostly distinct numbers is as large as the numbers)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]
    return pq.ParquetWriter(target, schema, compression="zstd", use_dictionary=text or False)


def _write(
    schema: Any, batches: Iterator[Any], details: dict[str, Any], fmt: str, target: Path, parent: Path | None
) -> IngestResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    rows = 0
    nulls: dict[str, int] = {}
    pending: list[Any] = []
    pending_rows = 0
    parent_file = pq.ParquetFile(parent) if parent is not None else None

    # Compression runs on a second thread while the next blocks are parsed; at most one row group waits.
    compressing = ThreadPoolExecutor(max_workers=1)
    in_flight: list[Any] = []

    def flush() -> None:
        nonlocal pending, pending_rows
        if pending:
            if in_flight:
                in_flight.pop().result()
            in_flight.append(compressing.submit(writer.write_table, pa.Table.from_batches(pending)))
            pending, pending_rows = [], 0

    try:
        for batch in batches:
            _invalid_text(batch, fmt)
            batch = _normalise(batch)
            if writer is None:
                out_schema = batch.schema
                if parent_file is not None:
                    _check_append(parent_file.schema_arrow, out_schema)
                    out_schema = parent_file.schema_arrow
                writer = parquet_writer(target, out_schema)
                if parent_file is not None:
                    for index in range(parent_file.metadata.num_row_groups):
                        group = parent_file.read_row_group(index)
                        writer.write_table(group)
                        rows += group.num_rows
                        for column in group.column_names:
                            nulls[column] = nulls.get(column, 0) + group.column(column).null_count
            if parent_file is not None:
                batch = batch.select(out_schema.names).cast(out_schema)
            if batch.num_rows:
                pending.append(batch)
                pending_rows += batch.num_rows
                rows += batch.num_rows
                for column, array in zip(batch.schema.names, batch.columns, strict=True):
                    nulls[column] = nulls.get(column, 0) + array.null_count
                if pending_rows >= ROW_GROUP_ROWS:
                    flush()
        if writer is not None:
            flush()
            if in_flight:
                in_flight.pop().result()
    finally:
        compressing.shutdown(wait=True)
        if writer is not None:
            writer.close()
    if writer is None or rows == (parent_file.metadata.num_rows if parent_file is not None else 0):
        raise IngestError("The file has a header but no data rows.")
    written = pq.read_schema(target)
    return IngestResult(
        row_count=rows,
        schema=arrow_schema_to_list(written, {k: v > 0 for k, v in nulls.items()}),
        source_format=fmt,
        details=details,
    )


def _check_append(parent_schema: Any, new_schema: Any) -> None:
    old = {f.name: _logical_type(f.type) for f in parent_schema}
    new = {f.name: _logical_type(f.type) for f in new_schema}
    if old != new:
        changes = schema_changes(arrow_schema_to_list(parent_schema), arrow_schema_to_list(new_schema))
        problems = (
            [{"row": None, "column": name, "message": "is not in the parent version"} for name in changes["added"]]
            + [
                {"row": None, "column": name, "message": "is missing; the parent version has it"}
                for name in changes["removed"]
            ]
            + [
                {
                    "row": None,
                    "column": item["name"],
                    "message": f"is {item['to']}; the parent version's is {item['from']}",
                }
                for item in changes["retyped"]
            ]
        )
        raise IngestError("An appended file needs the parent version's columns and types.", problems)
