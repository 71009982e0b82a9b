"""ONNX models: export a trained XGBoost booster with verified parity, and check ONNX files made elsewhere.

No Django here. onnx, onnxruntime, onnxmltools and xgboost are imported inside the functions, so that
importing this module loads none of them on a web process that never touches a model.

Exports are deterministic: the same booster bytes give the same ONNX bytes (fixed graph name, producer
and opset; no timestamps or random names). An export is returned only after onnxruntime reproduced
the booster's own predictions on a holdout within `PARITY_TOLERANCE`.

Uploaded files are refused before anything could run them: pickles (and joblib's compressed pickles),
zip archives (PyTorch, Keras), HDF5, files that are not ONNX, ONNX models whose tensors live in
external files, and models the ONNX checker rejects. A pickle is recognised by its bytes
(`pickletools` reads opcodes without executing any); nothing here ever unpickles.
"""

from __future__ import annotations

import hashlib
import pickletools  # nosec B403 # only genops: reads opcodes, never unpickles
from typing import Any

import numpy as np

from apps.registry.training import CLASSIFICATION, REGRESSION

PARITY_TOLERANCE = 1e-5
# The highest opset onnxmltools 1.16 converts XGBoost to; pinned so that an onnx upgrade does not change
# the exported bytes. TreeEnsemble* from ai.onnx.ml 1 is what it emits, and every onnxruntime runs it.
TARGET_OPSET = 15
GRAPH_NAME = "faro_xgboost"
PRODUCER_NAME = "Faro"
INPUT_NAME = "input"

_PICKLE_MESSAGE = "This file is a Python pickle; Faro only loads ONNX models (pickles can run code when loaded)."
_EXPORT_HINT = "Export the model to ONNX (skl2onnx, onnxmltools, torch.onnx.export, tf2onnx) and upload the .onnx file."
# Leading bytes of formats that models are often saved in instead of ONNX. An ONNX file starts with a
# protobuf field tag (0x08 for ir_version in every exporter), which none of these can be mistaken for.
_COMPRESSED = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bz2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
    (b"ZF", "zlib"),  # joblib before 0.9.3
)
_ZIP_PREFIXES = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_HDF5_PREFIX = b"\x89HDF\r\n\x1a\n"


class OnnxError(Exception):
    """A model cannot be exported, accepted or scored; the message says why, for a person to act on."""


# Export


def export_xgboost(
    model_ubj: bytes, *, n_features: int, task_type: str, n_classes: int, holdout: np.ndarray
) -> tuple[bytes, dict[str, Any]]:
    """ONNX bytes for an XGBoost booster stored as UBJ, and the parity report on `holdout`.

    `holdout` is a float32 matrix of the model's inputs (NaN = missing, as the booster reads it).
    Parity compares onnxruntime with `booster.inplace_predict` row by row: for a classifier, every
    class probability (for a binary one, the probability of class 1) within 1e-5 absolute; for a
    regressor, |onnx - xgboost| <= 1e-5 * max(1, |xgboost|), i.e. relative for large values and
    absolute near zero. Raises OnnxError, naming the worst row, when parity fails.
    """
    import onnx
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType

    if task_type not in (CLASSIFICATION, REGRESSION):
        raise OnnxError(f"Unknown task type {task_type!r}; expected {CLASSIFICATION!r} or {REGRESSION!r}.")
    if task_type == CLASSIFICATION and n_classes < 2:
        raise OnnxError(f"A classifier needs at least two classes; got {n_classes}.")

    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(model_ubj))
    except xgb.core.XGBoostError as exc:
        raise OnnxError(f"The stored model could not be read as an XGBoost booster: {_first_line(exc)}") from None
    if booster.num_features() != n_features:
        raise OnnxError(f"The booster reads {booster.num_features()} features, but the version declares {n_features}.")
    matrix = _holdout_matrix(holdout, n_features)

    # The converter maps split features by the names "f0".."fN"; ours are "f0_age", so it converts a
    # copy without names. Splits refer to columns by position either way.
    unnamed = booster.copy()
    unnamed.feature_names = None
    try:
        model = onnxmltools.convert_xgboost(
            unnamed,
            name=GRAPH_NAME,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            target_opset=TARGET_OPSET,
        )
    except (RuntimeError, ValueError, TypeError, KeyError) as exc:
        raise OnnxError(f"The booster could not be converted to ONNX: {_first_line(exc)}") from None
    model.producer_name = PRODUCER_NAME
    model.producer_version = f"onnxmltools {onnxmltools.__version__}"
    # The converter imports only ai.onnx.ml; declaring the default domain too tells a reader (and
    # inspect_onnx) which ONNX opset the model targets.
    if not any(entry.domain in ("", "ai.onnx") for entry in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("", TARGET_OPSET))
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise OnnxError(f"The converted model is not valid ONNX: {_first_line(exc)}") from None
    onnx_bytes = model.SerializeToString(deterministic=True)

    expected = np.asarray(booster.inplace_predict(matrix), dtype=np.float64)
    got = np.asarray(OnnxScorer(onnx_bytes).predict(matrix), dtype=np.float64)
    report = _parity(expected, got, task_type=task_type, n_classes=n_classes)
    return onnx_bytes, report


def _holdout_matrix(holdout: np.ndarray, n_features: int) -> np.ndarray:
    matrix = np.asarray(holdout, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != n_features:
        raise OnnxError(f"The holdout must be a matrix with {n_features} columns; got shape {matrix.shape}.")
    if matrix.shape[0] == 0:
        raise OnnxError("The holdout has no rows; parity needs at least one.")
    return np.ascontiguousarray(matrix)


def _parity(expected: np.ndarray, got: np.ndarray, *, task_type: str, n_classes: int) -> dict[str, Any]:
    """Compare onnxruntime with XGBoost; the report when they agree, OnnxError naming the worst row if not."""
    rows = expected.shape[0]
    if task_type == CLASSIFICATION and n_classes == 2 and got.ndim == 2 and got.shape[1] == 2:
        got = got[:, 1]  # XGBoost gives P(class 1); the ONNX classifier gives both columns.
    expected_shape = (rows, n_classes) if task_type == CLASSIFICATION and n_classes > 2 else (rows,)
    declared = f"a {n_classes}-class classifier" if task_type == CLASSIFICATION else "a regressor"
    for source, shape in (("booster", expected.shape), ("ONNX model", got.shape)):
        if shape != expected_shape:
            raise OnnxError(
                f"The {source} predicts shape {shape}, not {expected_shape} as {declared} would; "
                "the version's task does not match its model."
            )

    absolute = np.abs(got - expected)
    relative = absolute / np.maximum(1.0, np.abs(expected))
    # A NaN or infinity on either side is a mismatch, never a pass.
    finite = np.isfinite(got) & np.isfinite(expected)
    absolute = np.where(finite, absolute, np.inf)
    relative = np.where(finite, relative, np.inf)
    kind = "relative" if task_type == REGRESSION else "absolute"
    measured = relative if kind == "relative" else absolute
    worst = np.unravel_index(int(np.argmax(measured)), measured.shape)
    if measured[worst] > PARITY_TOLERANCE:
        if task_type == REGRESSION:
            what = "the predicted value"
        else:
            what = f"the probability of class {int(worst[1]) if len(worst) > 1 else 1}"
        raise OnnxError(
            f"The ONNX export does not reproduce the booster: on holdout row {int(worst[0])} {what} differs by "
            f"{float(absolute[worst]):.3g} (ONNX {float(got[worst]):.9g}, XGBoost {float(expected[worst]):.9g}); "
            f"the tolerance is {PARITY_TOLERANCE:g} {kind}."
        )
    return {
        "rows": int(rows),
        "max_abs_diff": float(absolute.max()),
        "max_rel_diff": float(relative.max()),
        "tolerance": PARITY_TOLERANCE,
        "kind": kind,
        "passed": True,
    }


# Import


def inspect_onnx(data: bytes) -> dict[str, Any]:
    """Inputs, outputs, opset, producer and SHA-256 of an uploaded ONNX model; OnnxError if it is refused.

    `opset` is the default ONNX domain's version (None when the model imports only other domains, such
    as ai.onnx.ml); `opsets` maps every imported domain to its version. A shape is a list with an int
    per fixed dimension and None per named or unknown one, or None when even the rank is unknown.
    """
    import onnx
    from google.protobuf.message import DecodeError

    _refuse_other_formats(data)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, RuntimeError, ValueError):
        model = None
    if model is None or model.ir_version == 0 or not model.HasField("graph"):
        raise OnnxError(f"This file is not an ONNX model (it does not parse as one). {_EXPORT_HINT}")

    external = _external_tensor(model)
    if external is not None:
        name, location = external
        raise OnnxError(
            f"This ONNX model keeps tensor {name!r} in an external file ({location}); Faro needs one "
            "self-contained file. Load it with onnx.load and save it again with "
            "onnx.save_model(model, path, save_as_external_data=False)."
        )
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        raise OnnxError(f"This ONNX model is not valid: {_short(str(exc))}") from None

    initializers = {tensor.name for tensor in model.graph.initializer}
    opsets = {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import}
    producer = f"{model.producer_name} {model.producer_version}".strip()
    return {
        # Before IR 4, initializers were listed as inputs too; they are weights, not what a caller feeds.
        "inputs": [_value_info(value) for value in model.graph.input if value.name not in initializers],
        "outputs": [_value_info(value) for value in model.graph.output],
        "opset": opsets.get("ai.onnx"),
        "opsets": opsets,
        "producer": producer,
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _refuse_other_formats(data: bytes) -> None:
    if not data:
        raise OnnxError("The file is empty; upload an ONNX model (.onnx).")
    if _is_pickle(data):
        raise OnnxError(_PICKLE_MESSAGE)
    if data.startswith(_ZIP_PREFIXES):
        raise OnnxError(
            "This file is a zip archive (as PyTorch .pt/.pth and Keras .keras files are); Faro only loads "
            f"ONNX models. {_EXPORT_HINT}"
        )
    if data.startswith(_HDF5_PREFIX):
        raise OnnxError(f"This file is HDF5 (as Keras .h5 models are); Faro only loads ONNX models. {_EXPORT_HINT}")
    compression = _compression(data)
    if compression is not None:
        raise OnnxError(
            f"This file is {compression}-compressed, as joblib saves its pickles; Faro only loads ONNX models "
            f"(pickles can run code when loaded). {_EXPORT_HINT}"
        )


def _is_pickle(data: bytes) -> bool:
    """True for a pickle of any protocol, judged from its opcodes; nothing is unpickled."""
    # Protocols 2 to 5 open with PROTO and the protocol number.
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return True
    # Protocols 0 and 1 have no header: a pickle is a stream of opcodes that ends with STOP. ONNX's
    # first byte (a protobuf tag such as 0x08) is no opcode, so this fails at once for an ONNX file.
    try:
        last = None
        for opcode, _argument, position in pickletools.genops(data):
            last = (opcode.name, position)
    except Exception:  # genops raises several kinds on a malformed stream; each means "not a pickle"
        return False
    return last is not None and last[0] == "STOP" and last[1] == len(data) - 1


def _compression(data: bytes) -> str | None:
    # A zlib stream opens with CMF 0x78 and a flag byte that makes the pair a multiple of 31.
    if len(data) >= 2 and data[0] == 0x78 and ((data[0] << 8) | data[1]) % 31 == 0:
        return "zlib"
    for prefix, name in _COMPRESSED:
        if data.startswith(prefix):
            return name
    return None


def _external_tensor(model: Any) -> tuple[str, str] | None:
    """The first tensor whose data lives outside the file (name, location), anywhere in the model."""
    from onnx import TensorProto

    for tensor in _tensors(model):
        if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
            entries = {entry.key: entry.value for entry in tensor.external_data}
            location = entries.get("location")
            return tensor.name or "(unnamed)", repr(location) if location else "no location given"
    return None


def _tensors(model: Any):
    """Every TensorProto in the model: initializers, attributes, subgraphs, functions, training graphs."""
    graphs = [model.graph]
    for info in model.training_info:
        graphs += [info.initialization, info.algorithm]
    nodes = [node for function in model.functions for node in function.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            yield from graph.initializer
            for sparse in graph.sparse_initializer:
                yield from (sparse.values, sparse.indices)
            nodes.extend(graph.node)
            continue
        for attribute in nodes.pop().attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield from (attribute.sparse_tensor.values, attribute.sparse_tensor.indices)
            for sparse in attribute.sparse_tensors:
                yield from (sparse.values, sparse.indices)
            if attribute.HasField("g"):
                graphs.append(attribute.g)
            graphs.extend(attribute.graphs)


def _value_info(value: Any) -> dict[str, Any]:
    elem_type, shape = _describe_type(value.type)
    return {"name": value.name, "elem_type": elem_type, "shape": shape}


def _describe_type(type_proto: Any) -> tuple[str, list[int | None] | None]:
    """("float", [None, 4]) for a tensor; ("seq(map(int64,float))", None) for what ZipMap gives."""
    from onnx import TensorProto

    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        tensor = getattr(type_proto, kind)
        elem_type = TensorProto.DataType.Name(tensor.elem_type).lower()
        if not tensor.HasField("shape"):
            return elem_type, None
        return elem_type, [dim.dim_value if dim.HasField("dim_value") else None for dim in tensor.shape.dim]
    if kind == "sequence_type":
        return f"seq({_describe_type(type_proto.sequence_type.elem_type)[0]})", None
    if kind == "map_type":
        key = TensorProto.DataType.Name(type_proto.map_type.key_type).lower()
        return f"map({key},{_describe_type(type_proto.map_type.value_type)[0]})", None
    if kind == "optional_type":
        return f"optional({_describe_type(type_proto.optional_type.elem_type)[0]})", None
    return "unknown", None


def onnx_for_signature_check(info: dict[str, Any], n_inputs: int) -> None:
    """OnnxError unless the model (as inspect_onnx describes it) can take a row of `n_inputs` numbers.

    Faro feeds one 2-D float matrix, a column per signature input; a model whose input width is fixed
    must match that count. A dynamic width is accepted here and checked on every call.
    """
    inputs = info["inputs"]
    if len(inputs) != 1:
        names = ", ".join(repr(value["name"]) for value in inputs)
        raise OnnxError(f"Faro scores ONNX models with one 2-D float input; this one has {len(inputs)} ({names}).")
    (value,) = inputs
    if value["elem_type"] not in ("float", "double"):
        raise OnnxError(f"The model's input {value['name']!r} is {value['elem_type']}; Faro feeds floats.")
    shape = value["shape"]
    if shape is None:
        return
    if len(shape) != 2:
        raise OnnxError(f"The model's input {value['name']!r} has {len(shape)} dimensions; Faro feeds a 2-D matrix.")
    width = shape[1]
    if width is not None and width != n_inputs:
        raise OnnxError(
            f"The model expects {width} input columns, but the signature declares {n_inputs} inputs; "
            "they must match, in the model's column order."
        )


# Scoring


class OnnxScorer:
    """An onnxruntime session for a model with one 2-D float input.

    `predict` gives class probabilities (n, k) when the model outputs them (a float tensor with k >= 2
    columns, or ZipMap's list of dicts, in the model's class order), otherwise the (n,) values of its
    single-column output: a regressor's predictions, or the positive-class probability of a binary
    classifier that outputs only that.
    """

    def __init__(self, onnx_bytes: bytes, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings go to stderr, where no caller sees them
        try:
            self._session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's exception classes share no base but Exception
            raise OnnxError(f"onnxruntime cannot load this model: {_first_line(exc)}") from None

        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(repr(value.name) for value in inputs)
            raise OnnxError(f"Faro scores ONNX models with one 2-D float input; this one has {len(inputs)} ({names}).")
        (value,) = inputs
        dtypes = {"tensor(float)": np.float32, "tensor(double)": np.float64}
        if value.type not in dtypes:
            raise OnnxError(f"The model's input {value.name!r} is {value.type}; Faro feeds a float matrix.")
        shape = value.shape
        if shape is not None and len(shape) != 2:
            raise OnnxError(f"The model's input {value.name!r} has {len(shape)} dimensions; Faro feeds a 2-D matrix.")
        self._input_name = value.name
        self._dtype = dtypes[value.type]
        self._batch = shape[0] if shape is not None and isinstance(shape[0], int) else None
        self._width = shape[1] if shape is not None and isinstance(shape[1], int) else None
        self._output_name, self._zipmap = self._prediction_output()

    @property
    def input_width(self) -> int | None:
        """The number of columns the model takes, or None if its input width is dynamic."""
        return self._width

    def _prediction_output(self) -> tuple[str, bool]:
        outputs = self._session.get_outputs()
        for output in outputs:
            if output.type.startswith("seq(map("):
                return output.name, True
        floats = [output for output in outputs if output.type in ("tensor(float)", "tensor(double)")]
        if not floats:
            kinds = ", ".join(f"{output.name!r}: {output.type}" for output in outputs)
            raise OnnxError(f"The model has no float output to read predictions from ({kinds}).")
        if len(floats) > 1:
            named = [output for output in floats if "prob" in output.name.lower()]
            floats = named or floats
        return floats[0].name, False

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        """Probabilities (n, k) for a classifier, values (n,) otherwise; see the class docstring."""
        matrix = np.ascontiguousarray(matrix, dtype=self._dtype)
        if matrix.ndim != 2:
            raise OnnxError(f"Scoring needs a 2-D matrix; got {matrix.ndim} dimensions.")
        if self._width is not None and matrix.shape[1] != self._width:
            raise OnnxError(f"The model expects {self._width} columns; got {matrix.shape[1]}.")
        if self._batch is not None and matrix.shape[0] != self._batch:
            if self._batch != 1:
                raise OnnxError(f"The model takes exactly {self._batch} rows per call; got {matrix.shape[0]}.")
            # Exported with a fixed batch of one (common for torch.onnx.export without dynamic axes).
            parts = [self._run(matrix[index : index + 1]) for index in range(matrix.shape[0])]
            return np.concatenate(parts) if parts else np.empty((0,), dtype=np.float32)
        return self._run(matrix)

    def _run(self, matrix: np.ndarray) -> np.ndarray:
        (raw,) = self._session.run([self._output_name], {self._input_name: matrix})
        if self._zipmap:
            # ZipMap gives one {class: probability} dict per row, keys in the model's class order.
            if not raw:
                return np.empty((0, 0), dtype=np.float32)
            keys = list(raw[0])
            return np.array([[row[key] for key in keys] for row in raw], dtype=np.float32)
        values = np.asarray(raw)
        if values.ndim == 2 and values.shape[1] == 1:
            return values[:, 0]
        if values.ndim in (1, 2):
            return values
        raise OnnxError(
            f"The model's output {self._output_name!r} has shape {values.shape}; expected 1 or 2 dimensions."
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return _short(text.splitlines()[0] if text else type(exc).__name__)


def _short(text: str, limit: int = 300) -> str:
    """One line of at most `limit` characters: library messages can span lines or quote a whole graph."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
