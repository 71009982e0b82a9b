"""Online prediction: validate against the version's signature, score, explain, log, count."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.errors import InvalidInput, NotFound, PayloadTooLarge
from apps.predictions.loader import LoadedModel, model_cache
from apps.predictions.metrics import PREDICTION_LATENCY, PREDICTION_REQUESTS, PREDICTIONS
from apps.predictions.models import PredictionRecord


@dataclass
class PredictionResult:
    request_id: str
    model: LoadedModel
    outputs: list[dict[str, Any]]
    explanations: list[dict[str, Any]] | None


def prediction_make(
    *,
    model_name: str,
    rows: Any,
    alias: str | None = None,
    version: int | None = None,
    explain: bool = False,
    channel: str = PredictionRecord.Channel.API,
) -> PredictionResult:
    """Score `rows` with a version of `model_name` (an alias, a version number, or the champion).

    Every row is validated first; nothing is scored or logged unless all are valid. The decisions are in
    the prediction log before this returns, so an acknowledged prediction is never lost.
    """
    started = time.perf_counter()
    try:
        loaded = model_cache.get(model_name, alias=alias, version=version)
    except NotFound:
        PREDICTION_REQUESTS.labels(model="-", status="not_found").inc()
        raise
    if isinstance(rows, list) and len(rows) > settings.FARO_PREDICT_MAX_ROWS:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise PayloadTooLarge(f"{len(rows)} rows exceed the limit of {settings.FARO_PREDICT_MAX_ROWS} per request.")
    problems = loaded.pipeline.validate_rows(rows)
    if problems:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise InvalidInput(f"{len(problems)} problem(s) with the inputs.", extra={"errors": problems})
    matrix = loaded.pipeline.transform_rows(rows)
    outputs = loaded.predict(matrix)
    explanations = loaded.explain(matrix, outputs, rows) if explain else None
    request_id = uuid.uuid4()
    subject_key = loaded.pipeline.subject_key
    # bulk_create is one transaction of its own: all rows are logged, or none and the request fails.
    PredictionRecord.objects.bulk_create(
        [
            PredictionRecord(
                request_id=request_id,
                row=index,
                model_version_id=loaded.version_id,
                subject_id=str(row.get(subject_key, "")) if subject_key else "",
                channel=channel,
                inputs=row,
                output=output,
            )
            for index, (row, output) in enumerate(zip(rows, outputs, strict=True))
        ]
    )
    version_label = str(loaded.version)
    for output in outputs:
        PREDICTIONS.labels(
            model=loaded.model_name, version=version_label, outcome=str(output.get("label", "value"))
        ).inc()
    PREDICTION_REQUESTS.labels(model=loaded.model_name, status="ok").inc()
    PREDICTION_LATENCY.labels(model=loaded.model_name).observe(time.perf_counter() - started)
    return PredictionResult(request_id=str(request_id), model=loaded, outputs=outputs, explanations=explanations)
