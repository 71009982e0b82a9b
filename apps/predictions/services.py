"""Online prediction: validate against the version's signature, score, explain, log, count."""

import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps.core.errors import InvalidInput, NotFound, PayloadTooLarge
from apps.data.models import Dataset
from apps.features.online import store_for_settings
from apps.predictions.loader import LoadedModel, model_cache
from apps.predictions.metrics import PREDICTION_LATENCY, PREDICTION_REQUESTS, PREDICTIONS
from apps.predictions.mlflow_protocol import Inputs, ProtocolError, RowProblems
from apps.predictions.models import PredictionRecord
from apps.predictions.open_inference import InferRequest, infer_request_decode
from apps.registry.training import CLASSIFICATION

ENTITY_FIELD = "entity_id"


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
    if isinstance(rows, list):
        rows = _with_online_features(loaded, rows)
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


def prediction_make_from_inputs(
    *,
    model_name: str,
    inputs: Inputs,
    probabilities: bool = False,
    alias: str | None = None,
    version: int | None = None,
    channel: str = PredictionRecord.Channel.MLFLOW,
) -> PredictionResult:
    """Score rows read from a body of MLflow's scoring protocol (`apps.predictions.mlflow_protocol`).

    The version is resolved first, since the rows may need its signature to be read: CSV cells become the
    types it declares, and a bare value is the input of a one-input model. The rows are then scored by
    that same version through `prediction_make` (even if the alias moves meanwhile), so validation, the
    decision log and the metrics are those of every prediction. `probabilities` is refused for a model
    that has none (regression) before anything is scored.
    """
    try:
        loaded = model_cache.get(model_name, alias=alias, version=version)
    except NotFound:
        PREDICTION_REQUESTS.labels(model="-", status="not_found").inc()
        raise
    try:
        if probabilities and loaded.task_type != CLASSIFICATION:
            raise InvalidInput(
                f"predict_proba applies to classification models; {loaded.model_name} is a {loaded.task_type} model.",
                extra={"fields": {"predict_proba": ["is only for classification models"]}},
            )
        try:
            rows = inputs.rows_for(loaded.pipeline.signature())
        except ProtocolError as exc:
            raise InvalidInput(exc.message, extra={"fields": exc.fields}) from None
        except RowProblems as exc:
            raise InvalidInput(
                f"{len(exc.problems)} problem(s) with the inputs.", extra={"errors": exc.problems}
            ) from None
    except InvalidInput:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise
    return prediction_make(model_name=model_name, rows=rows, version=loaded.version, channel=channel)


def prediction_make_from_tensors(
    *, model_name: str, body: Any, version: int | None = None, channel: str = PredictionRecord.Channel.API
) -> tuple[PredictionResult, InferRequest]:
    """Score the tensors of an Open Inference Protocol V2 request (`apps.predictions.open_inference`).

    The version (the champion unless `version` is given) is resolved first, since the tensors are checked
    against its signature; the rows are then scored by that same version through `prediction_make` (even if
    the alias moves meanwhile), so validation, the decision log and the metrics are those of every
    prediction. Returns the result and the decoded request (its id and the outputs asked for).
    """
    try:
        loaded = model_cache.get(model_name, version=version)
    except NotFound:
        PREDICTION_REQUESTS.labels(model="-", status="not_found").inc()
        raise
    try:
        request = infer_request_decode(
            body,
            signature=loaded.pipeline.signature(),
            subject_key=loaded.pipeline.subject_key,
            task_type=loaded.task_type,
        )
    except InvalidInput:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise
    result = prediction_make(model_name=loaded.model_name, rows=request.rows, version=loaded.version, channel=channel)
    return result, request


def _with_online_features(loaded: LoadedModel, rows: list[Any]) -> list[Any]:
    """Rows that name an `entity_id`, completed from the online store of the model's training dataset.

    The stored values fill every input the row does not give (a value in the row overrides the stored
    one); the entity id becomes the row's subject key for the decision log. All entities of a request are
    looked up in one round trip; rows without an entity id never touch the store.
    """
    positions = [index for index, row in enumerate(rows) if isinstance(row, dict) and ENTITY_FIELD in row]
    if not positions:
        return rows
    subject_key = loaded.pipeline.subject_key
    problems = []
    for index in positions:
        entity_id = rows[index][ENTITY_FIELD]
        if isinstance(entity_id, bool) or not isinstance(entity_id, (str, int)) or not 0 < len(str(entity_id)) <= 200:
            problems.append(
                {
                    "row": index,
                    "field": ENTITY_FIELD,
                    "message": "must be a non-empty string or integer of at most 200 characters",
                }
            )
        elif subject_key and subject_key in rows[index] and str(rows[index][subject_key]) != str(entity_id):
            problems.append({"row": index, "field": subject_key, "message": f"differs from entity_id {entity_id!r}"})
    if problems:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise InvalidInput(f"{len(problems)} problem(s) with the inputs.", extra={"errors": problems})
    dataset = Dataset.objects.filter(versions__model_versions__pk=loaded.version_id).first()
    if dataset is None:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="not_found").inc()
        raise NotFound(f"{loaded.model_name} v{loaded.version} has no training dataset to look entities up in.")
    found = store_for_settings().get_many(dataset, [str(rows[index][ENTITY_FIELD]) for index in positions])
    unknown = [
        {
            "row": index,
            "field": ENTITY_FIELD,
            "message": f"Unknown entity {rows[index][ENTITY_FIELD]!r} in the online store of {dataset.name}.",
        }
        for index in positions
        if str(rows[index][ENTITY_FIELD]) not in found
    ]
    if unknown:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="not_found").inc()
        raise NotFound(unknown[0]["message"], extra={"errors": unknown})
    inputs = [item["name"] for item in loaded.pipeline.signature()]
    filled = list(rows)
    for index in positions:
        row = dict(rows[index])
        entity_id = row.pop(ENTITY_FIELD)
        stored = found[str(entity_id)][0]
        for name in inputs:
            if name not in row and name in stored:
                row[name] = stored[name]
        if subject_key:
            row.setdefault(subject_key, entity_id)
        filled[index] = row
    return filled
