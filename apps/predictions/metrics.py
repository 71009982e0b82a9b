"""Prometheus metrics of the prediction path. Labels stay low-cardinality: no ids, no inputs."""

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
