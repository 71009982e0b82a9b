"""Liveness and readiness for load balancers and orchestrators, the Prometheus scrape, and the staff's
monitoring dashboards."""

import logging
import os
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.contrib.admin.views.decorators import staff_member_required
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from apps.core.errors import FaroError, NotFound
from apps.monitoring import dashboards
from apps.monitoring.collectors import FaroStateCollector
from apps.predictions.loader import model_cache
from apps.registry.selectors import champion_versions, registered_model_get

logger = logging.getLogger(__name__)


@require_GET
def healthz(request):
    return JsonResponse({"status": "alive"})


def _check_database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return f"database unreachable: {type(exc).__name__}"
    return None


def _check_broker() -> str | None:
    options = current_app.conf.broker_transport_options or {}
    folder = options.get("data_folder_out")
    if current_app.conf.broker_url.startswith("filesystem"):
        if not folder or not Path(folder).is_dir():
            return f"broker folder {folder} is missing"
        return None
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception as exc:
        return f"broker unreachable: {type(exc).__name__}"
    return None


def _check_models() -> dict[str, str]:
    results = {}
    for version in champion_versions():
        try:
            model_cache.load(version)
            results[version.registered_model.name] = f"ok (v{version.version})"
        except FaroError as exc:
            results[version.registered_model.name] = exc.message
        except Exception as exc:
            logger.exception("Champion %s failed to load", version)
            results[version.registered_model.name] = f"failed to load: {type(exc).__name__}"
    return results


@require_GET
def readyz(request):
    """200 when the database, the broker and every champion model answer; 503 naming what does not."""
    problems = []
    database = _check_database()
    if database:
        problems.append(database)
    broker = _check_broker()
    if broker:
        problems.append(broker)
    models = _check_models() if not database else {}
    problems.extend(f"{name}: {state}" for name, state in models.items() if not state.startswith("ok"))
    body = {
        "status": "unavailable" if problems else "ready",
        "problems": problems,
        "checks": {"database": database or "ok", "broker": broker or "ok", "models": models},
    }
    if settings.DEBUG:
        body["debug"] = True
    return JsonResponse(body, status=503 if problems else 200)


class _ProcessMetrics:
    """This process's own metrics, when there is no multiprocess directory (one process: runserver, tests)."""

    def collect(self):
        return REGISTRY.collect()


@require_GET
def metrics(request):
    """Prometheus text: every process's counters and histograms (summed over the web and Celery workers'
    multiprocess files when PROMETHEUS_MULTIPROC_DIR is set), plus gauges read from Faro's state."""
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ProcessMetrics())
    registry.register(FaroStateCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


# -- dashboards (staff pages) ------------------------------------------------------------------------------


@staff_member_required
@require_GET
def fleet(request):
    """Every registered model on one page, the ones with problems first."""
    return render(request, "monitoring/fleet.html", {"rows": dashboards.fleet_overview()})


@staff_member_required
@require_GET
def model_dashboard(request, name: str):
    """One model's traffic, latency, errors, canary, drift, live quality, SLOs, alerts and cost.

    `?hours=` picks the traffic window, one of dashboards.HOURS_CHOICES (24 when absent); any other value
    is a 400 page that names the parameter and its choices, as the registry's compare page does."""
    try:
        model = registered_model_get(name=name)
    except NotFound:
        raise Http404(name) from None
    raw = request.GET.get("hours")
    choices = dashboards.HOURS_CHOICES
    if raw is None:
        hours = dashboards.DEFAULT_HOURS
    elif raw.isdigit() and int(raw) in choices:
        hours = int(raw)
    else:
        listed = ", ".join(str(choice) for choice in choices[:-1]) + f" or {choices[-1]}"
        return render(
            request,
            "monitoring/model.html",
            {
                "model": model,
                "hours": dashboards.DEFAULT_HOURS,
                "hours_choices": [{"hours": c, "label": dashboards.window_label(c)} for c in choices],
                "problem": f"hours must be one of {listed}; {raw!r} is not.",
            },
            status=400,
        )
    return render(request, "monitoring/model.html", dashboards.model_dashboard(model, hours=hours))
