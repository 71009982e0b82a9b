"""Batch scoring: rows from a Parquet file in, their scores out as Parquet or CSV, one chunk at a time.

No Django here: the worker's service hands over a loaded model, the input's path and a callback that renews
the job's lease. Memory is bounded by the chunk size, never by the file: each chunk is read (only the
columns the model needs), scored and written before the next one is read.

Per chunk:
1. Each input column is read as its type in the version's signature. A value that cannot be read as that
   type (text in a number column, an infinite number, text that is not true or false) makes its row a
   problem: the row keeps its place in the output with empty scores, and it is counted and, among the
   first MAX_LISTED_PROBLEMS, listed with its row and column. Missing values are missing, as in a training
   table; text a model never saw follows its transform's policy (one_hot: "other"; otherwise missing).
2. The model's matrix comes from the pipeline's vectorised table path: `FittedPipeline.transform_table`
   for a feature set, and for the automatic pipeline `auto_matrix`, the arrow equivalent of
   `FeaturePipeline.transform_columns` (bit-identical, as the tests hold it).
3. The scores are those `/predict` answers for the same rows, bit for bit: the label, and each class's
   probability rounded as `LoadedModel.predict` rounds it (`round(p, 6)`, vectorised exactly by
   `round_half_even_6`), or the regression value. Optional explanations are `LoadedModel.explain`'s.
4. The row id is the version's subject key when the input has that column, else the row's 0-based number.

Uploads (CSV, Parquet, JSON Lines) are first streamed into a Parquet file by the ingestion reader
(`apps.data.ingest.write_version`: encodings, delimiters, widening types), so every input is read alike.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CHUNK_ROWS = 262_144
# A chunk holds at most about this many bytes of input values and matrix, whatever CHUNK_ROWS says: a wide
# input is read in fewer rows at a time.
CHUNK_BYTES = 64 * 1024 * 1024
# Explanations build Python objects per row: made this many rows at a time, so they stay small.
EXPLAIN_BLOCK_ROWS = 2_048
TOP_REASONS = 5
MAX_LISTED_PROBLEMS = 20
FORMATS = ("parquet", "csv")
CLASSIFICATION = "classification"
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}
# What each input type of a signature can be read from: an arrow type's kind.
_READABLE = {
    "number": {"integer", "float", "boolean", "null", "string", "decimal"},
    "integer": {"integer", "float", "boolean", "null", "string", "decimal"},
    "boolean": {"boolean", "integer", "float", "null", "string"},
    "category": {"string", "integer", "boolean", "null", "float"},
    "datetime": {"datetime", "string", "null"},
}


class BatchInputError(Exception):
    """The input cannot be scored at all (a missing column, an unreadable file): the job fails with this."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class BatchStopped(Exception):
    """The callback said stop: the job was cancelled, or its lease was taken back."""


@dataclass
class BatchResult:
    rows: int = 0
    scored: int = 0
    problem_count: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


# -- exact rounding --------------------------------------------------------------------------------------

_SPLIT = 134217729.0  # 2**27 + 1: Dekker's split of a float64 into two halves of 26 bits
_SCALE = 1e6
_SCALE_HIGH = _SPLIT * _SCALE - (_SPLIT * _SCALE - _SCALE)
_SCALE_LOW = _SCALE - _SCALE_HIGH


def round_half_even_6(values: np.ndarray) -> np.ndarray:
    """`round(float(v), 6)` for every value of a float64 array in [0, 1], vectorised and exact.

    Python rounds the exact binary value to 6 decimals (half to even), then reads that decimal back; k / 10**6
    of the right integer k is that double (IEEE division is correctly rounded). k = rint(v * 10**6) is right
    unless the product's rounding error moved it across a half: so only values whose product lies within
    1e-9 of a half (the error is below 2**-33 for products under 2**20) are settled exactly, from the exact
    product p + e (Dekker's two-product) and the sign of (p - k ± 0.5) + e. np.round(v, 6) differs from
    Python on such values.
    """
    v = np.asarray(values, dtype=np.float64)
    p = v * _SCALE
    k = np.rint(p)
    near = np.flatnonzero(np.abs(np.abs(p - k) - 0.5) < 1e-9)
    if len(near):
        k[near] = _exact_round(v[near], p[near], k[near])
    k /= _SCALE
    return k


def _exact_round(v: np.ndarray, p: np.ndarray, k: np.ndarray) -> np.ndarray:
    t = _SPLIT * v
    high = t - (t - v)
    low = v - high
    e = ((high * _SCALE_HIGH - p) + high * _SCALE_LOW + low * _SCALE_HIGH) + low * _SCALE_LOW
    d = p - k  # exact: within half a unit of p
    above = (d - 0.5) + e  # the sign of (p + e) - (k + 0.5)
    below = (d + 0.5) + e  # the sign of (p + e) - (k - 0.5)
    odd = np.remainder(k, 2.0) == 1.0
    k = np.where((above > 0) | ((above == 0) & odd), k + 1.0, k)
    return np.where((below < 0) | ((below == 0) & odd), k - 1.0, k)


# -- reading the input ----------------------------------------------------------------------------------


def _kind(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_decimal(arrow_type):
        return "decimal"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        return "datetime"
    if pa.types.is_null(arrow_type):
        return "null"
    return str(arrow_type)


@dataclass(frozen=True)
class Plan:
    """What to read from the input and what to write."""

    inputs: list[dict[str, Any]]
    read_columns: list[str]
    id_source: str  # the subject key column, or "" for row numbers
    id_name: str
    output_schema: Any


def plan(
    input_schema: Any,
    *,
    signature: Sequence[Mapping[str, Any]],
    subject_key: str,
    task_type: str,
    labels: Sequence[Any],
    explain: bool,
) -> Plan:
    """Check the input's columns against the model's inputs; refuse, naming each column, what cannot be read."""
    import pyarrow as pa

    names = set(input_schema.names)
    problems = []
    for item in signature:
        name = item["name"]
        if name not in names:
            problems.append({"row": None, "column": name, "message": "is missing; the model reads it"})
            continue
        kind = _kind(input_schema.field(name).type)
        if kind not in _READABLE.get(item["type"], {kind}):
            wanted = {"category": "text", "integer": "a number"}.get(item["type"], f"a {item['type']}")
            problems.append({"row": None, "column": name, "message": f"holds {kind} values; the model reads {wanted}"})
    if problems:
        missing = [p["column"] for p in problems if p["message"].startswith("is missing")]
        message = (
            f"The input lacks {len(missing)} of the model's inputs: {', '.join(missing)}."
            if missing
            else f"{len(problems)} column(s) of the input cannot be read as the model's inputs."
        )
        raise BatchInputError(message, problems)
    id_source = subject_key if subject_key and subject_key in names else ""
    outputs = _output_fields(task_type, labels, explain)
    taken = {name for name, _ in outputs}
    if id_source:
        id_type = input_schema.field(id_source).type
        if pa.types.is_dictionary(id_type):
            id_type = id_type.value_type
        id_name = id_source if id_source not in taken else f"input_{id_source}"
    else:
        id_type, id_name = pa.int64(), "row"
    read = [item["name"] for item in signature]
    if id_source and id_source not in read:
        read.append(id_source)
    schema = pa.schema([pa.field(id_name, id_type), *(pa.field(name, kind) for name, kind in outputs)])
    return Plan(
        inputs=[dict(item) for item in signature],
        read_columns=read,
        id_source=id_source,
        id_name=id_name,
        output_schema=schema,
    )


def _output_fields(task_type: str, labels: Sequence[Any], explain: bool) -> list[tuple[str, Any]]:
    import pyarrow as pa

    if task_type == CLASSIFICATION:
        label_type = pa.array(list(labels)).type if labels else pa.string()
        fields = [("label", pa.string() if pa.types.is_null(label_type) else label_type)]
        fields += [(f"probability_{label}", pa.float64()) for label in labels]
    else:
        fields = [("value", pa.float64())]
    if explain:
        fields.append(("baseline", pa.float64()))
        for rank in range(1, TOP_REASONS + 1):
            fields += [
                (f"reason_{rank}", pa.string()),
                (f"reason_{rank}_feature", pa.string()),
                (f"reason_{rank}_contribution", pa.float64()),
            ]
    return fields


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _parse_numbers(values: Any) -> tuple[Any, np.ndarray]:
    """Text read as numbers: float64 with nulls, and where a value was not a number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(values, pa.float64()), np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed: list[float | None] = []
    bad = np.zeros(len(values), dtype=bool)
    for position, value in enumerate(values.to_pylist()):
        if value is None or not value.strip():
            parsed.append(None)
            continue
        try:
            parsed.append(float(value))
        except ValueError:
            parsed.append(None)
            bad[position] = True
    return pa.array(parsed, type=pa.float64()), bad


def _parse_booleans(values: Any) -> tuple[Any, np.ndarray]:
    """Text read as true or false (true/false, yes/no, t/f, y/n, 1/0), and where a value was neither."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(values, pa.bool_()), np.zeros(len(values), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    parsed: list[bool | None] = []
    bad = np.zeros(len(values), dtype=bool)
    for position, value in enumerate(values.to_pylist()):
        lowered = value.strip().lower() if value is not None else ""
        if lowered in _TRUE:
            parsed.append(True)
        elif lowered in _FALSE:
            parsed.append(False)
        else:
            parsed.append(None)
            bad[position] = value is not None and bool(lowered)
    return pa.array(parsed, type=pa.bool_()), bad


def _conform(item: Mapping[str, Any], values: Any) -> tuple[Any, np.ndarray | None, str]:
    """A column as its input's type: (values, where a value could not be read or None, the message)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = item["type"]
    if pa.types.is_dictionary(values.type):
        if wanted == "category" and pa.types.is_string(values.type.value_type):
            return values, None, ""  # text read as a dictionary stays one: only its values are looked up
        values = values.dictionary_decode()
    kind = _kind(values.type)
    if wanted in ("number", "integer"):
        bad = None
        if kind == "string":
            values, bad = _parse_numbers(values)
            kind = "float"
        elif kind == "decimal":
            values, kind = pc.cast(values, pa.float64()), "float"
        if kind == "float":
            infinite = np.asarray(pc.fill_null(pc.is_inf(values), False).to_numpy(zero_copy_only=False), dtype=bool)
            bad = infinite if bad is None else bad | infinite
        if bad is not None and not bad.any():
            bad = None
        return values, bad, "must be a finite number"
    if wanted == "boolean":
        if kind == "string":
            values, bad = _parse_booleans(values)
            return values, bad if bad.any() else None, "must be true or false"
        return values, None, ""
    if wanted == "category":
        if kind != "string" or not pa.types.is_string(values.type):
            values = pc.cast(values, pa.string())
        return values, None, ""
    return values, None, ""  # datetime: the pipeline reads timestamps, dates and ISO text; others are missing


# -- the matrix -----------------------------------------------------------------------------------------


def auto_matrix(pipeline: Any, columns: Mapping[str, Any], n_rows: int) -> np.ndarray:
    """The automatic pipeline's matrix (`FeaturePipeline.transform_columns` on the same values as Python
    lists, bit for bit) from arrow columns, vectorised: numbers as the list path converts them (integers
    without missing values straight to float32, others through float64), text by its vocabulary position,
    a missing or unknown category NaN."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from apps.features.transforms import CATEGORICAL

    matrix = np.empty((n_rows, len(pipeline.features)), dtype=np.float32)
    for position, feature in enumerate(pipeline.features):
        values = columns[feature.name]
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if feature.kind == CATEGORICAL:
            vocabulary = pa.array(list(feature.vocabulary), type=pa.string())
            if pa.types.is_dictionary(values.type):  # look up each distinct value once; NaN past the end
                found = pc.index_in(values.dictionary, value_set=vocabulary).to_numpy(zero_copy_only=False)
                lookup = np.append(np.asarray(found, dtype=np.float32), np.float32(math.nan))
                indices = pc.fill_null(values.indices.cast(pa.int64()), len(found)).to_numpy(zero_copy_only=False)
                matrix[:, position] = lookup[indices]
                continue
            text = values if pa.types.is_string(values.type) else pc.cast(values, pa.string())
            found = pc.index_in(text, value_set=vocabulary)
            matrix[:, position] = found.to_numpy(zero_copy_only=False)  # nulls (missing, unknown) are NaN
        elif pa.types.is_integer(values.type) and values.null_count == 0:
            matrix[:, position] = values.to_numpy()
        else:
            cast = pc.cast(values, pa.float64(), safe=False)
            matrix[:, position] = pc.fill_null(cast, math.nan).to_numpy(zero_copy_only=False)
    return matrix


def model_matrix(pipeline: Any, table: Any) -> np.ndarray:
    """The matrix of a table of conformed input columns, by the pipeline's vectorised table path."""
    if hasattr(pipeline, "transform_table"):
        import pyarrow as pa

        decoded = [
            column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column
            for column in table.columns
        ]
        return pipeline.transform_table(pa.Table.from_arrays(decoded, names=table.column_names))
    return auto_matrix(pipeline, {name: table.column(name) for name in pipeline.names}, table.num_rows)


# -- scores ---------------------------------------------------------------------------------------------


def _scattered(values: np.ndarray, good: np.ndarray | None, n_rows: int, fill: Any) -> np.ndarray:
    if good is None:
        return values
    out = np.full((n_rows, *values.shape[1:]), fill, dtype=values.dtype)
    out[good] = values
    return out


def score_columns(
    loaded: Any,
    raw: np.ndarray,
    n_rows: int,
    *,
    good: np.ndarray | None = None,
) -> dict[str, Any]:
    """The output columns of the rows that were scored (`good`, or all), as `LoadedModel.predict` gives them:
    the argmax label and each probability rounded to 6 decimals, or the value. Unscored rows are null."""
    import pyarrow as pa

    mask = None if good is None else ~good
    if loaded.task_type != CLASSIFICATION:
        values = _scattered(raw.reshape(-1).astype(np.float64), good, n_rows, math.nan)
        return {"value": pa.array(values, mask=mask)}
    labels = list(loaded.labels)
    scored = n_rows if good is None else int(good.sum())
    # in the booster's float32, exactly as LoadedModel.predict computes them
    probabilities = np.column_stack([1.0 - raw, raw]) if len(labels) == 2 else raw.reshape(scored, len(labels))
    best = _scattered(probabilities.argmax(axis=1), good, n_rows, 0)
    out: dict[str, Any] = {"label": pa.array(labels).take(pa.array(best, mask=mask))}
    for position, label in enumerate(labels):
        rounded = round_half_even_6(probabilities[:, position].astype(np.float64))
        out[f"probability_{label}"] = pa.array(_scattered(rounded, good, n_rows, math.nan), mask=mask)
    return out


def explanation_columns(
    loaded: Any, matrix: np.ndarray, table: Any, best_labels: Sequence[Any], n_rows: int, good: np.ndarray | None
) -> dict[str, Any]:
    """`LoadedModel.explain` for the scored rows, a block at a time: the baseline and the top reasons, each
    as its sentence, its feature and its contribution. Unscored rows, and reasons a row does not have, are
    null."""
    import pyarrow as pa

    names = ["baseline"] + [
        f"reason_{rank}{suffix}" for rank in range(1, TOP_REASONS + 1) for suffix in ("", "_feature", "_contribution")
    ]
    columns: dict[str, list[Any]] = {name: [None] * n_rows for name in names}
    positions = np.flatnonzero(good) if good is not None else np.arange(n_rows)
    for start in range(0, len(matrix), EXPLAIN_BLOCK_ROWS):
        block = matrix[start : start + EXPLAIN_BLOCK_ROWS]
        rows = table.slice(start, len(block)).to_pylist()
        outputs = [{"label": label} for label in best_labels[start : start + len(block)]]
        for offset, explanation in enumerate(loaded.explain(block, outputs, rows)):
            row = int(positions[start + offset])
            columns["baseline"][row] = explanation.get("baseline")
            for rank, reason in enumerate((explanation.get("reasons") or [])[:TOP_REASONS], start=1):
                columns[f"reason_{rank}"][row] = reason["sentence"]
                columns[f"reason_{rank}_feature"][row] = reason["feature"]
                columns[f"reason_{rank}_contribution"][row] = reason["contribution"]
    return {
        name: pa.array(
            values, type=pa.float64() if name == "baseline" or name.endswith("_contribution") else pa.string()
        )
        for name, values in columns.items()
    }


# -- one chunk ------------------------------------------------------------------------------------------


@dataclass
class _Chunk:
    table: Any  # the output rows
    problems: list[dict[str, Any]]
    problem_rows: int


REFUSED_MESSAGE = "no decision may be made about this person (a restriction, objection or erasure is in force)"


def score_chunk(
    loaded: Any,
    batch: Any,
    chosen: Plan,
    *,
    offset: int,
    explain: bool,
    predict_raw: Callable[[np.ndarray], np.ndarray],
    listed: int = 0,
    refused: Callable[[Any], list[int]] | None = None,
) -> _Chunk:
    """Score one record batch of the input; `offset` is the row number of its first row, `listed` how many
    problems earlier chunks listed. `refused(ids)` names the rows no decision may be made about (by index in the Arrow
    array of subject keys `ids`):
    they are not scored, like unreadable rows."""
    import pyarrow as pa

    n_rows = batch.num_rows
    conformed: dict[str, Any] = {}
    bad = np.zeros(n_rows, dtype=bool)
    problems: list[dict[str, Any]] = []
    for item in chosen.inputs:
        name = item["name"]
        values, unreadable, message = _conform(item, batch.column(name))
        if unreadable is not None:
            bad |= unreadable
            room = MAX_LISTED_PROBLEMS - listed - len(problems)
            for row in np.flatnonzero(unreadable)[: max(room, 0)]:
                value = batch.column(name)[int(row)].as_py()
                problems.append(
                    {"row": offset + int(row), "column": name, "message": f"{message}, not {_shown(value)}"}
                )
        conformed[name] = values
    if refused is not None and chosen.id_source:
        for row in refused(batch.column(chosen.id_source)):
            if not bad[row] and len(problems) < MAX_LISTED_PROBLEMS - listed:
                problems.append({"row": offset + row, "column": chosen.id_source, "message": REFUSED_MESSAGE})
            bad[row] = True
    table = pa.table(conformed)
    good = None
    if bad.any():
        good = ~bad
        table = table.filter(pa.array(good))  # unreadable rows are not scored; they keep their place, empty
    matrix = model_matrix(loaded.pipeline, table)
    raw = np.asarray(predict_raw(matrix)) if len(matrix) else np.empty((0,), dtype=np.float32)
    scores = score_columns(loaded, raw, n_rows, good=good)
    if chosen.id_source:
        ids = batch.column(chosen.id_source)
        if pa.types.is_dictionary(ids.type):
            ids = ids.dictionary_decode()
    else:
        ids = pa.array(np.arange(offset, offset + n_rows, dtype=np.int64))
    columns = {chosen.id_name: ids, **scores}
    if explain:
        best = scores["label"].drop_null().to_pylist() if "label" in scores else [None] * len(matrix)
        columns.update(explanation_columns(loaded, matrix, table, best, n_rows, good))
    out = pa.Table.from_arrays([columns[name] for name in chosen.output_schema.names], schema=chosen.output_schema)
    return _Chunk(out, problems, int(bad.sum()))


# -- writing --------------------------------------------------------------------------------------------


def _neutralised(table: Any) -> Any:
    """Text cells that start with =, +, -, @ get a leading quote, so spreadsheets don't run them as formulas
    (as dataset exports do)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = []
    for column in table.columns:
        if pa.types.is_string(column.type):
            risky = pc.match_substring_regex(column, r"^[=+\-@]")
            column = pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=table.schema)


class _Writer:
    """zstd Parquet (dictionaries only for the columns that repeat: labels and reason features) or CSV; the
    encoding and compression run on a second thread, one chunk behind the scoring."""

    def __init__(self, target: Path, schema: Any, output_format: str) -> None:
        if output_format not in FORMATS:
            raise ValueError(f"Unknown output format {output_format!r}")
        self.format = output_format
        if output_format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            repeated = [name for name in schema.names if name == "label" or name.endswith("_feature")]
            # scores and contributions are near-random doubles: split into byte streams they compress as well,
            # with less work
            floats = [f.name for f in schema if pa.types.is_floating(f.type)]
            self.writer = pq.ParquetWriter(
                target,
                schema,
                compression="zstd",
                use_dictionary=repeated or False,
                use_byte_stream_split=floats or False,
            )
        else:
            import pyarrow.csv as pacsv

            self.writer = pacsv.CSVWriter(target, schema, write_options=pacsv.WriteOptions(quoting_style="needed"))
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: Future | None = None

    def write(self, table: Any) -> None:
        if self.format == "csv":
            table = _neutralised(table)
        if self.pending is not None:
            self.pending.result()
        self.pending = self.pool.submit(self.writer.write_table, table)

    def close(self) -> None:
        try:
            if self.pending is not None:
                self.pending.result()
        finally:
            self.pool.shutdown(wait=True)
            self.writer.close()


# -- the whole file -------------------------------------------------------------------------------------


def input_rows(source: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(source).metadata.num_rows


def score_file(
    loaded: Any,
    source: Path,
    target: Path,
    *,
    output_format: str,
    explain: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    workers: int = 1,
    predict_raw: Callable[[np.ndarray], np.ndarray] | None = None,
    on_chunk: Callable[[int], bool] | None = None,
    refused: Callable[[Any], list[int]] | None = None,
) -> BatchResult:
    """Score every row of the Parquet file `source` with `loaded` (a LoadedModel) into `target`.

    Up to `workers` chunks are scored at once, each on its own thread (XGBoost's and onnxruntime's
    predictions are thread-safe and release the GIL), while the next chunk is read and the last one written:
    whole chunks in parallel rather than one prediction split over threads, whose threads would wait for
    each other at every call. The output keeps the input's order. Explanations are made one chunk at a time.

    `refused(ids)` names the rows (by index in `ids`, an Arrow array of subject keys) no decision may be made
    about; they are left unscored and listed as problems. `on_chunk(rows_done)` runs after each chunk is handed to
    the writer, in order; False stops with BatchStopped (the caller removes `target`). Raises BatchInputError when
    the input cannot be scored.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        text_inputs = [item["name"] for item in loaded.pipeline.signature() if item["type"] == "category"]
        parquet = pq.ParquetFile(source, read_dictionary=text_inputs)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchInputError(f"The input is not a readable Parquet file: {exc}") from None
    chosen = plan(
        parquet.schema_arrow,
        signature=loaded.pipeline.signature(),
        subject_key=loaded.pipeline.subject_key,
        task_type=loaded.task_type,
        labels=loaded.labels,
        explain=explain,
    )
    predict = predict_raw or loaded.scorer.predict_raw
    result = BatchResult(columns=chosen.output_schema.names)
    width = 8 * len(chosen.read_columns) + 4 * len(loaded.pipeline.names)
    rows_per_chunk = min(chunk_rows, max(1_000, CHUNK_BYTES // max(width, 1)))
    parallel = 1 if explain else max(1, workers)
    writer = _Writer(target, chosen.output_schema, output_format)
    scoring: deque[tuple[Future, int]] = deque()

    def drain() -> None:
        future, rows = scoring.popleft()
        chunk = future.result()
        writer.write(chunk.table)
        result.rows += rows
        result.problem_count += chunk.problem_rows
        result.problems.extend(chunk.problems[: MAX_LISTED_PROBLEMS - len(result.problems)])
        if on_chunk is not None and not on_chunk(result.rows):
            raise BatchStopped()

    try:
        with ThreadPoolExecutor(max_workers=parallel) as scorers:
            offset = 0
            for batch in _prefetched(_batches(parquet, chosen.read_columns, rows_per_chunk)):
                future = scorers.submit(
                    score_chunk,
                    loaded,
                    batch,
                    chosen,
                    offset=offset,
                    explain=explain,
                    predict_raw=predict,
                    refused=refused,
                )
                scoring.append((future, batch.num_rows))
                offset += batch.num_rows
                if len(scoring) >= parallel:
                    drain()
            while scoring:
                drain()
    finally:
        for future, _ in scoring:
            future.cancel()
        writer.close()
    result.scored = result.rows - result.problem_count
    return result


def _prefetched(batches: Iterator[Any]) -> Iterator[Any]:
    """The batches, each read on a second thread while the one before it is scored (arrow releases the GIL).
    Stopping early waits for the read in flight; its result is dropped."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        upcoming = reader.submit(next, batches, None)
        while (batch := upcoming.result()) is not None:
            upcoming = reader.submit(next, batches, None)
            yield batch


def _batches(parquet: Any, columns: list[str], chunk_rows: int) -> Iterator[Any]:
    import pyarrow as pa

    try:
        yield from parquet.iter_batches(batch_size=chunk_rows, columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise BatchInputError(f"The input is truncated or damaged: {exc}") from None


def upload_to_parquet(source: Path, name: str, target: Path, on_progress: Callable[[float], None] | None = None) -> int:
    """Stream an uploaded CSV, Parquet or JSON Lines file into the Parquet file `target` (bounded memory, as
    ingestion reads it); return its rows. A file that cannot be read raises BatchInputError with its problems."""
    from apps.data.ingest import IngestError, write_version

    try:
        return write_version(source, name, target, on_progress=on_progress).row_count
    except IngestError as exc:
        raise BatchInputError(exc.message, exc.problems) from None


def peek_columns(source: Path, name: str) -> list[str]:
    """The column names of an upload, read from its start (the header of a CSV, the first line of JSON
    Lines, the schema of Parquet); [] when they cannot be told cheaply (the worker then reads the file)."""
    import csv
    import json

    import pyarrow.parquet as pq

    from apps.data.ingest import IngestError, detect_format

    try:
        fmt = detect_format(source, name, None)
    except IngestError as exc:
        raise BatchInputError(exc.message, exc.problems) from None
    if fmt == "parquet":
        try:
            return list(pq.read_schema(source).names)
        except Exception:  # damaged: the worker reports it with its reason
            return []
    with open(source, "rb") as handle:
        head = handle.read(64 * 1024)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError:
        return []  # another encoding or a cut character: the worker's reader settles it
    first = text.splitlines()[0] if text.splitlines() else ""
    if fmt == "jsonl":
        try:
            row = json.loads(first)
        except ValueError:
            return []
        return list(row) if isinstance(row, dict) else []
    lines = [line for line in text.splitlines()[:50] if line.strip()]
    try:
        delimiter = csv.Sniffer().sniff("\n".join(lines), delimiters=",;\t|").delimiter
    except csv.Error:
        delimiter = ","
    return next(csv.reader([first], delimiter=delimiter), [])
