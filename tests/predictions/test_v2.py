"""The Open Inference Protocol V2 endpoints, spoken to by Triton's own HTTP client.

Against a live server: health, metadata, inference and the decision log, over the wire. In process: the
refusals, each with its exact error body; where a V2 client can build the request, the client library builds
it (`generate_request_body`), otherwise the body is written by hand.
"""

import gzip
from pathlib import Path

import numpy as np
import orjson
import pytest
import tritonclient.http as httpclient
from django.conf import settings
from prometheus_client import REGISTRY
from tritonclient.utils import InferenceServerException

from apps.predictions.models import PredictionRecord
from tests.conftest import train_version, valid_row
from tests.predictions.conftest import refusing

INFER = "/v2/models/loan-risk/infer"
PREDICT = "/api/v1/models/loan-risk/predict"
ROWS = [
    valid_row(income=8900.0),
    valid_row(income=1200.0, age=23, city="east"),
    valid_row(income=5200.5, age=67, city="south"),
]
METADATA = {
    "name": "loan-risk",
    "versions": ["1"],
    "platform": "xgboost",
    "inputs": [
        {"name": "income", "datatype": "FP64", "shape": [-1]},
        {"name": "age", "datatype": "INT64", "shape": [-1]},
        {"name": "city", "datatype": "BYTES", "shape": [-1]},
    ],
    "outputs": [
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
        {"name": "probabilities", "datatype": "FP64", "shape": [-1, 2]},
    ],
}
NUMBER_TYPES = "a number datatype (FP16/32/64, INT8/16/32/64 or UINT8/16/32/64)"
live = pytest.mark.django_db(transaction=True)


@pytest.fixture
def triton(live_server):
    client = httpclient.InferenceServerClient(url=live_server.url.removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture
def auth(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['predict']}"}


NUMPY_TYPES = {"FP64": np.float64, "FP32": np.float32, "INT64": np.int64, "BYTES": np.object_}


def column(name: str, datatype: str, values: list) -> httpclient.InferInput:
    """One input tensor, its data in JSON, as a V2 client builds it."""
    array = np.array(values, dtype=NUMPY_TYPES[datatype])
    return httpclient.InferInput(name, list(array.shape), datatype).set_data_from_numpy(array, binary_data=False)


def tensors(rows) -> list[httpclient.InferInput]:
    return [
        column("income", "FP64", [row["income"] for row in rows]),
        column("age", "INT64", [row["age"] for row in rows]),
        column("city", "BYTES", [row["city"] for row in rows]),
    ]


def requested(*names: str) -> list[httpclient.InferRequestedOutput]:
    return [httpclient.InferRequestedOutput(name, binary_data=False) for name in names]


def refusal(call) -> tuple[str, dict]:
    """The status and the JSON body of a request the client reports as failed."""
    with pytest.raises(InferenceServerException) as caught:
        call()
    return caught.value.status(), orjson.loads(caught.value.debug_details())


def expected_outputs(predicted: list[dict], labels: list[str]) -> list[dict]:
    """The V2 outputs that carry what the JSON predict endpoint answered for the same rows."""
    count = len(predicted)
    return [
        {"name": "label", "datatype": "BYTES", "shape": [count], "data": [output["label"] for output in predicted]},
        {
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [count, len(labels)],
            "data": [output["probabilities"][label] for output in predicted for label in labels],
        },
    ]


def predicted(api, tokens, rows) -> list[dict]:
    response = api.call("post", PREDICT, tokens["predict"], {"inputs": rows})
    assert response.status_code == 200, response.content
    return response.json()["outputs"]


def tensor_errors(*errors: tuple[str, str]) -> dict:
    return {
        "message": f"{len(errors)} problem(s) with the tensors.",
        "extra": {"errors": [{"tensor": tensor, "message": message} for tensor, message in errors]},
    }


# -- over the wire ---------------------------------------------------------------------------------


@live
def test_health_and_readiness(triton, auth, champion):
    assert triton.is_server_live()
    assert triton.is_server_ready()
    assert triton.get_server_metadata() == {"name": "faro", "version": "1.0.0", "extensions": []}
    assert triton.is_model_ready("loan-risk", headers=auth)
    assert triton.is_model_ready("loan-risk", "1", headers=auth)
    assert not triton.is_model_ready("loan-risk", "2", headers=auth)
    assert not triton.is_model_ready("nope", headers=auth)
    assert not triton.is_model_ready("loan-risk")  # no token


@live
def test_model_metadata_is_exact(triton, auth, champion):
    assert champion.labels == ["no", "yes"]
    assert triton.get_model_metadata("loan-risk", headers=auth) == METADATA
    assert triton.get_model_metadata("loan-risk", "1", headers=auth) == METADATA
    assert refusal(lambda: triton.get_model_metadata("nope", headers=auth)) == (
        "404",
        {"message": "No registered model named 'nope'.", "extra": {}},
    )
    assert refusal(lambda: triton.get_model_metadata("loan-risk", "7", headers=auth)) == (
        "404",
        {"message": "loan-risk has no version 7.", "extra": {}},
    )


@live
def test_one_row_scores_as_the_predict_endpoint_does(triton, auth, api, tokens, champion):
    row = ROWS[0]
    result = triton.infer(
        "loan-risk", tensors([row]), outputs=requested("label", "probabilities"), request_id="r-1", headers=auth
    )
    assert result.get_response() == {
        "model_name": "loan-risk",
        "model_version": "1",
        "id": "r-1",
        "outputs": expected_outputs(predicted(api, tokens, [row]), champion.labels),
    }
    assert result.as_numpy("label").tolist() == ["yes"]
    assert result.as_numpy("probabilities").shape == (1, 2)


@live
def test_three_rows_score_as_the_predict_endpoint_does_and_are_logged(triton, auth, api, tokens, champion):
    # No outputs named: the client asks for binary outputs, and is answered in JSON, which it reads as well.
    result = triton.infer("loan-risk", tensors(ROWS), headers=auth)
    response = result.get_response()
    records = list(PredictionRecord.objects.filter(request_id=response["id"]).order_by("row"))
    from_predict = predicted(api, tokens, ROWS)
    assert response == {
        "model_name": "loan-risk",
        "model_version": "1",
        "id": str(records[0].request_id),
        "outputs": expected_outputs(from_predict, champion.labels),
    }
    assert [output["label"] for output in from_predict] == ["yes", "no", "yes"]
    assert result.as_numpy("label").tolist() == ["yes", "no", "yes"]
    assert [
        (record.row, record.model_version_id, record.channel, record.subject_id, record.inputs, record.output)
        for record in records
    ] == [(index, champion.pk, "v2", "", ROWS[index], from_predict[index]) for index in range(3)]


@live
def test_refusals_reach_the_client_as_the_one_error_body(triton, auth, champion):
    assert refusal(lambda: triton.infer("nope", tensors(ROWS), headers=auth)) == (
        "404",
        {"message": "No registered model named 'nope'.", "extra": {}},
    )
    nan = [column("income", "FP64", [8900.0, float("nan")]), *tensors(ROWS[:2])[1:]]
    assert refusal(lambda: triton.infer("loan-risk", nan, headers=auth)) == (
        "400",
        tensor_errors(("income", "row 1 must be a finite number")),
    )
    assert refusal(lambda: triton.infer("loan-risk", tensors(ROWS))) == (
        "401",
        {"message": "Authentication credentials were not provided.", "extra": {}},
    )
    assert PredictionRecord.objects.count() == 0


# -- in process --------------------------------------------------------------------------------------


@pytest.fixture
def infer(api, tokens):
    """POST a body (built by the client library from tensors, or given raw) to a V2 infer endpoint."""

    def call(
        inputs=None, *, outputs=None, raw=None, path=INFER, persona="predict", content_type="application/json", **extra
    ):
        if raw is None:
            raw, header_length = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
            assert header_length is None, "JSON only"
        response = api.call(
            "post", path, tokens[persona] if persona else None, raw=raw, content_type=content_type, **extra
        )
        assert response["Content-Type"] == "application/json", response.content
        return response

    return call


@pytest.fixture
def refused(infer):
    return refusing(infer)


def test_the_response_headers_name_the_request_and_the_version(infer, champion):
    response = infer(tensors(ROWS[:1]))
    assert response.status_code == 200, response.content
    [record] = PredictionRecord.objects.all()
    assert response["X-Request-ID"] == str(record.request_id) == response.json()["id"]
    assert response["X-Model-Version"] == "loan-risk/1"


def test_nested_data_the_subject_key_and_one_requested_output(infer, api, tokens, champion):
    body = {
        "id": "batch-7",
        "inputs": [
            {"name": "income", "shape": [2, 1], "datatype": "FP32", "data": [[8900.0], [1200.0]]},
            {"name": "age", "shape": [2, 1], "datatype": "INT32", "data": [[41], [23]]},
            {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["north", "east"]},
            {"name": "customer_id", "shape": [2], "datatype": "BYTES", "data": ["C9001", "C9002"]},
        ],
        "outputs": [{"name": "probabilities"}],
        "parameters": {"binary_data_output": True},
    }
    response = infer(raw=orjson.dumps(body))
    assert response.status_code == 200, response.content
    rows = [
        valid_row(income=8900.0, customer_id="C9001"),
        valid_row(income=1200.0, age=23, city="east", customer_id="C9002"),
    ]
    [_, probabilities] = expected_outputs(predicted(api, tokens, [dict(row) for row in rows]), champion.labels)
    assert response.json() == {
        "model_name": "loan-risk",
        "model_version": "1",
        "id": "batch-7",
        "outputs": [probabilities],
    }
    records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"]).order_by("row")
    assert [(record.subject_id, {"customer_id": record.subject_id, **record.inputs}) for record in records] == [
        ("C9001", rows[0]),
        ("C9002", rows[1]),
    ]


def test_a_named_version_scores_and_is_logged_as_that_version(
    infer, api, tokens, champion, registered_model, dataset_version
):
    second = train_version(registered_model, dataset_version, max_depth=2)
    assert (second.version, champion.version) == (2, 1)
    response = api.call("get", "/v2/models/loan-risk/versions/2", tokens["predict"])
    assert response.json()["versions"] == ["1", "2"]
    response = infer(tensors(ROWS), path="/v2/models/loan-risk/versions/2/infer")
    assert response.status_code == 200, response.content
    assert (response.json()["model_version"], response["X-Model-Version"]) == ("2", "loan-risk/2")
    records = PredictionRecord.objects.filter(request_id=response["X-Request-ID"])
    assert sorted(record.model_version_id for record in records) == [second.pk] * 3


# -- refusals, each with its exact body ---------------------------------------------------------------


def _shaped(tensor: httpclient.InferInput, shape: list[int]) -> httpclient.InferInput:
    return tensor.set_shape(shape)


@pytest.mark.parametrize(
    ("build", "errors"),
    [
        pytest.param(
            lambda: [*tensors(ROWS), column("colour", "BYTES", ["red"] * 3)],
            [("colour", "is not an input of this model")],
            id="unknown-input",
        ),
        pytest.param(lambda: tensors(ROWS)[:2], [("city", "is a required input and is missing")], id="missing-input"),
        pytest.param(
            lambda: [*tensors(ROWS)[:2], column("city", "FP64", [1.0, 2.0, 3.0])],
            [("city", "is FP64, but this input takes BYTES")],
            id="number-for-a-category",
        ),
        pytest.param(
            lambda: [column("income", "BYTES", ["8900"] * 3), *tensors(ROWS)[1:]],
            [("income", f"is BYTES, but this input takes {NUMBER_TYPES}")],
            id="text-for-a-number",
        ),
        pytest.param(
            lambda: [_shaped(tensors(ROWS)[0], [2]), *tensors(ROWS)[1:]],
            [("income", "has shape [2] (2 element(s)) but 3 data element(s)")],
            id="shape-and-data-differ",
        ),
        pytest.param(
            lambda: [_shaped(tensors(ROWS)[0], [1, 3]), *tensors(ROWS)[1:]],
            [("income", "has shape [1, 3]; an input tensor is one column: [n] or [n, 1]")],
            id="not-a-column",
        ),
        pytest.param(
            lambda: [*tensors(ROWS)[:2], *tensors(ROWS[:2])[2:]],
            [("city", "has 2 row(s) but 'income' has 3")],
            id="row-counts-differ",
        ),
        pytest.param(
            lambda: tensors([]),
            [(name, "holds no rows: send at least one") for name in ("income", "age", "city")],
            id="empty-batch",
        ),
        pytest.param(
            lambda: [column("income", "FP64", [8900.0, float("inf"), 1.0]), *tensors(ROWS)[1:]],
            [("income", "row 1 must be a finite number")],
            id="infinity",
        ),
        pytest.param(
            lambda: [*tensors(ROWS), tensors(ROWS)[1]],
            [("age", "is given more than once")],
            id="duplicate-input",
        ),
    ],
)
def test_tensor_problems_are_refused_naming_the_tensor(refused, champion, build, errors):
    assert refused(400, build()) == tensor_errors(*errors)


def test_an_unknown_requested_output_is_refused(refused, champion):
    body = refused(400, tensors(ROWS), outputs=requested("label", "score"))
    assert body == tensor_errors(("score", "is not an output of this model; its outputs: label, probabilities"))


def test_every_problem_is_listed(refused, champion):
    inputs = [
        column("income", "BYTES", ["high"]),
        column("colour", "BYTES", ["red"]),
        column("age", "INT64", [41, 42]),
    ]
    assert refused(400, inputs) == tensor_errors(
        ("income", f"is BYTES, but this input takes {NUMBER_TYPES}"),
        ("colour", "is not an input of this model"),
        ("city", "is a required input and is missing"),
    )


def test_refusals_and_scored_requests_are_counted_as_for_the_predict_endpoint(refused, infer, champion):
    def count(model: str, status: str) -> float:
        return REGISTRY.get_sample_value("faro_prediction_requests_total", {"model": model, "status": status}) or 0.0

    before = {key: count(*key) for key in [("loan-risk", "invalid"), ("-", "not_found"), ("loan-risk", "ok")]}
    refused(400, tensors(ROWS)[:2])
    refused(404, tensors(ROWS), path="/v2/models/nope/infer")
    assert infer(tensors(ROWS)).status_code == 200
    assert {key: count(*key) - value for key, value in before.items()} == {
        ("loan-risk", "invalid"): 1.0,
        ("-", "not_found"): 1.0,
        ("loan-risk", "ok"): 1.0,
    }


def test_non_finite_numbers_are_read_and_refused_naming_the_tensor(refused, champion):
    """Strict JSON has no NaN or Infinity, but V2 clients send them for float tensors: the body is read anyway,
    so that the refusal names the tensor."""
    for literal in (b"NaN", b"-Infinity", b"1e999", b"9" * 400):
        raw = b'{"inputs": [{"name": "income", "shape": [1], "datatype": "FP64", "data": [' + literal + b"]}]}"
        assert refused(400, raw=raw)["extra"]["errors"][0] == {
            "tensor": "income",
            "message": "row 0 must be a finite number",
        }, literal


def test_malformed_json_is_refused_with_the_parser_message(refused, champion):
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads(b'{"inputs": [')
    assert refused(400, raw=b'{"inputs": [') == {"message": f"Malformed JSON: {caught.value}", "extra": {}}
    # Too deep for either reader, or read and found not to be an object: a 400 either way, never a 500.
    assert set(refused(400, raw=b"[" * 100_000 + b"]" * 100_000)) == {"message", "extra"}


def test_any_content_type_is_read_as_json(infer, champion):
    raw, _ = httpclient.InferenceServerClient.generate_request_body(tensors(ROWS[:1]))
    response = infer(raw=raw, content_type="text/plain")
    assert response.status_code == 200, response.content


def test_binary_tensor_data_and_compressed_bodies_are_refused(refused, champion):
    raw, header_length = httpclient.InferenceServerClient.generate_request_body(
        [httpclient.InferInput("income", [1], "FP64").set_data_from_numpy(np.array([1.0]))]
    )
    assert header_length is not None
    assert refused(400, raw=raw, HTTP_INFERENCE_HEADER_CONTENT_LENGTH=str(header_length)) == {
        "message": "Binary tensor data is not supported: send every tensor's data in the JSON body.",
        "extra": {},
    }
    raw, _ = httpclient.InferenceServerClient.generate_request_body(tensors(ROWS))
    assert refused(415, raw=gzip.compress(raw), HTTP_CONTENT_ENCODING="gzip") == {
        "message": "Content-Encoding gzip is not supported: send the body uncompressed.",
        "extra": {},
    }


def test_a_body_over_the_size_limit_is_refused_before_parsing(refused, champion, settings):
    settings.FARO_PREDICT_MAX_BODY_BYTES = 2048
    raw = b"{" * 2049
    assert refused(413, raw=raw) == {
        "message": "Request body of 2049 bytes exceeds the limit of 2048 bytes.",
        "extra": {},
    }


def test_more_rows_than_the_limit_are_refused(refused, infer, champion, settings):
    settings.FARO_PREDICT_MAX_ROWS = 2
    assert refused(413, tensors(ROWS)) == {"message": "3 rows exceed the limit of 2 per request.", "extra": {}}
    assert infer(tensors(ROWS[:2])).status_code == 200


def test_an_unknown_model_or_version_is_404(refused, champion):
    assert refused(404, tensors(ROWS), path="/v2/models/nope/infer") == {
        "message": "No registered model named 'nope'.",
        "extra": {},
    }
    assert refused(404, tensors(ROWS), path="/v2/models/loan-risk/versions/9/infer") == {
        "message": "loan-risk has no version 9.",
        "extra": {},
    }


def test_credentials_are_required_with_the_predict_scope(refused, api, champion):
    assert refused(401, tensors(ROWS), persona=None) == {
        "message": "Authentication credentials were not provided.",
        "extra": {},
    }
    assert refused(403, tensors(ROWS), persona="read") == {
        "message": "This token lacks the 'predict' scope.",
        "extra": {},
    }
    for path in ("/v2/models/loan-risk", "/v2/models/loan-risk/ready"):
        response = api.call("get", path)
        assert (response.status_code, response.json()["message"]) == (
            401,
            "Authentication credentials were not provided.",
        )


# -- readiness -----------------------------------------------------------------------------------------


def test_health_needs_no_credentials_and_nothing_served_is_ready(api, db):
    assert api.call("get", "/v2/health/live").json() == {"live": True}
    response = api.call("get", "/v2/health/ready")
    assert (response.status_code, response.json()) == (200, {"ready": True})


def test_a_damaged_champion_is_not_ready(api, tokens, champion):
    path = Path(settings.FARO_ARTEFACT_ROOT) / champion.artefact_path
    path.chmod(0o644)
    path.write_bytes(b"not a model")
    message = f"Artefact {champion.artefact_path} does not match its recorded SHA-256"

    response = api.call("get", "/v2/health/ready")
    assert (response.status_code, response.json()) == (
        503,
        {"ready": False, "message": "Not ready to serve.", "extra": {"problems": [f"loan-risk: {message}"]}},
    )
    response = api.call("get", "/v2/models/loan-risk/ready", tokens["predict"])
    assert (response.status_code, response.json()) == (503, {"message": message, "extra": {}})
