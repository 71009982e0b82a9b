"""MLflow's scoring-server protocol (what `mlflow models serve` answers at /invocations), read into Faro's
request rows, and Faro's outputs written back as its `predictions`. No Django here.

A JSON body holds exactly one of four input formats, and optionally `params`:

    {"dataframe_split": {"columns": [...], "data": [[...], ...], "index": [...]}}   pandas orient="split"
    {"dataframe_records": [{...}, ...]}                                            pandas orient="records"
    {"instances": [{...}, ...]}                                                    TF-serving rows
    {"inputs": {"column": [...], ...}}  or  {"inputs": [{...}, ...]}               TF-serving columns or rows

`instances` and `inputs` may also list bare values when the model has exactly one input. A CSV body has a
header row and one line per row; its cells are text until the model's signature says what each column
holds (`Inputs.rows_for`), so the same rows score the same whether they came as JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARAMS = ("predict_proba",)
MAX_PROBLEMS = 20
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "false": False}
EMPTY_CSV = "The CSV body is empty: it needs a header row and at least one row."


class ProtocolError(Exception):
    """A request that does not follow the protocol. `fields` maps a place in the body (`dataframe_split.data[2]`)
    or the query string to its problems, each phrased to follow the place's name."""

    def __init__(self, fields: dict[str, list[str]], *, part: str = "request body") -> None:
        super().__init__(fields)
        self.fields = fields
        self.part = part

    @property
    def message(self) -> str:
        """The first problem in a sentence, so that a client that shows only the message still says what."""
        place, problems = next(iter(self.fields.items()))
        more = sum(len(items) for items in self.fields.values()) - 1
        suffix = f" ({more} more in extra.fields)" if more else ""
        return f"Invalid {self.part}: {place} {problems[0]}.{suffix}"


class CsvError(Exception):
    """A CSV body that cannot be read as a table. `line` counts from 1 at the header, as an editor does;
    `row` is the data row's index in the request (0 for the line after the header), or None."""

    def __init__(self, message: str, *, line: int | None = None, row: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.row = row


class RowProblems(Exception):
    """Cells that are not what the model's signature declares: {"row", "field", "message"} each."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(problems)
        self.problems = problems


@dataclass(frozen=True)
class Inputs:
    """Rows read from a body before the model is known.

    `items` are objects of input values, or bare values (valid only for a model with one input).
    `text`: the values are CSV cells, read as the signature's types by `rows_for`. `place` names where the
    rows were in the body, for messages.
    """

    items: list[Any]
    place: str
    text: bool = False

    def rows_for(self, signature: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The rows the model is asked to score, given its signature (ordered {"name", "type", ...} items).

        Raises ProtocolError for bare values sent to a model with several inputs, RowProblems for CSV cells
        that are not of their column's type. Everything else (unknown or missing inputs, categories, nulls)
        is left to the model's own validation, exactly as for any prediction.
        """
        if self.text:
            return _typed_rows(self.items, signature)
        bare = [index for index, item in enumerate(self.items) if not isinstance(item, dict)]
        if not bare:
            return self.items
        if len(signature) != 1:
            names = ", ".join(item["name"] for item in signature)
            raise ProtocolError(
                {
                    f"{self.place}[{index}]": [
                        "must be an object of input values; a bare value is taken only by a model with one "
                        f"input, and this one has {len(signature)} ({names})"
                    ]
                    for index in bare[:MAX_PROBLEMS]
                }
            )
        name = signature[0]["name"]
        return [item if isinstance(item, dict) else {name: _unwrap(item)} for item in self.items]


def _unwrap(value: Any) -> Any:
    """TF-serving writes one input's value as itself or as a one-element list."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


# -- JSON bodies ------------------------------------------------------------------------------------------


def read_json_body(body: Any) -> tuple[Inputs, dict[str, Any]]:
    """The rows and params of a parsed JSON body. Raises ProtocolError naming every problem found."""
    if not isinstance(body, dict):
        raise ProtocolError({"body": [f"must be a JSON object with one of {', '.join(FORMATS)}"]})
    fields: dict[str, list[str]] = {}
    for key in sorted(body.keys() - {*FORMATS, "params"}):
        fields[key] = ["is not a field of this protocol"]
    given = [key for key in FORMATS if key in body]
    if len(given) != 1:
        found = ", ".join(given) if given else "none"
        fields["body"] = [f"must have exactly one of {', '.join(FORMATS)}; it has {found}"]
    params = _read_params(body.get("params", {}), fields)
    if fields:
        raise ProtocolError(fields)
    key = given[0]
    readers = {
        "dataframe_split": _read_split,
        "dataframe_records": _read_records,
        "instances": _read_instances,
        "inputs": _read_inputs,
    }
    items = readers[key](body[key], key, fields)
    if fields:
        raise ProtocolError(dict(list(fields.items())[:MAX_PROBLEMS]))
    return Inputs(items=items, place=key), params


def _read_params(params: Any, fields: dict[str, list[str]]) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        fields["params"] = ["must be an object"]
        return {}
    for key in sorted(params.keys() - set(PARAMS)):
        fields[f"params.{key}"] = [f"is not a parameter of this model; known: {', '.join(PARAMS)}"]
    if "predict_proba" in params and not isinstance(params["predict_proba"], bool):
        fields["params.predict_proba"] = ["must be true or false"]
    return dict(params)


def _non_empty_list(value: Any, place: str, what: str, fields: dict[str, list[str]]) -> bool:
    if not isinstance(value, list):
        fields[place] = [f"must be a list of {what}, not {_kind(value)}"]
        return False
    if not value:
        fields[place] = [f"must list at least one of {what}"]
        return False
    return True


def _objects(items: list[Any], place: str, fields: dict[str, list[str]]) -> None:
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            fields[f"{place}[{index}]"] = [f"must be an object of input values, not {_kind(item)}"]
            if len(fields) >= MAX_PROBLEMS:
                return


def _read_split(value: Any, place: str, fields: dict[str, list[str]]) -> list[Any]:
    if not isinstance(value, dict):
        fields[place] = [f'must be an object with "columns" and "data", not {_kind(value)}']
        return []
    for key in sorted(value.keys() - {"columns", "data", "index"}):
        fields[f"{place}.{key}"] = ['is not a key of the split format ("columns", "data", "index")']
    columns, data = value.get("columns"), value.get("data")
    width = None
    if "columns" not in value:
        fields[f"{place}.columns"] = ["is required: the names of the columns, in the order of each row's values"]
    elif _non_empty_list(columns, f"{place}.columns", "column names", fields):
        width = len(columns)
        seen: set[str] = set()
        for index, column in enumerate(columns):
            if not isinstance(column, str):
                fields[f"{place}.columns[{index}]"] = [f"must be a string, not {_kind(column)}"]
            elif column in seen:
                fields[f"{place}.columns[{index}]"] = [f"repeats the column {column!r}"]
            else:
                seen.add(column)
    if "data" not in value:
        fields[f"{place}.data"] = ["is required: a list of rows, each a list of values"]
    elif _non_empty_list(data, f"{place}.data", "rows", fields):
        for index, row in enumerate(data):
            if not isinstance(row, list):
                fields[f"{place}.data[{index}]"] = [f"must be a list of values, not {_kind(row)}"]
            elif width is not None and len(row) != width:
                fields[f"{place}.data[{index}]"] = [f"has {len(row)} values, but columns names {width}"]
            if len(fields) >= MAX_PROBLEMS:
                break
    index_value = value.get("index")
    if index_value is not None and isinstance(data, list):
        if not isinstance(index_value, list):
            fields[f"{place}.index"] = [f"must be a list, not {_kind(index_value)}"]
        elif len(index_value) != len(data):
            fields[f"{place}.index"] = [f"has {len(index_value)} entries, but data has {len(data)} rows"]
    if fields:
        return []
    return [dict(zip(columns, row, strict=True)) for row in data]


def _read_records(value: Any, place: str, fields: dict[str, list[str]]) -> list[Any]:
    if _non_empty_list(value, place, "row objects", fields):
        _objects(value, place, fields)
    return value if not fields else []


def _read_instances(value: Any, place: str, fields: dict[str, list[str]]) -> list[Any]:
    if _non_empty_list(value, place, "rows", fields) and any(isinstance(item, dict) for item in value):
        # Once one instance is an object, all must be: a mixture is a mistake, not a one-input model.
        _objects(value, place, fields)
    return value if not fields else []


def _read_inputs(value: Any, place: str, fields: dict[str, list[str]]) -> list[Any]:
    if isinstance(value, list):
        return _read_instances(value, place, fields)
    if not isinstance(value, dict):
        fields[place] = [f"must be an object of columns (name -> list of values) or a list of rows, not {_kind(value)}"]
        return []
    if not value:
        fields[place] = ["must name at least one column"]
        return []
    lengths = {}
    for name, values in value.items():
        if not isinstance(values, list):
            fields[f"{place}.{name}"] = [f"must be a list of values, one per row, not {_kind(values)}"]
        else:
            lengths[name] = len(values)
    if fields:
        return []
    first, count = next(iter(lengths.items()))
    if count == 0:
        fields[f"{place}.{first}"] = ["must list at least one value"]
    for name, length in lengths.items():
        if length != count:
            fields[f"{place}.{name}"] = [f"has {length} values, but {place}.{first} has {count}"]
    if fields:
        return []
    return [{name: value[name][index] for name in value} for index in range(count)]


def _kind(value: Any) -> str:
    """A JSON value's type as a client wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


# -- the query string -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Faro's additions in the query string: which version scores (default: the champion), and the
    probabilities instead of the labels (also `params.predict_proba` in a JSON body)."""

    alias: str | None = None
    version: int | None = None
    predict_proba: bool | None = None


QUERY_KEYS = ("alias", "version", "predict_proba")


def read_query(query: Mapping[str, list[str]]) -> Query:
    """The query string (each key with all its values). Raises ProtocolError naming every problem."""
    fields: dict[str, list[str]] = {}
    for key in sorted(query.keys() - set(QUERY_KEYS)):
        fields[key] = [f"is not a query parameter of this endpoint; known: {', '.join(QUERY_KEYS)}"]
    values: dict[str, str] = {}
    for key in QUERY_KEYS:
        given = query.get(key) or []
        if len(given) > 1:
            fields[key] = [f"is given {len(given)} times; give it once"]
        elif given:
            values[key] = given[0]
    alias, version, predict_proba = values.get("alias"), values.get("version"), values.get("predict_proba")
    if alias is not None and not alias.strip():
        fields["alias"] = ["must not be empty"]
    if version is not None and not (version.isascii() and version.isdigit()):
        fields["version"] = [f"must be a version number, not {version!r}"]
    if alias is not None and version is not None:
        fields.setdefault("version", []).append("cannot be given with an alias; give one or the other")
    flag = None
    if predict_proba is not None:
        flag = _BOOLEANS.get(predict_proba.lower())
        if flag is None:
            fields["predict_proba"] = [f"must be true or false, not {predict_proba!r}"]
    if fields:
        raise ProtocolError(fields, part="query string")
    return Query(alias=alias, version=int(version) if version is not None else None, predict_proba=flag)


def wants_probabilities(query: Query, params: Mapping[str, Any]) -> bool:
    """`predict_proba` from the query string or the body's params (not both); false when neither says."""
    if query.predict_proba is not None and "predict_proba" in params:
        raise ProtocolError(
            {"predict_proba": ["is given in both the query string and params; give it once"]}, part="request"
        )
    if query.predict_proba is not None:
        return query.predict_proba
    return bool(params.get("predict_proba", False))


# -- CSV bodies -------------------------------------------------------------------------------------------


def read_csv_body(raw: bytes) -> Inputs:
    """A CSV body (a header row, then one line per row, as `DataFrame.to_csv(index=False)` writes it) as rows
    of text cells; blank lines are skipped. Raises CsvError naming the line that cannot be read."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CsvError(f"The CSV body is not UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}.") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    items: list[dict[str, str]] = []
    try:
        for record in reader:
            if not record or record == [""]:
                continue
            if header is None:
                header = _read_header(record, reader.line_num)
                continue
            if len(record) != len(header):
                raise CsvError(
                    f"CSV line {reader.line_num} has {len(record)} values, but the header names {len(header)} columns.",
                    line=reader.line_num,
                    row=len(items),
                )
            items.append(dict(zip(header, record, strict=True)))
    except csv.Error as exc:
        raise CsvError(f"CSV line {reader.line_num} cannot be read: {exc}.", line=reader.line_num) from None
    if header is None:
        raise CsvError(EMPTY_CSV)
    if not items:
        raise CsvError("The CSV body has a header but no rows.", line=2, row=0)
    return Inputs(items=items, place="csv", text=True)


def _read_header(record: list[str], line: int) -> list[str]:
    seen: set[str] = set()
    for index, name in enumerate(record):
        if not name.strip():
            hint = " (write the frame with to_csv(index=False))" if index == 0 else ""
            raise CsvError(f"CSV line {line}: column {index + 1} of the header has no name{hint}.", line=line)
        if name in seen:
            raise CsvError(f"CSV line {line}: the header names the column {name!r} twice.", line=line)
        seen.add(name)
    return record


def _typed_rows(items: list[dict[str, str]], signature: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """CSV cells read as the types the signature declares; an empty cell is a missing value (null), as pandas
    reads it. Columns the signature does not name (the subject key, an `entity_id`, a misspelt input) stay
    text for the model's validation to accept or name; their empty cells are left out."""
    types = {item["name"]: item.get("type") for item in signature}
    problems: list[dict[str, Any]] = []
    rows = []
    for index, item in enumerate(items):
        row: dict[str, Any] = {}
        for name, cell in item.items():
            if cell == "":
                if name in types:
                    row[name] = None
                continue
            value, problem = _typed(types.get(name), cell)
            if problem:
                problems.append({"row": index, "field": name, "message": problem})
            row[name] = value
        rows.append(row)
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise RowProblems(problems)
    return rows


def _typed(kind: str | None, cell: str) -> tuple[Any, str | None]:
    if kind in ("integer", "number"):
        text = cell.strip()
        if _INTEGER.fullmatch(text):
            return int(text), None
        if _NUMBER.fullmatch(text):
            number = float(text)
            if math.isfinite(number):
                return number, None
            return cell, f"must be a finite number, not {cell!r}"
        return cell, f"must be a number, not {cell!r}"
    if kind == "boolean":
        flag = _BOOLEANS.get(cell.strip().lower())
        if flag is None:
            return cell, f"must be true or false, not {cell!r}"
        return flag, None
    return cell, None


# -- answers ----------------------------------------------------------------------------------------------


def predictions(outputs: Sequence[Mapping[str, Any]], *, probabilities: bool) -> list[Any]:
    """Faro's outputs as MLflow `predictions`: the label (as sklearn's `predict`), the class probabilities
    ({label: p}, as `predict_proba` keyed by class), or a regression's value."""
    if probabilities:
        return [dict(output["probabilities"]) for output in outputs]
    return [output["label"] if "label" in output else output["value"] for output in outputs]
