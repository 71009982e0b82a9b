"""Online prediction: validate against the version's signature, score, explain, log, count."""

import logging
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, FaroError, InvalidInput, NotFound, PayloadTooLarge
from apps.data.models import Dataset
from apps.events.services import event_emit
from apps.features.online import store_for_settings
from apps.governance.restrictions import restriction_cache
from apps.governance.services import actor_ref, audit_record
from apps.predictions.decision_log import Decision, decisions_write
from apps.predictions.loader import LoadedModel, model_cache
from apps.predictions.metrics import PREDICTION_LATENCY, PREDICTION_REQUESTS, PREDICTIONS, stage_timers
from apps.predictions.mlflow_protocol import Inputs, ProtocolError, RowProblems
from apps.predictions.models import PredictionRecord, Route, ScoringFailure, StickyBy, TrafficPolicy
from apps.predictions.open_inference import InferRequest, infer_request_decode
from apps.predictions.routing import NO_POLICY, policy_cache, route_choose
from apps.predictions.shadow import ShadowRequest, shadow_scorer
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel, TaskType
from apps.registry.training import CLASSIFICATION

ENTITY_FIELD = "entity_id"
logger = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    request_id: str
    model: LoadedModel
    outputs: list[dict[str, Any]]
    explanations: list[dict[str, Any]] | None
    route: str = Route.CHAMPION
    replayed: bool = False


def prediction_make(
    *,
    model_name: str,
    rows: Any,
    alias: str | None = None,
    version: int | None = None,
    explain: bool = False,
    channel: str = PredictionRecord.Channel.API,
    client: str = "",
    request_id: uuid.UUID | None = None,
    parse_seconds: float | None = None,
) -> PredictionResult:
    """Score `rows` with a version of `model_name`: the alias or version named, else as the model's traffic
    policy routes it (the champion, or the canary for its share of requests).

    Every row is validated first; nothing is scored or logged unless all are valid. The decisions are in
    the decision log before this returns, so an acknowledged prediction is never lost. A `request_id` that
    is already in the log returns the logged decisions again instead of scoring twice (a redelivered
    message, a retried call). A canary that refuses rows the champion accepts, or fails to score, is
    counted against the canary and the champion answers: a canary never fails a request.

    `parse_seconds`, the time the caller took to read the body, is recorded with the other stages' times.
    """
    started = time.perf_counter()
    if request_id is not None:
        logged = _logged_result(request_id, model_name=model_name)
        if logged is not None:
            return logged
    direct = alias is not None or version is not None
    try:
        loaded = model_cache.get(model_name, alias=alias, version=version)
    except NotFound:
        PREDICTION_REQUESTS.labels(model="-", status="not_found").inc()
        raise
    if isinstance(rows, list) and len(rows) > settings.FARO_PREDICT_MAX_ROWS:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise PayloadTooLarge(f"{len(rows)} rows exceed the limit of {settings.FARO_PREDICT_MAX_ROWS} per request.")
    policy = NO_POLICY if direct else policy_cache.get(model_name)
    route = Route.DIRECT if direct else Route.CHAMPION
    champion = loaded
    if policy.canary_version is not None and isinstance(rows, list) and rows:
        route = route_choose(policy, model_name=model_name, sticky_key=_sticky_key(loaded, rows[0]))
        if route == Route.CANARY:
            try:
                loaded = model_cache.get(model_name, version=policy.canary_version)
            except Exception as exc:
                _canary_failed(champion, policy.canary_version, exc)
                loaded, route = champion, Route.CHAMPION
    routed = time.perf_counter()
    if isinstance(rows, list):
        rows = _with_online_features(loaded, rows)
    enriched = time.perf_counter()
    problems = loaded.pipeline.validate_rows(rows)
    if problems and route == Route.CANARY and not champion.pipeline.validate_rows(rows):
        _canary_failed(champion, loaded.version, InvalidInput("refused inputs the champion accepts"))
        loaded, route, problems = champion, Route.CHAMPION, []
    if problems:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="invalid").inc()
        raise InvalidInput(f"{len(problems)} problem(s) with the inputs.", extra={"errors": problems})
    subject_key = loaded.pipeline.subject_key
    subject_ids = [str(row.get(subject_key, "")) if subject_key else "" for row in rows]
    restricted = restriction_cache.restricted_rows(subject_ids)
    if restricted:
        PREDICTION_REQUESTS.labels(model=loaded.model_name, status="restricted").inc()
        raise Conflict(
            "No automated decision may be made about this person: a restriction, an objection or an erasure is "
            "in force (GDPR Arts. 17, 18, 21). Nothing was scored or logged.",
            extra={"errors": [{"row": index, "field": subject_key, "message": "restricted"} for index in restricted]},
        )
    validated = time.perf_counter()
    try:
        matrix = loaded.pipeline.transform_rows(rows)
        transformed = time.perf_counter()
        outputs = loaded.predict(matrix)
        explanations = loaded.explain(matrix, outputs, rows) if explain else None
    except Exception as exc:
        if route != Route.CANARY:
            _scoring_failed(loaded.version_id, route, exc)
            raise
        _canary_failed(champion, loaded.version, exc)
        loaded, route = champion, Route.CHAMPION
        validated = time.perf_counter()  # the champion's stages are the ones timed
        matrix = loaded.pipeline.transform_rows(rows)
        transformed = time.perf_counter()
        outputs = loaded.predict(matrix)
        explanations = loaded.explain(matrix, outputs, rows) if explain else None
    predicted = time.perf_counter()
    request_id = request_id or uuid.uuid4()
    latency_ms = round((predicted - started) * 1000, 3)
    decisions = []
    for index, (row, output, subject_id) in enumerate(zip(rows, outputs, subject_ids, strict=True)):
        inputs = loaded.minimise(row)
        explanation = (
            loaded.minimise_explanation(explanations[index], inputs) if explanations is not None else None
        )  # the client gets the reasons with its own values; the log keeps them minimised like the inputs
        decisions.append(
            Decision(row=index, subject_id=subject_id, inputs=inputs, output=output, explanation=explanation)
        )
    try:
        decisions_write(
            decisions,
            request_id=request_id,
            model_version_id=loaded.version_id,
            route=route,
            channel=channel,
            client=client,
            latency_ms=latency_ms,
        )
    except IntegrityError:
        logged = _logged_result(request_id, model_name=model_name)  # the same request id, logged meanwhile
        if logged is None:
            raise
        return logged
    if policy.shadow_versions:
        shadow_scorer.submit(
            ShadowRequest(
                model_name=loaded.model_name,
                versions=policy.shadow_versions,
                request_id=request_id,
                rows=rows,
                subject_ids=subject_ids,
                channel=channel,
                client=client,
            )
        )
    logged = time.perf_counter()
    model_label, version_label = loaded.model_name, str(loaded.version)
    for outcome, count in Counter(str(output.get("label", "value")) for output in outputs).items():
        PREDICTIONS.labels(model=model_label, version=version_label, outcome=outcome).inc(count)
    PREDICTION_REQUESTS.labels(model=model_label, status="ok").inc()
    PREDICTION_LATENCY.labels(model=model_label).observe(logged - started)
    parse, validate, features, predict, log = stage_timers(model_label)
    if parse_seconds is not None:
        parse.observe(parse_seconds)
    validate.observe((routed - started) + (validated - enriched))
    features.observe((enriched - routed) + (transformed - validated))
    predict.observe(predicted - transformed)
    log.observe(logged - predicted)
    return PredictionResult(
        request_id=str(request_id), model=loaded, outputs=outputs, explanations=explanations, route=route
    )


def _sticky_key(loaded: LoadedModel, row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    subject_key = loaded.pipeline.subject_key
    value = row.get(subject_key) if subject_key else None
    if value is None:
        value = row.get(ENTITY_FIELD)
    return None if value is None else str(value)


def _scoring_failed(version_id: int, route: str, exc: Exception) -> None:
    error = exc.message if isinstance(exc, FaroError) else f"{type(exc).__name__}"
    ScoringFailure.objects.create(model_version_id=version_id, route=route, error=error[:200])


def _canary_failed(champion: LoadedModel, canary_version: int, exc: Exception) -> None:
    if not isinstance(exc, FaroError):
        logger.exception("Canary %s v%s failed; the champion answers", champion.model_name, canary_version)
    version_id = (
        ModelVersion.objects.filter(registered_model__name=champion.model_name, version=canary_version)
        .values_list("pk", flat=True)
        .first()
    )
    if version_id is not None:
        _scoring_failed(version_id, Route.CANARY, exc)


def _logged_result(request_id: uuid.UUID, *, model_name: str) -> PredictionResult | None:
    """The decisions already logged under `request_id` (not its shadows), as the first answer gave them."""
    records = list(
        PredictionRecord.objects.filter(request_id=request_id)
        .exclude(route=Route.SHADOW)
        .select_related("model_version__registered_model", "model_version__dataset_version__dataset")
        .order_by("row")
    )
    if not records:
        return None
    version = records[0].model_version
    if version.registered_model.name != model_name:
        raise Conflict(
            f"Request id {request_id} was already used for a decision of another model.",
            extra={"fields": {"request_id": ["already used for another model"]}},
        )
    explanations = [record.explanation for record in records]
    return PredictionResult(
        request_id=str(request_id),
        model=model_cache.load(version),
        outputs=[record.output for record in records],
        explanations=explanations if all(item is not None for item in explanations) else None,
        route=records[0].route,
        replayed=True,
    )


def prediction_make_from_inputs(
    *,
    model_name: str,
    inputs: Inputs,
    probabilities: bool = False,
    alias: str | None = None,
    version: int | None = None,
    channel: str = PredictionRecord.Channel.MLFLOW,
    client: str = "",
    parse_seconds: float = 0.0,
) -> PredictionResult:
    """Score rows read from a body of MLflow's scoring protocol (`apps.predictions.mlflow_protocol`).

    The rows are read with the signature of the version named (else the champion's): CSV cells become the
    types it declares, and a bare value is the input of a one-input model. They are then scored through
    `prediction_make` with the same alias or version (so default traffic follows the traffic policy), and
    validation, the decision log and the metrics are those of every prediction. `probabilities` is refused
    for a model that has none (regression) before anything is scored. `parse_seconds` is the caller's time
    to read the body; reading the rows with the signature counts with it as the parse stage.
    """
    reading = time.perf_counter()
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
    return prediction_make(
        model_name=model_name,
        rows=rows,
        alias=alias,
        version=version,
        channel=channel,
        client=client,
        parse_seconds=parse_seconds + (time.perf_counter() - reading),
    )


def prediction_make_from_tensors(
    *,
    model_name: str,
    body: Any,
    version: int | None = None,
    channel: str = PredictionRecord.Channel.V2,
    client: str = "",
    parse_seconds: float = 0.0,
) -> tuple[PredictionResult, InferRequest]:
    """Score the tensors of an Open Inference Protocol V2 request (`apps.predictions.open_inference`).

    The tensors are checked against the signature of the version named (else the champion's); the rows are
    then scored through `prediction_make` with the same version (so default traffic follows the traffic
    policy), and validation, the decision log and the metrics are those of every prediction. Returns the
    result and the decoded request (its id and the outputs asked for). `parse_seconds` is the caller's time
    to read the body; decoding the tensors counts with it as the parse stage.
    """
    reading = time.perf_counter()
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
    result = prediction_make(
        model_name=loaded.model_name,
        rows=request.rows,
        version=version,
        channel=channel,
        client=client,
        parse_seconds=parse_seconds + (time.perf_counter() - reading),
    )
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
        if isinstance(entity_id, str) and "\x00" in entity_id:
            problems.append({"row": index, "field": ENTITY_FIELD, "message": "must not contain NUL characters"})
        elif isinstance(entity_id, bool) or not isinstance(entity_id, (str, int)) or not 0 < len(str(entity_id)) <= 200:
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


# -- traffic policy -----------------------------------------------------------------------------------------

POLICY_FIELDS = (
    "canary_version",
    "canary_percent",
    "shadow_versions",
    "sticky_by",
    "max_error_rate_increase",
    "max_p95_latency_increase",
    "min_requests",
    "window_minutes",
)


def traffic_policy_get(*, registered_model: RegisteredModel) -> TrafficPolicy:
    """The model's policy; an unsaved default (champion only) when none was ever set."""
    found = TrafficPolicy.objects.filter(registered_model=registered_model).first()
    return found if found is not None else TrafficPolicy(registered_model=registered_model)


def traffic_policy_describe(policy: TrafficPolicy) -> dict[str, Any]:
    shadows = sorted(version.version for version in policy.shadow_versions.all()) if policy.pk else []
    return {
        "model": policy.registered_model.name,
        "canary_version": policy.canary_version.version if policy.canary_version_id else None,
        "canary_percent": policy.canary_percent,
        "shadow_versions": shadows,
        "sticky_by": policy.sticky_by,
        "max_error_rate_increase": policy.max_error_rate_increase,
        "max_p95_latency_increase": policy.max_p95_latency_increase,
        "min_requests": policy.min_requests,
        "window_minutes": policy.window_minutes,
        "revision": policy.revision,
        "updated_at": policy.updated_at,
        "updated_by": policy.updated_by,
        "rolled_back_at": policy.rolled_back_at,
        "rollback_reason": policy.rollback_reason,
    }


def _number(value: Any, *, minimum: float, maximum: float | None, integer: bool = False) -> str | None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        return "Must be an integer." if integer else "Must be a number."
    if value < minimum or (maximum is not None and value > maximum):
        return (
            f"Must be between {minimum:g} and {maximum:g}." if maximum is not None else f"Must be at least {minimum:g}."
        )
    return None


def traffic_policy_set(*, registered_model: RegisteredModel, changes: dict[str, Any], actor: Any) -> TrafficPolicy:
    """Change the model's traffic policy: every field not in `changes` keeps its value.

    The canary must be an approved version other than the champion (it answers real requests); shadow
    versions may be any version but a rejected one, the champion or the canary (they answer no one). A
    canary without a percentage is paused; a percentage needs a canary. Each change raises the revision,
    is audited with the policy before and after, and reaches every worker within FARO_ALIAS_TTL_SECONDS.
    """
    problems: dict[str, list[str]] = {}
    for key in sorted(set(changes) - set(POLICY_FIELDS)):
        problems[key] = ["Unknown field."]
    limits = {
        "canary_percent": (0.0, 100.0, False),
        "max_error_rate_increase": (0.0, 1.0, False),
        "max_p95_latency_increase": (0.0, None, False),
        "min_requests": (1, None, True),
        "window_minutes": (1, 24 * 60, True),
    }
    for key, (low, high, integer) in limits.items():
        if key in changes:
            problem = _number(changes[key], minimum=low, maximum=high, integer=integer)
            if problem:
                problems[key] = [problem]
    if "sticky_by" in changes and changes["sticky_by"] not in StickyBy.values:
        problems["sticky_by"] = [f"Must be one of: {', '.join(StickyBy.values)}."]
    versions = {version.version: version for version in registered_model.versions.all()}
    champion = ModelAlias.objects.filter(registered_model=registered_model, name=ModelAlias.Name.CHAMPION).first()
    champion_id = champion.version_id if champion else None
    canary = None
    if changes.get("canary_version") is not None:
        number = changes["canary_version"]
        canary = versions.get(number) if isinstance(number, int) and not isinstance(number, bool) else None
        if canary is None:
            problems["canary_version"] = [f"{registered_model.name} has no version {number!r}."]
        elif canary.status != ModelVersion.Status.APPROVED:
            problems["canary_version"] = [
                f"v{number} is {canary.get_status_display().lower()}; a canary must be approved."
            ]
        elif canary.pk == champion_id:
            problems["canary_version"] = [f"v{number} is the champion."]
    shadows: list[ModelVersion] | None = None
    if "shadow_versions" in changes:
        given = changes["shadow_versions"]
        if not isinstance(given, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in given):
            problems["shadow_versions"] = ["Must be a list of version numbers."]
        else:
            shadows, wrong = [], []
            for number in sorted(set(given)):
                version = versions.get(number)
                if version is None:
                    wrong.append(f"{registered_model.name} has no version {number}.")
                elif version.status == ModelVersion.Status.REJECTED:
                    wrong.append(f"v{number} was rejected.")
                elif version.pk == champion_id:
                    wrong.append(f"v{number} is the champion.")
                else:
                    shadows.append(version)
            if wrong:
                problems["shadow_versions"] = wrong
    if problems:
        raise InvalidInput("Invalid traffic policy.", extra={"fields": problems})
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        policy, _ = TrafficPolicy.objects.get_or_create(registered_model=registered_model)
        before = traffic_policy_describe(policy)
        if "canary_version" in changes:
            policy.canary_version = canary
            if canary is not None:
                policy.rolled_back_at, policy.rollback_reason = None, ""
        for key in limits.keys() | {"sticky_by"}:
            if key in changes:
                setattr(policy, key, changes[key])
        if policy.canary_version_id is None and policy.canary_percent > 0:
            if "canary_percent" in changes:
                raise InvalidInput(
                    "Invalid traffic policy.",
                    extra={"fields": {"canary_percent": ["A percentage needs a canary_version."]}},
                )
            policy.canary_percent = 0.0
        if shadows is not None:
            policy.shadow_versions.set(shadows)
        active_shadows = {version.pk for version in policy.shadow_versions.all()}
        if policy.canary_version_id is not None and policy.canary_version_id in active_shadows:
            raise InvalidInput(
                "Invalid traffic policy.",
                extra={"fields": {"shadow_versions": [f"v{policy.canary_version.version} is the canary."]}},
            )
        policy.revision += 1
        policy.updated_by = actor_ref(actor)
        policy.save()
        after = traffic_policy_describe(policy)
        changed = {key: {"from": before[key], "to": after[key]} for key in POLICY_FIELDS if before[key] != after[key]}
        audit_record(actor=actor, action="traffic_policy.changed", target=registered_model, data=changed)
        event_emit(kind="traffic_policy.changed", payload={"model": registered_model.name, "policy": _jsonable(after)})
    return policy


def _jsonable(description: dict[str, Any]) -> dict[str, Any]:
    return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in description.items()}


# -- canary judgement ---------------------------------------------------------------------------------------


@dataclass
class RouteHealth:
    requests: int
    failures: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float:
        total = self.requests + self.failures
        return self.failures / total if total else 0.0


def _route_health(version_id: int, route: str, since: datetime) -> RouteHealth:
    latencies = sorted(
        PredictionRecord.objects.filter(
            model_version_id=version_id, route=route, created_at__gte=since, row=0
        ).values_list("latency_ms", flat=True)
    )
    latencies = [value for value in latencies if value is not None]
    failures = ScoringFailure.objects.filter(model_version_id=version_id, route=route, created_at__gte=since).count()
    p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)] if latencies else None
    return RouteHealth(requests=len(latencies), failures=failures, p95_ms=p95)


def canary_judge(policy: TrafficPolicy, *, now: datetime | None = None) -> str | None:
    """Why the policy's canary should be rolled back, or None while it is no worse than the champion by the
    policy's margins (or has answered too few requests in the window to tell)."""
    if policy.canary_version_id is None:
        return None
    champion = ModelAlias.objects.filter(
        registered_model_id=policy.registered_model_id, name=ModelAlias.Name.CHAMPION
    ).first()
    if champion is None:
        return None
    since = (now or timezone.now()) - timedelta(minutes=policy.window_minutes)
    canary = _route_health(policy.canary_version_id, Route.CANARY, since)
    baseline = _route_health(champion.version_id, Route.CHAMPION, since)
    if canary.requests + canary.failures < policy.min_requests:
        return None
    if canary.error_rate - baseline.error_rate > policy.max_error_rate_increase:
        return (
            f"error rate {canary.error_rate:.2%} against the champion's {baseline.error_rate:.2%} "
            f"(margin {policy.max_error_rate_increase:.2%}) over the last {policy.window_minutes} min"
        )
    if (
        canary.p95_ms is not None
        and baseline.p95_ms is not None
        and canary.p95_ms > baseline.p95_ms * (1 + policy.max_p95_latency_increase)
    ):
        return (
            f"p95 latency {canary.p95_ms:.1f} ms against the champion's {baseline.p95_ms:.1f} ms "
            f"(margin {policy.max_p95_latency_increase:.0%}) over the last {policy.window_minutes} min"
        )
    return None


def canaries_check(*, now: datetime | None = None) -> list[str]:
    """Judge every running canary; roll back each that is worse than its champion. Returns the models
    whose canary was rolled back."""
    rolled_back = []
    for policy in TrafficPolicy.objects.filter(canary_version__isnull=False).select_related(
        "registered_model", "canary_version"
    ):
        reason = canary_judge(policy, now=now)
        if reason is not None and canary_rollback(policy=policy, reason=reason, expected_revision=policy.revision):
            rolled_back.append(policy.registered_model.name)
    return rolled_back


def canary_rollback(*, policy: TrafficPolicy, reason: str, expected_revision: int, actor: Any = None) -> bool:
    """Stop the canary (all traffic to the champion), audited with the reason. False when the policy
    changed meanwhile (someone else decided)."""
    with transaction.atomic():
        current = TrafficPolicy.objects.select_for_update().get(pk=policy.pk)
        if current.revision != expected_revision or current.canary_version_id is None:
            return False
        version = current.canary_version.version
        current.canary_version, current.canary_percent = None, 0.0
        current.rolled_back_at, current.rollback_reason = timezone.now(), reason
        current.revision += 1
        current.updated_by = actor_ref(actor)
        current.save()
        data = {"canary_version": version, "reason": reason}
        audit_record(
            actor=actor, action="traffic_policy.canary_rolled_back", target=current.registered_model, data=data
        )
        event_emit(kind="traffic_policy.canary_rolled_back", payload={"model": current.registered_model.name, **data})
    logger.warning("Canary v%s of %s rolled back: %s", version, current.registered_model.name, reason)
    return True


# -- feedback -----------------------------------------------------------------------------------------------


def feedback_record(*, request_id: uuid.UUID, actuals: list[Any], actor: Any) -> list[PredictionRecord]:
    """Attach ground truth to a logged decision: one actual per row, in row order (a label for a
    classifier, a number for a regression). Sending it again replaces it (a corrected label)."""
    with transaction.atomic():
        records = list(
            PredictionRecord.objects.select_for_update()
            .filter(request_id=request_id)
            .exclude(route=Route.SHADOW)
            .select_related("model_version__registered_model")
            .order_by("row")
        )
        if not records:
            raise NotFound(f"No decision with request id {request_id}.")
        if len(actuals) != len(records):
            raise InvalidInput(
                f"The decision has {len(records)} row(s); send one actual per row.",
                extra={"fields": {"actuals": [f"Expected {len(records)} value(s), got {len(actuals)}."]}},
            )
        version = records[0].model_version
        problems = []
        for index, actual in enumerate(actuals):
            if version.task_type == TaskType.REGRESSION:
                if isinstance(actual, bool) or not isinstance(actual, (int, float)) or not math.isfinite(actual):
                    problems.append({"row": index, "field": "actuals", "message": "must be a finite number"})
            elif str(actual) not in {str(label) for label in version.labels} or isinstance(actual, (dict, list)):
                allowed = ", ".join(repr(str(label)) for label in version.labels)
                problems.append(
                    {"row": index, "field": "actuals", "message": f"{actual!r} is not a label; allowed: {allowed}"}
                )
        if problems:
            raise InvalidInput(f"{len(problems)} problem(s) with the actuals.", extra={"errors": problems})
        now = timezone.now()
        for record, actual in zip(records, actuals, strict=True):
            record.actual, record.actual_at = actual, now
        PredictionRecord.objects.bulk_update(records, ["actual", "actual_at"])
        audit_record(
            actor=actor,
            action="prediction.feedback",
            target=version,
            data={"request_id": str(request_id), "rows": len(records)},
        )
    return records
