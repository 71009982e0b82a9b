"""An ONNX model made elsewhere (here scikit-learn, exported with skl2onnx) imported as a version with a
declared signature, evaluated, released and served through onnxruntime like a native one."""

import csv
import io
import pickle
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.registry.models import ModelVersion
from tests.conftest import generated_csv, release

INPUTS = '[{"name": "income", "type": "number"}, {"name": "age", "type": "integer", "minimum": 18, "maximum": 80}]'


def sklearn_onnx() -> tuple[bytes, np.ndarray]:
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    rows = list(csv.DictReader(io.StringIO(generated_csv().decode())))
    x = np.array([[float(row["income"]), float(row["age"])] for row in rows], dtype=np.float32)
    y = np.array([row["repaid"] == "yes" for row in rows], dtype=np.int64)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    data = to_onnx(model, x[:1], options={id(model): {"zipmap": False}}, target_opset=15).SerializeToString()
    return data, model.predict_proba(np.array([[5200.5, 41]], dtype=np.float32))[0]


def upload(api, token, data: bytes, **fields):
    body = {
        "file": SimpleUploadedFile("model.onnx", data),
        "inputs": INPUTS,
        "task_type": "classification",
        "labels": '["no", "yes"]',
        "dataset": "loans",
        **fields,
    }
    if token is not None:
        return api.post("/api/v1/models/loan-risk/versions/import", body, headers={"Authorization": f"Bearer {token}"})
    return api.post("/api/v1/models/loan-risk/versions/import", body)


def test_import_evaluate_release_and_serve(api, tokens, registered_model, dataset_version):
    data, expected = sklearn_onnx()
    response = upload(api, tokens["write"], data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["source"], body["status"]) == (1, "onnx", "pending_manual_approval")
    assert [item["name"] for item in body["signature"]["inputs"]] == ["income", "age"]
    assert body["evaluation"]["rows"] == 300
    assert 0.5 < body["metrics"]["auc"] <= 1.0
    version = ModelVersion.objects.get(pk=ModelVersion.objects.get(version=1).pk)
    assert version.lineage["imported"]["producer"] == "skl2onnx 1.20.0"
    gates = {gate["name"]: gate["passed"] for gate in version.gate_report["gates"]}
    assert gates == {"quality": True, "champion": True, "fairness": True, "data_checks": True}

    release(version)
    predicted = api.call(
        "post",
        "/api/v1/models/loan-risk/predict",
        tokens["predict"],
        {"inputs": [{"income": 5200.5, "age": 41}], "explain": True},
    )
    assert predicted.status_code == 200, predicted.content
    output = predicted.json()["outputs"][0]
    assert output["probabilities"] == {
        "no": pytest.approx(float(expected[0]), abs=1e-6),
        "yes": pytest.approx(float(expected[1]), abs=1e-6),
    }
    assert predicted.json()["explanations"][0]["reasons"] == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pickle.dumps({"weights": [1, 2, 3]}), "This file is a Python pickle"),
        (zlib.compress(pickle.dumps({"weights": [1]})), "joblib"),
        (b"PK\x03\x04" + b"\x00" * 40, "zip"),
        (b"", "empty"),
    ],
)
def test_unsafe_or_foreign_files_are_refused(api, tokens, registered_model, dataset_version, data, message):
    response = upload(api, tokens["write"], data)
    assert response.status_code == 400
    assert message.lower() in response.content.decode().lower()
    assert not ModelVersion.objects.exists()


def test_a_bad_declaration_is_refused_naming_the_field(api, tokens, registered_model, dataset_version):
    data, _ = sklearn_onnx()
    wrong_width = upload(api, tokens["write"], data, inputs='[{"name": "income", "type": "number"}]')
    assert wrong_width.status_code == 400
    assert "2" in wrong_width.json()["message"]
    bad_type = upload(api, tokens["write"], data, inputs='[{"name": "income", "type": "text"}, {"name": "age"}]')
    assert bad_type.status_code == 400
    assert bad_type.json()["extra"]["fields"] == {
        "inputs[0]": ["type must be number, integer or category."],
        "inputs[1]": ["type must be number, integer or category."],
    }
    not_json = upload(api, tokens["write"], data, inputs="[{")
    assert not_json.status_code == 400
    assert list(not_json.json()["extra"]["fields"]) == ["inputs"]
    one_label = upload(api, tokens["write"], data, labels='["yes"]')
    assert one_label.status_code == 400
    assert not ModelVersion.objects.exists()


def test_import_from_the_page(client, users, registered_model, dataset_version):
    data, _ = sklearn_onnx()
    client.force_login(users["ds"])
    page = client.get("/models/loan-risk/import/")
    assert page.status_code == 200
    assert "Import an ONNX model into loan-risk" in page.content.decode()
    form = {
        "file": SimpleUploadedFile("model.onnx", data),
        "inputs": INPUTS,
        "task_type": "classification",
        "labels": '["no", "yes"]',
        "dataset": "loans",
    }
    done = client.post("/models/loan-risk/import/", form, follow=True)
    assert done.redirect_chain == [("/models/loan-risk/versions/1/", 302)]
    assert "Imported loan-risk v1; it is pending approval." in done.content.decode()
    version = ModelVersion.objects.get()
    assert (version.source, version.maker) == ("onnx", f"user:{users['ds'].pk}")

    form["file"] = SimpleUploadedFile("model.pkl", pickle.dumps({"weights": [1]}))
    refused = client.post("/models/loan-risk/import/", form)
    assert refused.status_code == 400
    assert "This file is a Python pickle" in refused.content.decode()
    assert ModelVersion.objects.count() == 1
