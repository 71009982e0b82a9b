from prometheus_client import REGISTRY

from apps.predictions.models import PredictionRecord
from tests.conftest import valid_row


def test_predict_returns_label_probabilities_and_logs(api, champion, tokens):
    before = (
        REGISTRY.get_sample_value("faro_predictions_total", {"model": "loan-risk", "version": "1", "outcome": "yes"})
        or 0.0
    )
    response = api.call(
        "post",
        "/api/v1/models/loan-risk/predict",
        tokens["predict"],
        {"inputs": [valid_row(income=8900.0), valid_row(income=1200.0, city="east")]},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"] == "loan-risk"
    assert body["version"] == 1
    assert [output["label"] for output in body["outputs"]] == ["yes", "no"]
    assert set(body["outputs"][0]["probabilities"]) == {"no", "yes"}
    assert response["X-Request-ID"] == body["request_id"]
    assert PredictionRecord.objects.filter(request_id=body["request_id"]).count() == 2
    after = REGISTRY.get_sample_value(
        "faro_predictions_total", {"model": "loan-risk", "version": "1", "outcome": "yes"}
    )
    assert after == before + 1
