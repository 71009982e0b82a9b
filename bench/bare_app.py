"""The baseline of bench/serving.py: the least Django that can serve the same model.

One URL, no database, no middleware, no authentication, no logging of predictions. The view parses the
JSON body with orjson (as Faro's parser does), builds a float32 row in the model's stored feature order
(categories encoded by their index in the stored vocabulary, as Faro's FeaturePipeline does), calls
`Booster.inplace_predict` and answers the label and the class probabilities.

With "scorer": "onnx" in the spec, it scores with onnxruntime on the version's verified ONNX export instead
(apps.registry.onnx_models.OnnxScorer, one thread), so that an ONNX-serving Faro can be compared with a bare
view that scores the same way.

Configured by BENCH_BARE_SPEC, the path of a JSON file written by bench/serving.py:
    {"model": str, "version": int, "artefact": absolute path, "sha256": str,
     "labels": [...], "feature_state": {...},
     "scorer": "xgboost" | "onnx" (default xgboost), "onnx_artefact": absolute path, "onnx_sha256": str}
Served by gunicorn as `bench.bare_app:application`.
"""

import hashlib
import math
import os
from pathlib import Path

import django
import numpy as np
import orjson
import xgboost as xgb
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpResponse, HttpResponseNotAllowed
from django.urls import path

from apps.features.pipeline import FittedPipeline

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-bare-app-" + "x" * 40,
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    DATABASES={},
    USE_I18N=False,
    USE_TZ=True,
    DATA_UPLOAD_MAX_MEMORY_SIZE=1024 * 1024,
)
django.setup()

_spec = orjson.loads(Path(os.environ["BENCH_BARE_SPEC"]).read_bytes())


def _verified(path: str, sha256: str) -> bytes:
    raw = Path(path).read_bytes()
    if hashlib.sha256(raw).hexdigest() != sha256:
        raise RuntimeError(f"{path} does not match its SHA-256")
    return raw


SCORER = _spec.get("scorer", "xgboost")
if SCORER == "onnx":
    from apps.registry.onnx_models import OnnxScorer

    _onnx = OnnxScorer(_verified(_spec["onnx_artefact"], _spec["onnx_sha256"]))  # one thread, as Faro's loader

    def predict_raw(matrix: np.ndarray) -> np.ndarray:
        out = np.asarray(_onnx.predict(np.ascontiguousarray(matrix, dtype=np.float32)))
        return out[:, 1] if len(LABELS) == 2 and out.ndim == 2 else out  # the booster's shape: P(second label)

elif SCORER == "xgboost":
    BOOSTER = xgb.Booster()
    BOOSTER.load_model(bytearray(_verified(_spec["artefact"], _spec["sha256"])))
    BOOSTER.set_param({"nthread": 1})  # as Faro's loader does

    def predict_raw(matrix: np.ndarray) -> np.ndarray:
        return np.asarray(BOOSTER.inplace_predict(matrix))

else:
    raise RuntimeError(f"Unknown scorer {SCORER!r}; expected xgboost or onnx")
LABELS = list(_spec["labels"])
PREFIX = {"model": _spec["model"], "version": _spec["version"]}
NAN = math.nan
_state = _spec["feature_state"]
# A champion fitted with a feature set is transformed with the same pure, Django-free pipeline module, so
# both servers score identical matrices and the ratio measures only what Faro adds around them.
PIPELINE = FittedPipeline.from_state(_state) if "definition_hash" in _state else None
# Otherwise: (name, codes) in model input order; codes is None for a numeric feature.
FEATURES = (
    []
    if PIPELINE is not None
    else [
        (
            item["name"],
            {value: float(index) for index, value in enumerate(item["vocabulary"])}
            if item["kind"] == "categorical"
            else None,
        )
        for item in _state["features"]
    ]
)


def _bad_request(message: str) -> HttpResponse:
    return HttpResponse(orjson.dumps({"message": message}), status=400, content_type="application/json")


def _encode(row: dict) -> list[float]:
    values = []
    for name, codes in FEATURES:
        value = row.get(name)
        if value is None:
            values.append(NAN)
        elif codes is None:
            values.append(float(value))
        else:
            values.append(codes.get(value, NAN))
    return values


def predict(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        rows = orjson.loads(request.body)["inputs"]
        if PIPELINE is not None:
            matrix = PIPELINE.transform_rows(rows)
        else:
            matrix = np.array([_encode(row) for row in rows], dtype=np.float32).reshape(len(rows), len(FEATURES))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return _bad_request("Expected {'inputs': [row, ...]} with numbers and known categories.")
    if not len(rows):
        return _bad_request("'inputs' is empty.")
    raw = predict_raw(matrix)
    binary = len(LABELS) == 2
    probabilities = np.column_stack([1.0 - raw, raw]) if binary else raw.reshape(len(rows), len(LABELS))
    outputs = [
        {
            "label": LABELS[int(row.argmax())],
            "probabilities": {str(label): round(float(p), 6) for label, p in zip(LABELS, row, strict=True)},
        }
        for row in probabilities
    ]
    return HttpResponse(orjson.dumps({**PREFIX, "outputs": outputs}), content_type="application/json")


urlpatterns = [path("predict", predict)]
application = WSGIHandler()
