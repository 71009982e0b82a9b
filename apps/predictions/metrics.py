"""Prometheus metrics of the prediction path. Labels stay low-cardinality: no ids, no inputs; the model label
is always a registered model's name as loaded, never what a client typed."""

from prometheus_client import Counter, Histogram

PREDICTIONS = Counter(
    "faro_predictions",
    "Rows predicted, by model, version and outcome (the predicted class, or 'value' for regression).",
    ["model", "version", "outcome"],
)
PREDICTION_REQUESTS = Counter(
    "faro_prediction_requests",
    "Prediction requests by model and status (ok, invalid, not_found, unavailable).",
    ["model", "status"],
)
PREDICTION_LATENCY = Histogram(
    "faro_prediction_latency_seconds",
    "Time to validate, transform, predict and log one prediction request.",
    ["model"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
STAGES = ("parse", "validate", "features", "predict", "log")
PREDICTION_STAGE_LATENCY = Histogram(
    "faro_prediction_stage_seconds",
    "Time of one stage of a prediction request: parse (the body), validate (routing and the signature), "
    "features (online features and the feature pipeline), predict (scores and explanations), log (the "
    "decision log write).",
    ["model", "stage"],
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5),
)
BATCH_ROWS = Counter(
    "faro_batch_rows_scored",
    "Rows scored by batch scoring jobs, by model and version.",
    ["model", "version"],
)


_stage_timers: dict[str, tuple] = {}


def stage_timers(model: str) -> tuple:
    """The stage histogram's children of one model, in STAGES order, bound once: `labels()` costs a lock and
    a dict look-up per call, which five stages a request would pay on the scoring path."""
    timers = _stage_timers.get(model)
    if timers is None:
        timers = _stage_timers[model] = tuple(PREDICTION_STAGE_LATENCY.labels(model=model, stage=s) for s in STAGES)
    return timers
