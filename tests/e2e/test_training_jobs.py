"""Training jobs against a real Celery worker: kill -9 mid-training, a poison job, a task delivered twice,
and a cancel. Each test gets its own stack with a short lease, so the reaper can take a job back quickly."""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time

import pytest

from tests.e2e.conftest import POLL_SECONDS, Stack, running_stack, spawn_worker, wait_for_worker

WEBHOOK_SECRET = "e2e-webhook-secret-0123456789"
LEASE_SECONDS = 3
MAX_ATTEMPTS = 2
# Slow enough to be caught mid-training (thousands of rounds that keep improving), small enough to finish.
SLOW_PARAMS = {"n_estimators": 2500, "max_depth": 4, "learning_rate": 0.002, "early_stopping_rounds": 1000}

SETUP = """
import json
from django.core.files.uploadedfile import SimpleUploadedFile
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.registry.services import registered_model_create
from tests.conftest import generated_csv
dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
version = dataset_version_create_from_upload(
    dataset=dataset, upload=SimpleUploadedFile("loans.csv", generated_csv(rows=20000), content_type="text/csv")
)
registered_model_create(name="loan-risk", task_type="classification")
print(json.dumps({"dataset_version": version.pk}))
"""

QUEUE = """
import json
from apps.data.models import DatasetVersion
from apps.registry.models import RegisteredModel
from apps.registry.services import training_job_create
job = training_job_create(
    registered_model=RegisteredModel.objects.get(name="loan-risk"),
    dataset_version=DatasetVersion.objects.get(pk={dataset_version}),
    params={params},
)
print(json.dumps({{"job": job.pk}}))
"""

STATE = """
import json
from apps.governance.models import AuditEvent
from apps.registry.models import ModelVersion, TrainingJob
job = TrainingJob.objects.get(pk={job})
print(json.dumps({{
    "status": job.status, "progress": job.progress, "attempts": job.attempts, "error": job.error,
    "versions": ModelVersion.objects.filter(training_job__pk=job.pk).count(),
    "all_versions": ModelVersion.objects.count(),
    "actions": list(AuditEvent.objects.filter(object_type="registry.trainingjob", object_id=str(job.pk))
                    .order_by("seq").values_list("action", flat=True)),
}}))
"""


def shell(stack: Stack, code: str) -> dict:
    done = stack.manage("shell", "-c", code)
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def queue_job(stack: Stack, dataset_version: int, params: dict) -> int:
    return shell(stack, QUEUE.format(dataset_version=dataset_version, params=repr(params)))["job"]


def state(stack: Stack, job: int) -> dict:
    return shell(stack, STATE.format(job=job))


def wait_for(stack: Stack, job: int, what: str, ok, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    current: dict = {}
    while time.monotonic() < deadline:
        current = state(stack, job)
        if ok(current):
            return current
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"job {job}: {what} not reached within {timeout:.0f} s; last state {current}\n{stack.tails()}")


def kill_worker(stack: Stack) -> None:
    process = stack.processes["worker"]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def reap(stack: Stack) -> str:
    done = stack.manage("training_jobs_reap")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def job_stack():
    env = {
        "FARO_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "FARO_JOB_MAX_ATTEMPTS": str(MAX_ATTEMPTS),
        "FARO_WEBHOOK_SECRET_E2E": WEBHOOK_SECRET,
    }
    with running_stack(extra_env=env, web=False) as stack:
        stack.ids = shell(stack, SETUP)  # type: ignore[attr-defined]
        yield stack


def test_kill_9_during_training_is_retried_and_registers_one_version(job_stack):
    stack = job_stack
    job = queue_job(stack, stack.ids["dataset_version"], SLOW_PARAMS)
    wait_for(stack, job, "training under way", lambda s: s["status"] == "running" and s["progress"] > 0)

    kill_worker(stack)
    dead = state(stack, job)
    assert (dead["status"], dead["attempts"]) == ("running", 1)  # its lease has not lapsed yet
    time.sleep(LEASE_SECONDS + 1)
    assert reap(stack) == f"Reaped 1 training job(s): {job}."
    requeued = state(stack, job)
    assert (requeued["status"], requeued["attempts"]) == ("queued", 1)
    assert requeued["error"] == (
        f"The worker stopped during attempt 1 of {MAX_ATTEMPTS} (its lease lapsed); the job was queued again."
    )

    ready = stack.log_text("worker").count(" ready.")
    spawn_worker(stack)
    wait_for_worker(stack, ready)
    done = wait_for(
        stack, job, "the second attempt's end", lambda s: s["status"] in ("succeeded", "failed"), timeout=300
    )
    assert (done["status"], done["attempts"], done["error"]) == ("succeeded", 2, "")
    assert (done["versions"], done["all_versions"]) == (1, 1)
    assert done["actions"] == [
        "training_job.created",
        "training_job.started",
        "training_job.requeued",
        "training_job.started",
        "training_job.succeeded",
    ]
    assert reap(stack) == "Reaped 0 training job(s)."


def test_poison_job_stops_after_the_maximum_attempts(job_stack):
    stack = job_stack
    job = queue_job(stack, stack.ids["dataset_version"], SLOW_PARAMS)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        wait_for(
            stack,
            job,
            f"attempt {attempt} under way",
            lambda s, attempt=attempt: s["status"] == "running" and s["attempts"] == attempt and s["progress"] > 0,
        )
        kill_worker(stack)
        time.sleep(LEASE_SECONDS + 1)
        assert reap(stack) == f"Reaped 1 training job(s): {job}."
        if attempt < MAX_ATTEMPTS:
            ready = stack.log_text("worker").count(" ready.")
            spawn_worker(stack)
            wait_for_worker(stack, ready)
    final = state(stack, job)
    assert (final["status"], final["attempts"], final["versions"]) == ("failed", MAX_ATTEMPTS, 0)
    assert final["error"] == (
        f"The worker stopped during each of {MAX_ATTEMPTS} attempts (its lease lapsed); the job was not retried."
    )
    assert final["actions"][-1] == "training_job.failed"


def test_a_task_delivered_twice_trains_once(job_stack):
    stack = job_stack
    params = {"n_estimators": 30, "max_depth": 3, "early_stopping_rounds": 5}
    job = queue_job(stack, stack.ids["dataset_version"], params)
    # The same task published twice more, as a broker redelivery would.
    shell(
        stack,
        f"from apps.registry.tasks import training_job_run\n"
        f"training_job_run.delay({job}); training_job_run.delay({job})\nprint('{{}}')",
    )
    done = wait_for(stack, job, "the end", lambda s: s["status"] in ("succeeded", "failed"))
    time.sleep(2)  # let the duplicates be consumed
    again = state(stack, job)
    assert (again["status"], again["attempts"], again["versions"], again["all_versions"]) == ("succeeded", 1, 1, 1)
    assert done["actions"].count("training_job.started") == 1


def test_cancel_stops_a_running_job_within_seconds(job_stack):
    stack = job_stack
    job = queue_job(stack, stack.ids["dataset_version"], SLOW_PARAMS)
    wait_for(stack, job, "training under way", lambda s: s["status"] == "running" and s["progress"] > 0)
    shell(
        stack,
        f"from apps.registry.models import TrainingJob\nfrom apps.registry.services import training_job_cancel\n"
        f"training_job_cancel(job=TrainingJob.objects.get(pk={job}))\nprint('{{}}')",
    )
    asked = time.monotonic()
    done = wait_for(stack, job, "cancelled", lambda s: s["status"] != "running", timeout=30)
    assert (done["status"], done["error"], done["versions"]) == ("cancelled", "Cancelled.", 0)
    assert done["actions"][-2:] == ["training_job.cancel_requested", "training_job.cancelled"]
    print(f"cancelled {time.monotonic() - asked:.1f} s after the request (manage.py start-up included)")


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_worker_delivers_a_signed_event_when_a_version_is_ready(job_stack):
    from apps.events.delivery import verify

    stack = job_stack
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hooks/faro"
        shell(
            stack,
            "from apps.events.services import webhook_create\n"
            f"webhook_create(name='e2e', url={url!r}, secret_env='FARO_WEBHOOK_SECRET_E2E', "
            "event_kinds=['model_version.ready'])\nprint('{}')",
        )
        job = queue_job(stack, stack.ids["dataset_version"], {"n_estimators": 20, "max_depth": 3})
        wait_for(stack, job, "the end", lambda s: s["status"] in ("succeeded", "failed"))
        deadline = time.monotonic() + 60
        while not _Receiver.received:
            assert time.monotonic() < deadline, stack.tails()
            time.sleep(POLL_SECONDS)
    finally:
        server.shutdown()
    [(headers, body)] = _Receiver.received
    event = json.loads(body)
    assert (headers["X-Faro-Event"], event["kind"]) == ("model_version.ready", "model_version.ready")
    assert (event["payload"]["model"], event["payload"]["version"], event["payload"]["status"]) == (
        "loan-risk",
        1,
        "pending_manual_approval",
    )
    assert verify(
        WEBHOOK_SECRET.encode(),
        headers["X-Faro-Timestamp"],
        body,
        headers["X-Faro-Signature"],
        now=time.time(),
    )
    delivered = shell(
        stack,
        "import json\nfrom apps.events.models import WebhookDelivery\n"
        "d = WebhookDelivery.objects.get()\n"
        "print(json.dumps([d.status, d.attempts, d.last_status_code]))",
    )
    assert delivered == ["delivered", 1, 204]
