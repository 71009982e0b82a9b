"""The V2 tensors of a model, in plain Python: metadata, request decoding with every refusal, output encoding."""

import pytest

from apps.core.errors import InvalidInput
from apps.predictions.open_inference import infer_request_decode, model_metadata, output_tensors

SIGNATURE = [
    {"name": "income", "type": "number", "nullable": False, "minimum": 1000.0, "maximum": 9000.0},
    {"name": "age", "type": "integer", "nullable": True, "minimum": 18, "maximum": 80},
    {"name": "city", "type": "category", "nullable": False, "categories": ["east", "north", "south"]},
]
NUMBER_TYPES = "a number datatype (FP16/32/64, INT8/16/32/64 or UINT8/16/32/64)"
INCOME = {"name": "income", "shape": [1], "datatype": "FP64", "data": [5200.5]}
CITY = {"name": "city", "shape": [1], "datatype": "BYTES", "data": ["north"]}


def decode(body, *, signature=SIGNATURE, subject_key="customer_id", task_type="classification"):
    return infer_request_decode(body, signature=signature, subject_key=subject_key, task_type=task_type)


def refusal(body, **kwargs) -> dict:
    with pytest.raises(InvalidInput) as caught:
        decode(body, **kwargs)
    return {"message": caught.value.message, "extra": caught.value.extra}


def tensor_errors(*errors: tuple[str, str]) -> dict:
    return {
        "message": f"{len(errors)} problem(s) with the tensors.",
        "extra": {"errors": [{"tensor": tensor, "message": message} for tensor, message in errors]},
    }


# -- metadata ------------------------------------------------------------------------------------------


def test_every_input_type_has_its_datatype_and_a_regression_model_answers_a_value():
    signature = [
        {"name": "amount", "type": "number"},
        {"name": "months", "type": "integer"},
        {"name": "purpose", "type": "category"},
        {"name": "opened", "type": "datetime"},
        {"name": "guarantor", "type": "boolean"},
    ]
    assert model_metadata(
        name="spend", versions=[1, 3], platform="onnx", signature=signature, task_type="regression", labels=[]
    ) == {
        "name": "spend",
        "versions": ["1", "3"],
        "platform": "onnx",
        "inputs": [
            {"name": "amount", "datatype": "FP64", "shape": [-1]},
            {"name": "months", "datatype": "INT64", "shape": [-1]},
            {"name": "purpose", "datatype": "BYTES", "shape": [-1]},
            {"name": "opened", "datatype": "BYTES", "shape": [-1]},
            {"name": "guarantor", "datatype": "BOOL", "shape": [-1]},
        ],
        "outputs": [{"name": "value", "datatype": "FP64", "shape": [-1]}],
    }


def test_a_classifier_answers_a_label_and_one_probability_column_per_label():
    metadata = model_metadata(
        name="grade", versions=[2], platform="xgboost", signature=SIGNATURE, task_type="classification", labels="abc"
    )
    assert metadata["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
    ]


# -- decoding ------------------------------------------------------------------------------------------


def test_columns_become_rows_in_signature_order_with_the_subject_key():
    decoded = decode(
        {
            "id": "r-9",
            "inputs": [
                {"name": "customer_id", "shape": [2], "datatype": "INT64", "data": [17, 18]},
                {"name": "city", "shape": [2, 1], "datatype": "BYTES", "data": [["north"], ["east"]]},
                {"name": "age", "shape": [2], "datatype": "UINT8", "data": [41, None]},
                {"name": "income", "shape": [2, 1], "datatype": "FP32", "data": [5200.5, 1200]},
            ],
            "outputs": [{"name": "probabilities"}, {"name": "label"}, {"name": "probabilities"}],
            "parameters": {"binary_data_output": True},
        }
    )
    assert decoded.id == "r-9"
    assert decoded.rows == [
        {"income": 5200.5, "age": 41, "city": "north", "customer_id": 17},
        {"income": 1200, "age": None, "city": "east", "customer_id": 18},
    ]
    assert [list(row) for row in decoded.rows] == [["income", "age", "city", "customer_id"]] * 2
    assert decoded.outputs == ["probabilities", "label"]


def test_every_output_by_default_and_a_boolean_input_takes_bool():
    decoded = decode(
        {"inputs": [{"name": "flag", "shape": [1], "datatype": "BOOL", "data": [True]}]},
        signature=[{"name": "flag", "type": "boolean"}],
        subject_key="",
        task_type="regression",
    )
    assert (decoded.id, decoded.rows, decoded.outputs) == (None, [{"flag": True}], ["value"])


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "age", "shape": [1], "datatype": "INT8", "data": [300]}, "row 0 must be an integer from -128 to 127"),
        ({"name": "age", "shape": [1], "datatype": "UINT8", "data": [-1]}, "row 0 must be an integer from 0 to 255"),
        (
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [41.5]},
            f"row 0 must be an integer from {-(2**63)} to {2**63 - 1}",
        ),
        (
            {"name": "age", "shape": [1], "datatype": "INT32", "data": [True]},
            f"row 0 must be an integer from {-(2**31)} to {2**31 - 1}",
        ),
        ({"name": "age", "shape": [1], "datatype": "FP64", "data": ["41"]}, "row 0 must be a number"),
        ({"name": "age", "shape": [1], "datatype": "FP64", "data": [True]}, "row 0 must be a number"),
        ({"name": "age", "shape": [1], "datatype": "FP64", "data": [float("nan")]}, "row 0 must be a finite number"),
        ({"name": "age", "shape": [1], "datatype": "FP32", "data": [10**400]}, "row 0 must be a finite number"),
        (
            {"name": "age", "shape": [1], "datatype": "BOOL", "data": [True]},
            f"is BOOL, but this input takes {NUMBER_TYPES}",
        ),
        (
            {"name": "age", "shape": [1], "datatype": "BYTES", "data": ["41"]},
            f"is BYTES, but this input takes {NUMBER_TYPES}",
        ),
        (
            {"name": "age", "shape": [1], "datatype": "FP8", "data": [1]},
            "has unknown datatype 'FP8'; JSON tensors take "
            "BOOL, INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32, UINT64, FP16, FP32, FP64, BYTES",
        ),
        ({"name": "age", "shape": [1], "datatype": 64, "data": [41]}, "needs a 'datatype' string"),
        ({"name": "age", "shape": [1], "data": [41]}, "needs a 'datatype' string"),
        (
            {"name": "age", "shape": [1], "datatype": "INT64"},
            "needs 'data' (binary and shared-memory tensor data are not supported)",
        ),
        ({"name": "age", "shape": [1], "datatype": "INT64", "data": 41}, "needs 'data' as a list"),
        (
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [[41]]},
            "has data nested deeper than its shape [1]",
        ),
        (
            {"name": "age", "shape": [1, 1], "datatype": "INT64", "data": [[[41]]]},
            "has data nested deeper than its shape [1, 1]",
        ),
        (
            {"name": "age", "shape": [2], "datatype": "INT64", "data": [41]},
            "has shape [2] (2 element(s)) but 1 data element(s)",
        ),
        (
            {"name": "age", "shape": [1, 2], "datatype": "INT64", "data": [41, 42]},
            "has shape [1, 2]; an input tensor is one column: [n] or [n, 1]",
        ),
        (
            {"name": "age", "shape": [1, 1, 1], "datatype": "INT64", "data": [41]},
            "has shape [1, 1, 1]; an input tensor is one column: [n] or [n, 1]",
        ),
        (
            {"name": "age", "shape": [-1], "datatype": "INT64", "data": [41]},
            "needs a 'shape': a list of non-negative integers",
        ),
        (
            {"name": "age", "shape": [], "datatype": "INT64", "data": [41]},
            "needs a 'shape': a list of non-negative integers",
        ),
        (
            {"name": "age", "shape": [True], "datatype": "INT64", "data": [41]},
            "needs a 'shape': a list of non-negative integers",
        ),
        (
            {"name": "age", "shape": "1", "datatype": "INT64", "data": [41]},
            "needs a 'shape': a list of non-negative integers",
        ),
        (
            {"name": "age", "shape": [1], "datatype": "INT64", "data": [41], "contents": {}},
            "has unknown field(s): contents",
        ),
    ],
)
def test_a_malformed_tensor_is_refused_naming_it(tensor, message):
    assert refusal({"inputs": [INCOME, tensor, CITY]}) == tensor_errors(("age", message))


def test_a_category_takes_bytes_and_the_subject_key_bytes_or_integers():
    assert refusal(
        {
            "inputs": [
                INCOME,
                {"name": "city", "shape": [1], "datatype": "BYTES", "data": [7]},
                {"name": "customer_id", "shape": [1], "datatype": "FP64", "data": [7.0]},
            ]
        }
    ) == tensor_errors(
        ("city", "row 0 must be a string"),
        ("customer_id", "is FP64, but this input takes BYTES or an INT/UINT datatype"),
        ("age", "is a required input and is missing"),
    )


def test_a_boolean_input_takes_only_true_or_false():
    assert refusal(
        {"inputs": [{"name": "flag", "shape": [2], "datatype": "BOOL", "data": [True, 1]}]},
        signature=[{"name": "flag", "type": "boolean"}],
    ) == tensor_errors(("flag", "row 1 must be true or false"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            [],
            {
                "message": "The body must be a JSON object with an 'inputs' list.",
                "extra": {"fields": {"body": ["Expected a JSON object."]}},
            },
        ),
        ({}, {"message": "Invalid request body.", "extra": {"fields": {"inputs": ["This field is required."]}}}),
        (
            {"inputs": []},
            {
                "message": "Invalid request body.",
                "extra": {"fields": {"inputs": ["Must be a non-empty list of tensors."]}},
            },
        ),
        (
            {"inputs": [1], "id": 7, "outputs": ["label"], "parameters": [], "explain": True},
            {
                "message": "Invalid request body.",
                "extra": {
                    "fields": {
                        "explain": ["Unknown field."],
                        "id": ["Must be a string."],
                        "outputs": ["Must be a list of objects with a 'name' string."],
                        "parameters": ["Must be an object."],
                    }
                },
            },
        ),
        (
            {"inputs": [1, {"shape": [1]}, INCOME, INCOME]},
            tensor_errors(
                ("inputs[0]", "must be an object with name, shape, datatype and data"),
                ("inputs[1]", "needs a 'name' string"),
                ("income", "is given more than once"),
                ("age", "is a required input and is missing"),
                ("city", "is a required input and is missing"),
            ),
        ),
    ],
)
def test_a_malformed_request_object_is_refused(body, expected):
    assert refusal(body) == expected


# -- outputs -------------------------------------------------------------------------------------------


def test_outputs_become_tensors_in_the_requested_order():
    outputs = [
        {"label": "b", "probabilities": {"a": 0.1, "b": 0.7, "c": 0.2}},
        {"label": "a", "probabilities": {"a": 0.5, "b": 0.25, "c": 0.25}},
    ]
    assert output_tensors(
        outputs=outputs, labels=["a", "b", "c"], task_type="classification", names=["probabilities", "label"]
    ) == [
        {"name": "probabilities", "datatype": "FP64", "shape": [2, 3], "data": [0.1, 0.7, 0.2, 0.5, 0.25, 0.25]},
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["b", "a"]},
    ]
    assert output_tensors(
        outputs=[{"value": 1.5}, {"value": -2.0}], labels=[], task_type="regression", names=["value"]
    ) == [{"name": "value", "datatype": "FP64", "shape": [2], "data": [1.5, -2.0]}]


def test_integer_labels_travel_as_text():
    outputs = [{"label": 1, "probabilities": {"0": 0.2, "1": 0.8}}]
    assert output_tensors(
        outputs=outputs, labels=[0, 1], task_type="classification", names=["label", "probabilities"]
    ) == [
        {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["1"]},
        {"name": "probabilities", "datatype": "FP64", "shape": [1, 2], "data": [0.2, 0.8]},
    ]
