"""ONNX export of XGBoost versions (parity, determinism, missing values) and the checks on uploaded ONNX files."""

import hashlib
import json
import pickle
import zipfile
import zlib
from io import BytesIO

import joblib
import numpy as np
import onnx
import pytest
import xgboost as xgb
from onnx import TensorProto, helper, numpy_helper

from apps.registry.onnx_models import (
    PARITY_TOLERANCE,
    OnnxError,
    OnnxScorer,
    export_xgboost,
    inspect_onnx,
    onnx_for_signature_check,
)

NAMES = ["f0_age", "f1_income", "f2_city", "f3_tenure"]
REPORT_KEYS = {"rows", "max_abs_diff", "max_rel_diff", "tolerance", "kind", "passed"}


def generated(rows: int, seed: int) -> np.ndarray:
    """Four features with about 15% missing values (NaN), as the feature pipeline hands them to XGBoost."""
    rng = np.random.default_rng(seed)
    matrix = np.column_stack(
        [
            rng.integers(18, 80, rows),
            rng.uniform(1000, 9000, rows),
            rng.integers(0, 3, rows),
            rng.exponential(5, rows),
        ]
    ).astype(np.float32)
    matrix[rng.random(matrix.shape) < 0.15] = np.nan
    return matrix


def target(matrix: np.ndarray, kind: str) -> np.ndarray:
    # Missing income leans towards the positive class, so trees learn both default directions.
    income = np.where(np.isnan(matrix[:, 1]), 8000.0, matrix[:, 1])
    age = np.nan_to_num(matrix[:, 0], nan=40.0)
    score = income / 9000 + (age - 50) / 100 + 0.1 * np.nan_to_num(matrix[:, 2])
    if kind == "binary":
        return (score > 0.55).astype(np.float32)
    if kind == "multiclass":
        return np.digitize(score, [0.4, 0.75]).astype(np.float32)
    return (1000 * score + np.nan_to_num(matrix[:, 3])).astype(np.float32)


OBJECTIVES = {
    "binary": ({"objective": "binary:logistic"}, "classification", 2),
    "multiclass": ({"objective": "multi:softprob", "num_class": 3}, "classification", 3),
    "regression": ({"objective": "reg:squarederror"}, "regression", 0),
}


def train(kind: str, *, objective: dict | None = None, rounds: int = 30) -> bytes:
    matrix = generated(200, seed=1)
    params = {**(objective or OBJECTIVES[kind][0]), "max_depth": 4, "eta": 0.3, "seed": 0, "nthread": 1}
    dtrain = xgb.DMatrix(matrix, label=target(matrix, kind), feature_names=NAMES)
    return bytes(xgb.train(params, dtrain, num_boost_round=rounds).save_raw("ubj"))


def booster(model_ubj: bytes) -> xgb.Booster:
    loaded = xgb.Booster()
    loaded.load_model(bytearray(model_ubj))
    return loaded


@pytest.fixture(scope="module")
def holdout() -> np.ndarray:
    """New rows with missing values, a row with nothing known, and training rows (values at split points)."""
    return np.vstack([generated(80, seed=2), np.full((1, 4), np.nan, dtype=np.float32), generated(200, seed=1)[:20]])


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    return {kind: train(kind) for kind in OBJECTIVES}


def export(kind: str, model_ubj: bytes, holdout: np.ndarray) -> tuple[bytes, dict]:
    _, task_type, n_classes = OBJECTIVES[kind]
    return export_xgboost(model_ubj, n_features=4, task_type=task_type, n_classes=n_classes, holdout=holdout)


# Export


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_export_passes_parity_on_a_holdout_with_missing_values(models, holdout, kind):
    assert np.isnan(holdout).any(axis=1).sum() >= 40
    onnx_bytes, report = export(kind, models[kind], holdout)

    assert set(report) == REPORT_KEYS
    assert report["rows"] == 101
    assert report["tolerance"] == PARITY_TOLERANCE == 1e-5
    assert report["kind"] == ("relative" if kind == "regression" else "absolute")
    assert report["passed"] is True
    assert 0.0 <= report["max_rel_diff"] <= report["max_abs_diff"]
    assert report["max_rel_diff" if kind == "regression" else "max_abs_diff"] <= 1e-5
    model = onnx.load_model_from_string(onnx_bytes)
    assert model.graph.name == "faro_xgboost"
    assert model.producer_name == "Faro"
    assert [value.name for value in model.graph.input] == ["input"]


def test_trees_send_missing_values_both_ways_and_missing_changes_the_prediction(models, holdout):
    """The parity above covers NaN routing only if the trees route missing values both left and right."""
    dumped = [json.loads(tree) for tree in booster(models["binary"]).get_dump(dump_format="json")]
    directions = set()

    def walk(node):
        if "children" in node:
            directions.add("yes" if node["missing"] == node["yes"] else "no")
            for child in node["children"]:
                walk(child)

    for tree in dumped:
        walk(tree)
    assert directions == {"yes", "no"}

    onnx_bytes, _ = export("binary", models["binary"], holdout)
    scorer = OnnxScorer(onnx_bytes)
    missing, zeros = np.full((1, 4), np.nan, dtype=np.float32), np.zeros((1, 4), dtype=np.float32)
    assert abs(scorer.predict(missing)[0, 1] - scorer.predict(zeros)[0, 1]) > 1e-3
    expected = float(booster(models["binary"]).inplace_predict(missing)[0])
    assert scorer.predict(missing)[0, 1] == pytest.approx(expected, abs=1e-5)


def test_early_stopped_booster_cut_at_its_best_iteration_exports_with_parity(holdout):
    """Training keeps booster[: best_iteration + 1]; the export must score with exactly those trees."""
    matrix = generated(200, seed=1)
    labels = target(matrix, "multiclass")
    fit = xgb.DMatrix(matrix[:150], label=labels[:150], feature_names=NAMES)
    valid = xgb.DMatrix(matrix[150:], label=labels[150:], feature_names=NAMES)
    trained = xgb.train(
        {**OBJECTIVES["multiclass"][0], "max_depth": 4, "eta": 0.5, "seed": 0, "nthread": 1},
        fit,
        num_boost_round=200,
        evals=[(valid, "valid")],
        early_stopping_rounds=3,
        verbose_eval=False,
    )
    assert trained.best_iteration < 100
    kept = trained[: trained.best_iteration + 1]

    onnx_bytes, report = export("multiclass", bytes(kept.save_raw("ubj")), holdout)
    assert report["passed"] is True and report["max_abs_diff"] <= 1e-5
    attributes = onnx.load_model_from_string(onnx_bytes).graph.node[0].attribute
    (tree_ids,) = [attribute.ints for attribute in attributes if attribute.name == "nodes_treeids"]
    assert max(tree_ids) + 1 == 3 * (trained.best_iteration + 1)


def test_export_is_deterministic(models, holdout):
    first, _ = export("multiclass", models["multiclass"], holdout)
    second, _ = export("multiclass", bytes(models["multiclass"]), holdout[:10])
    assert first == second
    assert hashlib.sha256(first).hexdigest() == inspect_onnx(second)["sha256"]


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_scorer_matches_the_booster(models, holdout, kind):
    onnx_bytes, _ = export(kind, models[kind], holdout)
    scorer = OnnxScorer(onnx_bytes)
    expected = booster(models[kind]).inplace_predict(holdout)
    got = scorer.predict(holdout)

    assert scorer.input_width == 4
    if kind == "binary":
        assert got.shape == (101, 2)
        np.testing.assert_allclose(got[:, 1], expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-6)
    elif kind == "multiclass":
        assert got.shape == (101, 3)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    else:
        assert got.shape == (101,)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_export_refuses_when_onnx_does_not_reproduce_the_booster(holdout):
    """binary:logitraw predicts margins; the converter applies a sigmoid, so parity must catch it."""
    raw_margins = train("binary", objective={"objective": "binary:logitraw"})
    with pytest.raises(OnnxError, match=r"does not reproduce the booster: on holdout row \d+ the probability"):
        export_xgboost(raw_margins, n_features=4, task_type="classification", n_classes=2, holdout=holdout)


def test_export_refuses_inputs_that_do_not_fit_the_booster(models, holdout):
    with pytest.raises(OnnxError, match="reads 4 features, but the version declares 5"):
        export_xgboost(models["binary"], n_features=5, task_type="classification", n_classes=2, holdout=holdout)
    with pytest.raises(OnnxError, match=r"holdout must be a matrix with 4 columns; got shape \(101, 3\)"):
        export_xgboost(models["binary"], n_features=4, task_type="classification", n_classes=2, holdout=holdout[:, :3])
    with pytest.raises(OnnxError, match="holdout has no rows"):
        export_xgboost(models["binary"], n_features=4, task_type="classification", n_classes=2, holdout=holdout[:0])
    with pytest.raises(OnnxError, match="task does not match its model"):
        export_xgboost(models["binary"], n_features=4, task_type="classification", n_classes=3, holdout=holdout)
    with pytest.raises(OnnxError, match="could not be read as an XGBoost booster"):
        export_xgboost(b"not a booster", n_features=4, task_type="regression", n_classes=0, holdout=holdout)


# Import: models made elsewhere


def sklearn_onnx(zipmap: bool) -> tuple[bytes, object, np.ndarray]:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression

    matrix = np.nan_to_num(generated(200, seed=3))
    labels = target(matrix, "binary")
    classifier = LogisticRegression(max_iter=1000).fit(matrix, labels)
    model = convert_sklearn(
        classifier,
        initial_types=[("features", FloatTensorType([None, 4]))],
        options={type(classifier): {"zipmap": zipmap}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return model.SerializeToString(), classifier, matrix


def sigmoid_model(*, batch: int | str = "batch", width: int | str = 3) -> tuple[bytes, np.ndarray, np.ndarray]:
    """What a tiny torch.onnx.export / tf2onnx logistic layer looks like: MatMul, Add, Sigmoid."""
    weights = np.array([[0.5], [-1.0], [2.0]], dtype=np.float32)
    bias = np.array([0.25], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "weight"], ["logit_raw"]),
            helper.make_node("Add", ["logit_raw", "bias"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["probability"]),
        ],
        "logistic",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, width])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, [batch, 1])],
        initializer=[numpy_helper.from_array(weights, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    model.producer_version = "2.5.0"
    model.ir_version = 8
    return model.SerializeToString(), weights, bias


def test_sklearn_model_exported_with_skl2onnx_inspects_and_scores():
    onnx_bytes, classifier, matrix = sklearn_onnx(zipmap=False)
    info = inspect_onnx(onnx_bytes)

    assert info["inputs"] == [{"name": "features", "elem_type": "float", "shape": [None, 4]}]
    assert info["outputs"] == [
        {"name": "label", "elem_type": "int64", "shape": [None]},
        {"name": "probabilities", "elem_type": "float", "shape": [None, 2]},
    ]
    assert info["opset"] == 17
    assert info["opsets"] == {"ai.onnx": 17, "ai.onnx.ml": 1}
    assert info["producer"] == "skl2onnx 1.20.0"
    assert info["sha256"] == hashlib.sha256(onnx_bytes).hexdigest()
    onnx_for_signature_check(info, 4)

    scorer = OnnxScorer(onnx_bytes)
    assert scorer.input_width == 4
    np.testing.assert_allclose(scorer.predict(matrix), classifier.predict_proba(matrix), rtol=0, atol=1e-5)


def test_zipmap_output_is_read_as_a_probability_matrix():
    onnx_bytes, classifier, matrix = sklearn_onnx(zipmap=True)
    info = inspect_onnx(onnx_bytes)
    assert info["outputs"][1] == {"name": "output_probability", "elem_type": "seq(map(int64,float))", "shape": None}

    got = OnnxScorer(onnx_bytes).predict(matrix[:7])
    assert got.shape == (7, 2)
    np.testing.assert_allclose(got, classifier.predict_proba(matrix[:7]), rtol=0, atol=1e-5)


def test_hand_built_graph_inspects_and_scores():
    onnx_bytes, weights, bias = sigmoid_model()
    info = inspect_onnx(onnx_bytes)

    assert info["inputs"] == [{"name": "x", "elem_type": "float", "shape": [None, 3]}]
    assert info["outputs"] == [{"name": "probability", "elem_type": "float", "shape": [None, 1]}]
    assert (info["opset"], info["producer"]) == (17, "pytorch 2.5.0")

    matrix = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.5, -2.0]], dtype=np.float32)
    got = OnnxScorer(onnx_bytes).predict(matrix)
    expected = 1 / (1 + np.exp(-(matrix @ weights + bias)))[:, 0]
    assert got.shape == (3,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_fixed_batch_of_one_is_scored_row_by_row():
    onnx_bytes, weights, bias = sigmoid_model(batch=1)
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    got = OnnxScorer(onnx_bytes).predict(matrix)
    np.testing.assert_allclose(got, (1 / (1 + np.exp(-(matrix @ weights + bias))))[:, 0], rtol=0, atol=1e-6)


def test_signature_check_compares_fixed_widths_only():
    fixed = inspect_onnx(sigmoid_model()[0])
    onnx_for_signature_check(fixed, 3)
    with pytest.raises(OnnxError, match="expects 3 input columns, but the signature declares 4 inputs"):
        onnx_for_signature_check(fixed, 4)

    dynamic = inspect_onnx(sigmoid_model(width="features")[0])
    assert dynamic["inputs"][0]["shape"] == [None, None]
    onnx_for_signature_check(dynamic, 4)
    assert OnnxScorer(sigmoid_model(width="features")[0]).input_width is None


def two_input_model() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["sum"])],
        "two_inputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["n", 2]),
        ],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["n", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_models_without_a_single_float_matrix_input_are_refused_for_scoring():
    info = inspect_onnx(two_input_model())
    with pytest.raises(OnnxError, match=r"one 2-D float input; this one has 2 \('a', 'b'\)"):
        onnx_for_signature_check(info, 2)
    with pytest.raises(OnnxError, match=r"one 2-D float input; this one has 2 \('a', 'b'\)"):
        OnnxScorer(two_input_model())


# Import: refusals


def joblib_bytes(tmp_path, compress) -> bytes:
    path = tmp_path / "model.joblib"
    joblib.dump({"weights": [1.0, 2.0]}, path, compress=compress)
    return path.read_bytes()


def torch_like_zip() -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"weight": [1.0]}))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def external_data_model(*, in_subgraph: bool) -> bytes:
    """A model whose weight lives in 'weights.bin' next to it: valid ONNX, but not one self-contained file."""
    weight = TensorProto(name="weight", data_type=TensorProto.FLOAT, dims=[3, 1])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", "12")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1])
    if not in_subgraph:
        graph = helper.make_graph([helper.make_node("MatMul", ["x", "weight"], ["y"])], "g", [x], [y], [weight])
    else:
        branch = helper.make_graph(
            [helper.make_node("Constant", [], ["w"], value=weight), helper.make_node("MatMul", ["x", "w"], ["out"])],
            "branch",
            [],
            [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 1])],
        )
        flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
        node = helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=branch)
        graph = helper.make_graph([node], "g", [x, flag], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def invalid_graph() -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["undefined"], ["y"])],
        "broken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


PICKLE = "This file is a Python pickle; Faro only loads ONNX models (pickles can run code when loaded)."
REFUSALS = {
    "pickle": (lambda _: pickle.dumps({"weights": [1.0, 2.0]}), PICKLE),
    "pickle protocol 0": (lambda _: pickle.dumps({"weights": [1.0, 2.0]}, protocol=0), PICKLE),
    "joblib": (lambda tmp: joblib_bytes(tmp, 0), PICKLE),
    "joblib zlib": (lambda tmp: joblib_bytes(tmp, ("zlib", 3)), "zlib-compressed, as joblib saves its pickles"),
    "joblib gzip": (lambda tmp: joblib_bytes(tmp, ("gzip", 3)), "gzip-compressed, as joblib saves its pickles"),
    "zlib": (lambda _: zlib.compress(pickle.dumps([1, 2, 3])), "zlib-compressed"),
    "zip": (lambda _: torch_like_zip(), "zip archive (as PyTorch .pt/.pth and Keras .keras files are)"),
    "PK header": (lambda _: b"PK\x03\x04" + bytes(60), "zip archive"),
    "hdf5": (lambda _: b"\x89HDF\r\n\x1a\n" + bytes(60), "HDF5 (as Keras .h5 models are)"),
    "empty": (lambda _: b"", "The file is empty"),
    "random": (lambda _: np.random.default_rng(5).bytes(4096), "This file is not an ONNX model"),
    "text": (lambda _: b"a,b,label\n1,2,yes\n", "This file is not an ONNX model"),
    "external data": (
        lambda _: external_data_model(in_subgraph=False),
        "keeps tensor 'weight' in an external file ('weights.bin'); Faro needs one self-contained file",
    ),
    "external data in a subgraph": (
        lambda _: external_data_model(in_subgraph=True),
        "keeps tensor 'weight' in an external file ('weights.bin')",
    ),
    "invalid graph": (lambda _: invalid_graph(), "This ONNX model is not valid: "),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_files_that_are_not_self_contained_onnx_are_refused(tmp_path, case):
    make, message = REFUSALS[case]
    with pytest.raises(OnnxError) as refused:
        inspect_onnx(make(tmp_path))
    assert message in str(refused.value)
