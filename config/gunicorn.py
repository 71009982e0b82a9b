"""gunicorn configuration shared by `make run`, the benchmarks and production."""

import gc
import os

wsgi_app = "config.wsgi:application"
workers = int(os.environ.get("FARO_WEB_WORKERS", "2"))
worker_class = "sync"
timeout = 30
graceful_timeout = 20
max_requests = 20000
max_requests_jitter = 2000
accesslog = None
# One control socket per installation, so several instances on one host (web, tests, benchmarks) don't collide.
control_socket = os.path.join(os.environ.get("FARO_VAR_DIR") or os.path.join(os.getcwd(), "var"), "gunicorn.ctl")


def child_exit(server, worker):
    """Let Prometheus' multiprocess collector drop a dead worker's live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_worker_init(worker):
    """Before the first request: import every view (the URL configuration) and load every champion, so no
    client pays for the imports and the loads; then freeze what the worker holds.

    Freezing moves the objects alive now (modules, views, models: about 200,000) out of the garbage
    collector's reach. Without it, each full collection walks them all and stops the worker for about
    0.2 s, which a client sees as a latency spike; they live as long as the worker anyway."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 (imports every view module)
    try:
        from apps.predictions.loader import model_cache
        from apps.registry.selectors import champion_versions

        for version in champion_versions():
            model_cache.load(version)
    except Exception:  # a broken model is reported by /readyz; the worker still serves the rest
        worker.log.exception("Warming the model cache failed")
    gc.collect()
    gc.freeze()
