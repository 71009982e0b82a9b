"""The Open Inference Protocol (V2, as KServe and Triton speak it over REST) for Faro's models, in plain Python:
a version's metadata as tensors, an inference request's tensors decoded into rows, and scored rows encoded as
output tensors. No Django here: the edges call it, the prediction service does the scoring and logging.

Each input tensor is one column of the batch (shape [n] or [n, 1]); its data may be flat or nested row-major.
Tensor data travel as JSON: the binary and shared-memory extensions are not supported.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.core.errors import InvalidInput
from apps.registry.training import CLASSIFICATION

FLOAT_TYPES = ("FP16", "FP32", "FP64")
INTEGER_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
# The datatypes a JSON tensor can carry (BF16 travels only as binary data).
DATATYPES = ("BOOL", *INTEGER_RANGES, *FLOAT_TYPES, "BYTES")
NUMBER_TYPES = frozenset((*FLOAT_TYPES, *INTEGER_RANGES))
OUTPUT_DATATYPES = ("BYTES", "FP64")
REQUEST_FIELDS = frozenset({"id", "inputs", "outputs", "parameters"})
TENSOR_FIELDS = frozenset({"name", "shape", "datatype", "data", "parameters"})


@dataclass(frozen=True)
class _InputType:
    declared: str  # what the metadata announces
    accepted: frozenset[str]  # what a request may send
    described: str  # `accepted` for a person


_NUMBER = _InputType("FP64", NUMBER_TYPES, "a number datatype (FP16/32/64, INT8/16/32/64 or UINT8/16/32/64)")
_TEXT = _InputType("BYTES", frozenset({"BYTES"}), "BYTES")
# Signature input types. Number and integer inputs take any number datatype, as the JSON predict endpoint
# takes any JSON number for them; BOOL is only for boolean inputs.
INPUT_TYPES = {
    "number": _NUMBER,
    "integer": _InputType("INT64", NUMBER_TYPES, _NUMBER.described),
    "category": _TEXT,
    "datetime": _TEXT,
    "boolean": _InputType("BOOL", frozenset({"BOOL"}), "BOOL"),
}
# The subject key (who a decision is about) may come as an optional extra tensor, for the decision log.
_SUBJECT = _InputType("BYTES", frozenset({"BYTES", *INTEGER_RANGES}), "BYTES or an INT/UINT datatype")


def _input_type(kind: str) -> _InputType:
    return INPUT_TYPES.get(kind, _TEXT)


# -- metadata ---------------------------------------------------------------------------------------------


def output_names(task_type: str) -> list[str]:
    return ["label", "probabilities"] if task_type == CLASSIFICATION else ["value"]


def model_metadata(
    *,
    name: str,
    versions: Sequence[int],
    platform: str,
    signature: Sequence[Mapping[str, Any]],
    task_type: str,
    labels: Sequence[Any],
) -> dict[str, Any]:
    """The V2 model metadata: one input tensor per signature input, in signature order, any batch size."""
    if task_type == CLASSIFICATION:
        outputs = [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(labels)]},
        ]
    else:
        outputs = [{"name": "value", "datatype": "FP64", "shape": [-1]}]
    return {
        "name": name,
        "versions": [str(number) for number in versions],
        "platform": platform,
        "inputs": [
            {"name": item["name"], "datatype": _input_type(item["type"]).declared, "shape": [-1]} for item in signature
        ],
        "outputs": outputs,
    }


# -- requests ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    rows: list[dict[str, Any]]
    outputs: list[str]  # output tensor names to answer, in order


def infer_request_decode(
    body: Any, *, signature: Sequence[Mapping[str, Any]], subject_key: str, task_type: str
) -> InferRequest:
    """Rows (one dict per row, as the prediction service takes them) from a V2 inference request.

    Raises InvalidInput with the one error body: `extra.fields` for a malformed request object, else
    `extra.errors` as [{"tensor", "message"}] naming every tensor with a problem. Values are checked against
    their tensor's datatype here; the signature's own rules (categories, nulls) are the service's.
    """
    _check_body(body)
    problems: list[dict[str, str]] = []

    def problem(tensor: str, message: str) -> None:
        problems.append({"tensor": tensor, "message": message})

    types = {item["name"]: _input_type(item["type"]) for item in signature}
    if subject_key and subject_key not in types:
        types[subject_key] = _SUBJECT
    seen: set[str] = set()
    columns: dict[str, list[Any]] = {}
    for position, tensor in enumerate(body["inputs"]):
        if not isinstance(tensor, dict):
            problem(f"inputs[{position}]", "must be an object with name, shape, datatype and data")
            continue
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            problem(f"inputs[{position}]", "needs a 'name' string")
            continue
        if name in seen:
            problem(name, "is given more than once")
            continue
        seen.add(name)
        if name not in types:
            problem(name, "is not an input of this model")
            continue
        column = _column(tensor, types[name], lambda message, name=name: problem(name, message))
        if column is not None:
            columns[name] = column
    for item in signature:
        if item["name"] not in seen:
            problem(item["name"], "is a required input and is missing")
    if columns:
        first, first_column = next(iter(columns.items()))
        for name, column in columns.items():
            if not column:
                problem(name, "holds no rows: send at least one")
            elif len(column) != len(first_column):
                problem(name, f"has {len(column)} row(s) but {first!r} has {len(first_column)}")

    available = output_names(task_type)
    requested = [item["name"] for item in body.get("outputs") or []] or available
    for name in dict.fromkeys(requested):
        if name not in available:
            problem(name, f"is not an output of this model; its outputs: {', '.join(available)}")
    if problems:
        raise InvalidInput(f"{len(problems)} problem(s) with the tensors.", extra={"errors": problems})

    order = [name for name in types if name in columns]
    count = len(columns[order[0]])
    rows = [{name: columns[name][index] for name in order} for index in range(count)]
    return InferRequest(id=body.get("id"), rows=rows, outputs=list(dict.fromkeys(requested)))


def _check_body(body: Any) -> None:
    if not isinstance(body, dict):
        raise InvalidInput(
            "The body must be a JSON object with an 'inputs' list.",
            extra={"fields": {"body": ["Expected a JSON object."]}},
        )
    fields: dict[str, list[str]] = {key: ["Unknown field."] for key in sorted(body.keys() - REQUEST_FIELDS)}
    if body.get("id") is not None and not isinstance(body["id"], str):
        fields["id"] = ["Must be a string."]
    if "inputs" not in body:
        fields["inputs"] = ["This field is required."]
    elif not isinstance(body["inputs"], list) or not body["inputs"]:
        fields["inputs"] = ["Must be a non-empty list of tensors."]
    outputs = body.get("outputs")
    if outputs is not None and not (
        isinstance(outputs, list)
        and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in outputs)
    ):
        fields["outputs"] = ["Must be a list of objects with a 'name' string."]
    if body.get("parameters") is not None and not isinstance(body["parameters"], dict):
        fields["parameters"] = ["Must be an object."]
    if fields:
        raise InvalidInput("Invalid request body.", extra={"fields": fields})


def _column(tensor: Mapping[str, Any], kind: _InputType, problem: Callable[[str], None]) -> list[Any] | None:
    """The tensor's values, one per row; None after reporting its first problem."""
    unknown = sorted(tensor.keys() - TENSOR_FIELDS)
    if unknown:
        return problem(f"has unknown field(s): {', '.join(unknown)}")
    shape, datatype, data = tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(size, int) and not isinstance(size, bool) and size >= 0 for size in shape)
    ):
        return problem("needs a 'shape': a list of non-negative integers")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        return problem(f"has shape {shape}; an input tensor is one column: [n] or [n, 1]")
    if not isinstance(datatype, str):
        return problem("needs a 'datatype' string")
    if datatype not in DATATYPES:
        return problem(f"has unknown datatype {datatype[:40]!r}; JSON tensors take {', '.join(DATATYPES)}")
    if datatype not in kind.accepted:
        return problem(f"is {datatype}, but this input takes {kind.described}")
    if "data" not in tensor:
        return problem("needs 'data' (binary and shared-memory tensor data are not supported)")
    if not isinstance(data, list):
        return problem("needs 'data' as a list")
    values = _flatten(data, depth=len(shape))
    if values is None:
        return problem(f"has data nested deeper than its shape {shape}")
    if len(values) != shape[0]:
        return problem(f"has shape {shape} ({shape[0]} element(s)) but {len(values)} data element(s)")
    for row, value in enumerate(values):
        message = _value_problem(datatype, value)
        if message:
            return problem(f"row {row} {message}")
    return values


def _flatten(data: list[Any], *, depth: int) -> list[Any] | None:
    """Row-major values of data nested at most `depth` levels; None when nested deeper."""
    values: list[Any] = []
    for item in data:
        if not isinstance(item, list):
            values.append(item)
        elif depth < 2 or any(isinstance(inner, list) for inner in item):
            return None
        else:
            values.extend(item)
    return values


def _value_problem(datatype: str, value: Any) -> str | None:
    if value is None:
        return None  # a missing value: the signature says whether the input may be null
    if datatype == "BYTES":
        return None if isinstance(value, str) else "must be a string"
    if datatype == "BOOL":
        return None if isinstance(value, bool) else "must be true or false"
    if datatype in INTEGER_RANGES:
        low, high = INTEGER_RANGES[datatype]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"must be an integer from {low} to {high}"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "must be a number"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    return None if finite else "must be a finite number"


# -- responses --------------------------------------------------------------------------------------------


def output_tensors(
    *, outputs: Sequence[Mapping[str, Any]], labels: Sequence[Any], task_type: str, names: Sequence[str]
) -> list[dict[str, Any]]:
    """The prediction service's per-row outputs as V2 output tensors, in the order of `names`.

    `probabilities` has one column per label, in the version's label order (the order of `labels` in the
    registry), with the same values as the JSON predict endpoint answers.
    """
    count = len(outputs)
    if task_type == CLASSIFICATION:
        tensors = {
            "label": {
                "name": "label",
                "datatype": "BYTES",
                "shape": [count],
                "data": [str(output["label"]) for output in outputs],
            },
            "probabilities": {
                "name": "probabilities",
                "datatype": "FP64",
                "shape": [count, len(labels)],
                "data": [output["probabilities"][str(label)] for output in outputs for label in labels],
            },
        }
    else:
        tensors = {
            "value": {
                "name": "value",
                "datatype": "FP64",
                "shape": [count],
                "data": [output["value"] for output in outputs],
            }
        }
    return [tensors[name] for name in names]
