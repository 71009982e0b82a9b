"""HTTP metrics for every request, kept to what an operator charts: requests by view, method and status, and
latency by view. Two metric updates per request (the prediction path's own metrics are in
apps.predictions.metrics), and a third for a scoring request: the worker thread's CPU time, by the model
and version that answered (the cost per inference). Labels are bounded: the URL pattern's name, never the
path or its ids.
"""

import time

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter(
    "faro_http_requests",
    "HTTP requests by view (the URL pattern's name), method and status code.",
    ["view", "method", "status"],
)
HTTP_LATENCY = Histogram(
    "faro_http_request_duration_seconds",
    "Time from the first middleware to the response, by view.",
    ["view"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
PREDICTION_CPU = Counter(
    "faro_prediction_cpu_seconds",
    "CPU time of the web worker thread spent on scoring requests, from the first middleware to the response, "
    "by the model and version that answered. Divided by faro_predictions_total, the CPU seconds per prediction.",
    ["model", "version"],
)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetricsMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        started, cpu_started = time.perf_counter(), time.thread_time()
        response = self.get_response(request)
        scored_by = response.headers.get("X-Model-Version")
        if scored_by is not None:  # "model/version", set by the scoring endpoints from the model as loaded
            model, _, version = scored_by.rpartition("/")
            PREDICTION_CPU.labels(model=model, version=version).inc(time.thread_time() - cpu_started)
        match = request.resolver_match
        view = (match.view_name or "unnamed") if match is not None else "unresolved"
        method = request.method if request.method in METHODS else "other"
        HTTP_REQUESTS.labels(view=view, method=method, status=str(response.status_code)).inc()
        HTTP_LATENCY.labels(view=view).observe(time.perf_counter() - started)
        return response
