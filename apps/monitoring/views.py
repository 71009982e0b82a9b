"""Liveness and readiness for load balancers and orchestrators."""

import logging
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.http import require_GET

from apps.core.errors import FaroError
from apps.predictions.loader import model_cache
from apps.registry.selectors import champion_versions

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
