"""The vertical slice through real processes: upload, train on the worker, promote, predict, observe.

Run with `pytest -m e2e tests/e2e`. With DATABASE_URL and REDIS_URL set, the stack runs on a fresh
PostgreSQL database and a Redis broker; otherwise on SQLite and the filesystem broker.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import generated_csv, valid_row
from tests.e2e.conftest import ALIAS_TTL_SECONDS, POLL_SECONDS, Stack

pytestmark = pytest.mark.e2e

MODEL = "loan-risk"
DATASET = "loans-e2e"
TRAIN_TIMEOUT_SECONDS = 120.0
SWITCH_LIMIT_SECONDS = 2.0
HTTP_TIMEOUT = 30
RESULT_MARK = "E2E_RESULT="
TASK_NAME = "registry.training_job_run"
STATUS_ORDER = ["queued", "running", "succeeded"]


@dataclass
class Slice:
    """What the first steps of the slice built, shared by the tests of this module."""

    stack: Stack
    token: str = field(repr=False)
    # A second admin: the maker of a version (the token that trained it) may not approve it.
    checker_token: str = field(repr=False)
    first_job: dict[str, Any]
    statuses_seen: list[str]
    # Rows predicted so far, by the version that answered: what /metrics must add up to.
    rows_predicted: Counter = field(default_factory=Counter)
    predict_requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, self.stack.url(path), headers=headers, timeout=HTTP_TIMEOUT, **kwargs)

    def approve(self, version: int) -> None:
        """Approve as the checker; the note lets a version whose gates fail through, as a person would."""
        response = self.call(
            "POST",
            f"/api/v1/models/{MODEL}/versions/{version}/approve",
            json={"note": "Reviewed in the end-to-end test."},
            headers={"Authorization": f"Bearer {self.checker_token}"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "approved"

    def predict(self, rows: int = 1, seed: int = 0) -> int:
        """One REST prediction of `rows` rows with the champion; returns the version that answered."""
        inputs = [valid_row(income=1500.0 + 617.3 * ((seed + i) % 13), age=20 + (seed + i) % 50) for i in range(rows)]
        response = self.call("POST", f"/api/v1/models/{MODEL}/predict", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == MODEL
        assert len(body["outputs"]) == rows
        assert response.headers["X-Model-Version"] == f"{MODEL}/{body['version']}"
        with self.lock:
            self.rows_predicted[str(body["version"])] += rows
            self.predict_requests += 1
        return body["version"]

    def predict_many(self, count: int, threads: int = 4) -> list[int]:
        """`count` concurrent requests, so that both web workers answer some."""
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(lambda i: self.predict(rows=1 + i % 3, seed=i), range(count)))


def manage_result(stack: Stack, code: str) -> Any:
    """Run Python in `manage.py shell` against the stack; the code prints RESULT_MARK + JSON."""
    done = stack.manage("shell", "-c", code)
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise AssertionError(f"no result printed:\n{done.stdout}\n{done.stderr}")


def wait_for_job(
    s: Slice, job_id: int, statuses: list[str] | None = None, kind: str = "training-jobs"
) -> dict[str, Any]:
    """Poll the job (bounded) until it finishes; record every status seen."""
    deadline = time.monotonic() + TRAIN_TIMEOUT_SECONDS
    while True:
        response = s.call("GET", f"/api/v1/{kind}/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if statuses is not None and (not statuses or statuses[-1] != job["status"]):
            statuses.append(job["status"])
        if job["status"] in ("succeeded", "failed"):
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['status']} after {TRAIN_TIMEOUT_SECONDS:.0f} s")
        s.stack.assert_running()
        time.sleep(POLL_SECONDS)


def create_job(s: Slice, **params) -> dict[str, Any]:
    response = s.call(
        "POST",
        "/api/v1/training-jobs",
        json={"model": MODEL, "dataset": DATASET, "params": {"n_estimators": 30, **params}},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    # Read back after the commit that queued it: a fast worker may already have claimed it.
    assert job["status"] in STATUS_ORDER, job
    assert response.headers["Location"] == f"/api/v1/training-jobs/{job['id']}"
    return job


def logged_predictions(s: Slice) -> list[tuple[str, str]]:
    """(web worker pid, version reported) for every prediction in the access log, once it has them all.

    gunicorn writes an access line after the response has gone, so wait (bounded) until the log holds
    one line per prediction made; a late line would otherwise be counted in the wrong window.
    """
    deadline = time.monotonic() + 5.0
    while True:
        lines = []
        for line in s.stack.log_text("access").splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[1] == "POST" and parts[2].endswith("/predict") and parts[3] == "200":
                lines.append((parts[0], parts[4].rsplit("/", 1)[-1]))
        with s.lock:
            expected = s.predict_requests
        if len(lines) >= expected:
            return lines
        assert time.monotonic() < deadline, f"access log has {len(lines)} predictions, expected {expected}"
        time.sleep(0.01)


def versions_by_worker(s: Slice, since: int) -> dict[str, set[str]]:
    """For each web worker pid, the versions its predictions reported, from prediction number `since` on."""
    served: dict[str, set[str]] = {}
    for pid, version in logged_predictions(s)[since:]:
        served.setdefault(pid, set()).add(version)
    return served


def worker_task_lines(stack: Stack) -> tuple[int, int]:
    """Deliveries of the training task the worker received, and those it finished."""
    received = finished = 0
    for line in stack.log_text("worker").splitlines():
        if f"Task {TASK_NAME}[" not in line:
            continue
        if "] received" in line:
            received += 1
        elif re.search(r"\] (succeeded|failed|raised|retry)", line):
            finished += 1
    return received, finished


def champion_version(s: Slice) -> int | None:
    response = s.call("GET", f"/api/v1/models/{MODEL}")
    assert response.status_code == 200, response.text
    return response.json()["aliases"].get("champion")


@pytest.fixture(scope="module")
def slice_(stack: Stack) -> Slice:
    """A token, the dataset uploaded over the API, v1 trained by the worker and promoted to champion."""
    created = stack.manage("token_create", "e2e", "--scopes", "predict,read,write,admin")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token and "\n" not in token
    checker = stack.manage("token_create", "e2e-checker", "--scopes", "admin")
    assert checker.returncode == 0, checker.stderr

    # The decision page says Approved/Declined only for a model with a favourable label; the API creates
    # models without one, so register it first (as an admin would in the console).
    manage_result(
        stack,
        "from apps.registry.services import registered_model_create; "
        f"m = registered_model_create(name={MODEL!r}, task_type='classification', favourable_label='yes'); "
        f"print({RESULT_MARK!r} + str(m.pk))",
    )
    s = Slice(stack=stack, token=token, checker_token=checker.stdout.strip(), first_job={}, statuses_seen=[])

    response = s.call(
        "POST",
        "/api/v1/datasets",
        json={"name": DATASET, "target_column": "repaid", "subject_key_column": "customer_id"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["latest_version"] is None

    response = s.call(
        "POST",
        f"/api/v1/datasets/{DATASET}/versions",
        files={"file": ("loans.csv", generated_csv(), "text/csv")},
    )
    assert response.status_code == 202, response.text
    ingest = response.json()
    assert response.headers["Location"] == ingest["url"] == f"/api/v1/ingest-jobs/{ingest['id']}"
    ingest = wait_for_job(s, ingest["id"], kind="ingest-jobs")  # ingested by the real worker
    assert (ingest["status"], ingest["dataset_version"], ingest["error"]) == ("succeeded", 1, "")
    version = s.call("GET", f"/api/v1/datasets/{DATASET}/versions/1").json()
    assert version["number"] == 1
    assert version["row_count"] == 300

    job = create_job(s)
    s.statuses_seen.append(job["status"])
    s.first_job = wait_for_job(s, job["id"], s.statuses_seen)
    assert s.first_job["status"] == "succeeded", s.first_job

    refused = s.call("POST", f"/api/v1/models/{MODEL}/versions/1/approve", json={})
    assert refused.status_code == 409, refused.text  # the maker may not approve its own version
    s.approve(1)
    response = s.call("PUT", f"/api/v1/models/{MODEL}/aliases/champion", json={"version": 1})
    assert response.status_code == 200, response.text
    assert response.json() == {"model": MODEL, "alias": "champion", "version": 1}
    return s


def test_whole_slice(slice_: Slice) -> None:
    s, stack = slice_, slice_.stack

    # The stack runs on the database and broker chosen for it, not on anything of the caller's.
    database = manage_result(
        stack,
        "import json; from django.db import connection; "
        f"print({RESULT_MARK!r} + json.dumps([connection.vendor, str(connection.settings_dict['NAME'])]))",
    )
    assert database[0] == stack.database, database
    assert database[1].startswith("faro_e2e_") if stack.database == "postgresql" else str(stack.tmp_dir) in database[1]
    assert re.search(rf"transport:\s+{stack.broker}://", stack.log_text("worker")), stack.log_text("worker")[:3000]

    # Trained by the worker process, observed through the API.
    # Every status seen is a step forward (queued -> running -> succeeded), ending in succeeded.
    assert s.statuses_seen[-1] == "succeeded", s.statuses_seen
    steps = [STATUS_ORDER.index(status) for status in s.statuses_seen]
    assert steps == sorted(set(steps)), s.statuses_seen
    job = s.first_job
    assert job["progress"] == 1.0
    assert job["model_version"] == 1
    assert job["model"] == MODEL and job["dataset"] == DATASET and job["dataset_version"] == 1
    assert job["started_at"] and job["finished_at"] and not job["error"]

    response = s.call("GET", f"/api/v1/models/{MODEL}/versions/1")
    assert response.status_code == 200, response.text
    version = response.json()
    metrics = version["metrics"]
    for name in ("auc", "accuracy", "log_loss"):
        assert isinstance(metrics[name], float), (name, metrics)
    assert 0.0 <= metrics["auc"] <= 1.0
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["log_loss"] > 0.0
    assert version["labels"] == ["no", "yes"]
    assert [item["name"] for item in version["signature"]["inputs"]] == ["income", "age", "city"]
    assert version["aliases"] == ["champion"]

    # REST predictions, concurrent so that both gunicorn workers answer.
    mark = len(logged_predictions(s))
    assert set(s.predict_many(20)) == {1}
    served = versions_by_worker(s, mark)
    assert len(served) == 2, f"expected both web workers to serve predictions, got {served}"

    # The decision page: a form with a CSRF token, answered with a decision.
    page = requests.Session()
    response = page.get(stack.url(f"/decide/{MODEL}/"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.text)
    assert match, response.text
    assert page.cookies.get("csrftoken")
    response = page.post(
        stack.url(f"/decide/{MODEL}/"),
        data={"csrfmiddlewaretoken": match.group(1), "income": "7200.5", "age": "35", "city": "north"},
        headers={"Referer": stack.url(f"/decide/{MODEL}/")},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert "Approved" in response.text or "Declined" in response.text
    answered = re.search(rf"Model {MODEL}, version (\d+)", response.text)
    assert answered and answered.group(1) == "1"
    with s.lock:
        s.rows_predicted["1"] += 1

    # Prometheus counts every row, summed over both web workers' multiprocess files.
    assert_metrics_match(s)

    # The audit chain is intact and recorded the slice.
    verified = stack.manage("audit_verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "intact" in verified.stdout
    actions = manage_result(
        stack,
        "import json; from apps.governance.models import AuditEvent; "
        f"print({RESULT_MARK!r} + json.dumps(sorted(set(AuditEvent.objects.values_list('action', flat=True)))))",
    )
    for action in (
        "token.created",
        "registered_model.created",
        "dataset.created",
        "dataset_version.created",
        "training_job.created",
        "training_job.started",
        "model_version.registered",
        "training_job.succeeded",
        "model.promoted",
    ):
        assert action in actions, (action, actions)


def assert_metrics_match(s: Slice) -> None:
    response = requests.get(s.stack.url("/metrics"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    counted: Counter = Counter()
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "faro_predictions_total" and sample.labels.get("model") == MODEL:
                counted[sample.labels["version"]] += sample.value
    with s.lock:
        expected = {version: float(rows) for version, rows in s.rows_predicted.items() if rows}
    assert dict(counted) == expected


def measure_switch(s: Slice, trigger, expected: int) -> dict[str, float]:
    """Run `trigger` (an alias move) and time how long until every web worker answers with `expected`.

    Predictions are polled from the moment of the move; once one reports `expected`, the rest of the
    alias TTL is allowed to pass (still predicting), and then 30 consecutive predictions must all
    report `expected`. Returns the timings, in seconds from just before the move.
    """
    started = time.monotonic()
    trigger()
    deadline = started + SWITCH_LIMIT_SECONDS
    while s.predict() != expected:
        assert time.monotonic() < deadline, f"no response reported v{expected} within {SWITCH_LIMIT_SECONDS} s"
    first = time.monotonic() - started
    settle_until = started + first + ALIAS_TTL_SECONDS
    while time.monotonic() < settle_until:
        s.predict()
    mark = len(logged_predictions(s))
    versions = s.predict_many(30, threads=3)
    done = time.monotonic() - started
    assert versions == [expected] * 30, f"after the settle time, responses reported {Counter(versions)}"
    served = versions_by_worker(s, mark)
    assert len(served) == 2 and all(seen == {str(expected)} for seen in served.values()), served
    assert done < SWITCH_LIMIT_SECONDS, f"all workers on v{expected} after {done:.2f} s (first at {first:.2f} s)"
    return {"first": first, "all": done}


def test_promotion_reaches_every_web_worker(slice_: Slice) -> None:
    s = slice_
    job = wait_for_job(s, create_job(s, max_depth=4)["id"])
    assert job["status"] == "succeeded", job
    new = job["model_version"]
    assert new is not None and new > 1
    s.approve(new)

    # Start from v1 everywhere: both web workers answer, and have v1 cached.
    response = s.call("PUT", f"/api/v1/models/{MODEL}/aliases/champion", json={"version": 1})
    assert response.status_code == 200, response.text
    deadline = time.monotonic() + SWITCH_LIMIT_SECONDS + ALIAS_TTL_SECONDS
    while s.predict() != 1:
        assert time.monotonic() < deadline
    mark = len(logged_predictions(s))
    assert set(s.predict_many(20)) == {1}
    served = versions_by_worker(s, mark)
    assert len(served) == 2 and all(seen == {"1"} for seen in served.values()), served

    def promote() -> None:
        response = s.call("PUT", f"/api/v1/models/{MODEL}/aliases/champion", json={"version": new})
        assert response.status_code == 200, response.text
        assert response.json()["version"] == new

    promoted = measure_switch(s, promote, new)

    def rollback() -> None:
        response = s.call("POST", f"/api/v1/models/{MODEL}/aliases/champion/rollback")
        assert response.status_code == 200, response.text
        assert response.json() == {"model": MODEL, "alias": "champion", "version": 1}

    rolled_back = measure_switch(s, rollback, 1)
    assert champion_version(s) == 1

    # A traffic policy change travels the same way: the whole default traffic to a canary, and back.
    def canary(version: int | None, percent: float) -> None:
        body = {"canary_version": version, "canary_percent": percent}
        response = s.call("PATCH", f"/api/v1/models/{MODEL}/traffic", json=body)
        assert response.status_code == 200, response.text
        assert (response.json()["canary_version"], response.json()["canary_percent"]) == (version, percent)

    canary_on = measure_switch(s, lambda: canary(new, 100.0), new)
    canary_off = measure_switch(s, lambda: canary(None, 0.0), 1)
    print(
        f"promotion: first v{new} at {promoted['first']:.3f} s, all at {promoted['all']:.3f} s; "
        f"rollback: first v1 at {rolled_back['first']:.3f} s, all at {rolled_back['all']:.3f} s; "
        f"canary on: all at {canary_on['all']:.3f} s, off: all at {canary_off['all']:.3f} s"
    )
    assert_metrics_match(s)


def test_duplicate_delivery_trains_once(slice_: Slice) -> None:
    s, stack = slice_, slice_.stack
    count_code = (
        "import json; from apps.registry.models import ModelVersion; "
        f"print({RESULT_MARK!r} + json.dumps(ModelVersion.objects.filter(registered_model__name={MODEL!r}).count()))"
    )
    before = manage_result(stack, count_code)
    received_before, _ = worker_task_lines(stack)

    job = create_job(s)
    job_id = job["id"]
    enqueued = stack.manage(
        "shell", "-c", f"from apps.registry.tasks import training_job_run; training_job_run.delay({job_id})"
    )
    assert enqueued.returncode == 0, enqueued.stdout + enqueued.stderr

    finished = wait_for_job(s, job_id)
    assert finished["status"] == "succeeded", finished

    # Both deliveries reach the worker; the second finds the job no longer queued. Wait until the worker
    # has received both and finished everything it received.
    deadline = time.monotonic() + TRAIN_TIMEOUT_SECONDS
    while True:
        received, done = worker_task_lines(stack)
        skipped = f"Training job {job_id} is not queued" in stack.log_text("worker")
        if received >= received_before + 2 and done == received and skipped:
            break
        assert time.monotonic() < deadline, (
            f"worker not idle: received {received} (before {received_before}), finished {done}, "
            f"duplicate skipped: {skipped}"
        )
        stack.assert_running()
        time.sleep(POLL_SECONDS)

    result = manage_result(
        stack,
        "import json; from apps.registry.models import ModelVersion, TrainingJob; "
        "from apps.governance.models import AuditEvent; "
        f"job = TrainingJob.objects.get(pk={job_id}); "
        "events = [e for e in AuditEvent.objects.filter(action='model_version.registered') "
        f"if e.data.get('job') == {job_id}]; "
        f"print({RESULT_MARK!r} + json.dumps({{"
        f"'versions': ModelVersion.objects.filter(registered_model__name={MODEL!r}).count(), "
        "'job_version': job.model_version.version if job.model_version else None, "
        "'registered_events': len(events), "
        "'started_events': AuditEvent.objects.filter(action='training_job.started', "
        f"object_id=str({job_id})).count()}}))",
    )
    assert result["versions"] == before + 1, result
    assert result["job_version"] == finished["model_version"], result
    assert result["registered_events"] == 1, result
    assert result["started_events"] == 1, result


def test_ready_and_worker_log(slice_: Slice) -> None:
    s, stack = slice_, slice_.stack
    response = requests.get(stack.url("/readyz"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] == "ok"
    champion = champion_version(s)
    assert body["checks"]["models"][MODEL] == f"ok (v{champion})"

    log = stack.log_text("worker")
    assert re.search(rf"Task {re.escape(TASK_NAME)}\[[0-9a-f-]+\] received", log), log[-2000:]
    assert re.search(rf"Task {re.escape(TASK_NAME)}\[[0-9a-f-]+\] succeeded", log), log[-2000:]
    assert stack.queue in log  # the worker consumed this run's own queue
