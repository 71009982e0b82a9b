"""Shadow scoring: versions that score a request's rows after the answer has been decided, on a thread of
the web process, so they add nothing to the request's latency and can never change what the client gets.

Their decisions go to the decision log with route `shadow` and the request's id; a shadow version that
refuses or fails the rows records a ScoringFailure. The queue is bounded (FARO_SHADOW_QUEUE_SIZE): when it
is full the request is not shadowed and `faro_shadow_skipped_total` counts it. Shadow decisions are never
acknowledged to anyone, so a process that dies with some still queued loses only those.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections, connections
from prometheus_client import Counter

from apps.core.errors import FaroError
from apps.predictions.decision_log import Decision, decisions_write
from apps.predictions.loader import model_cache
from apps.predictions.models import Route, ScoringFailure

logger = logging.getLogger(__name__)

SHADOW_SKIPPED = Counter("faro_shadow_skipped", "Requests not shadowed because the shadow queue was full.", ["model"])


@dataclass(frozen=True)
class ShadowRequest:
    model_name: str
    versions: tuple[int, ...]
    request_id: uuid.UUID
    rows: list[dict[str, Any]]
    subject_ids: list[str]
    channel: str
    client: str


def shadow_score(request: ShadowRequest) -> None:
    """Score `request` with each of its shadow versions and log the decisions (or the failure)."""
    for number in request.versions:
        started = time.perf_counter()
        try:
            loaded = model_cache.get(request.model_name, version=number)
            problems = loaded.pipeline.validate_rows(request.rows)
            if problems:
                first = problems[0]
                raise FaroError(f"refused the inputs: row {first.get('row')} {first.get('field')}: {first['message']}")
            outputs = loaded.predict(loaded.pipeline.transform_rows(request.rows))
        except Exception as exc:
            if not isinstance(exc, FaroError):
                logger.exception("Shadow version %s v%s failed", request.model_name, number)
            version_id = _version_id(request.model_name, number)
            if version_id is not None:
                message = exc.message if isinstance(exc, FaroError) else f"failed: {type(exc).__name__}"
                ScoringFailure.objects.create(model_version_id=version_id, route=Route.SHADOW, error=message[:200])
            continue
        latency_ms = (time.perf_counter() - started) * 1000
        decisions_write(
            [
                Decision(row=index, subject_id=subject_id, inputs=loaded.minimise(row), output=output)
                for index, (row, output, subject_id) in enumerate(
                    zip(request.rows, outputs, request.subject_ids, strict=True)
                )
            ],
            request_id=request.request_id,
            model_version_id=loaded.version_id,
            route=Route.SHADOW,
            channel=request.channel,
            client=request.client,
            latency_ms=latency_ms,
        )


def _version_id(model_name: str, number: int) -> int | None:
    from apps.registry.models import ModelVersion

    return (
        ModelVersion.objects.filter(registered_model__name=model_name, version=number)
        .values_list("pk", flat=True)
        .first()
    )


class ShadowScorer:
    """A bounded queue and one daemon thread per process, started on first use (after a fork, anew)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._queue: queue.Queue[ShadowRequest] = queue.Queue()

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=settings.FARO_SHADOW_QUEUE_SIZE)
            threading.Thread(target=self._run, name="faro-shadow", daemon=True).start()
            self._pid = os.getpid()

    def submit(self, request: ShadowRequest) -> bool:
        self._ensure_started()
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            SHADOW_SKIPPED.labels(model=request.model_name).inc()
            return False
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued has been scored; False if that took longer than `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        work = self._queue
        while True:
            request = work.get()
            try:
                shadow_score(request)
            except Exception:
                logger.exception("Shadow scoring of request %s failed", request.request_id)
            finally:
                if work.empty():  # idle: hold no database connection (shadows are off the request path)
                    connections.close_all()
                else:
                    close_old_connections()
                work.task_done()


shadow_scorer = ShadowScorer()
