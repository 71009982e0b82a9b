"""Online scoring through a trained version's verified ONNX export, with explanations from the booster."""

import numpy as np
import pytest

from apps.predictions.loader import model_cache
from apps.registry.scoring import BoosterScorer, OnnxServingScorer
from tests.conftest import valid_row

URL = "/api/v1/models/loan-risk/predict"


def test_a_version_with_a_verified_export_is_scored_through_it(champion):
    assert champion.onnx_parity["passed"] is True
    loaded = model_cache.get("loan-risk")
    assert isinstance(loaded.scorer, OnnxServingScorer)
    rows = [valid_row(income=income) for income in (100.0, 2500.0, 8900.0, 20000.0)]
    matrix = loaded.pipeline.transform_rows(rows)
    onnx = loaded.scorer.predict_raw(matrix)
    booster = np.asarray(loaded.booster.inplace_predict(matrix))
    assert onnx.shape == booster.shape == (4,)
    assert np.abs(onnx - booster).max() <= 1e-5


def test_answers_and_explanations_are_the_booster_s(api, tokens, champion, settings):
    body = {"inputs": [valid_row(income=8900.0), valid_row(income=100.0)], "explain": True}
    through_onnx = api.call("post", URL, tokens["predict"], body).json()
    settings.FARO_SERVE_ONNX = False
    model_cache.clear()
    assert isinstance(model_cache.get("loan-risk").scorer, BoosterScorer)
    through_booster = api.call("post", URL, tokens["predict"], body).json()
    assert through_onnx["explanations"] == through_booster["explanations"]
    assert [output["label"] for output in through_onnx["outputs"]] == [
        output["label"] for output in through_booster["outputs"]
    ]
    for ours, theirs in zip(through_onnx["outputs"], through_booster["outputs"], strict=True):
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=2e-6)


def test_a_version_whose_export_failed_parity_is_scored_by_the_booster(champion):
    champion.onnx_parity = {**champion.onnx_parity, "passed": False}
    champion.save(update_fields=["onnx_parity"])
    assert isinstance(model_cache.get("loan-risk").scorer, BoosterScorer)
