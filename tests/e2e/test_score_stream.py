"""`manage.py score_stream` as real processes: one consumer is killed with SIGKILL in the middle of the
stream, a second one claims what it left pending and finishes the rest, then stops on SIGTERM with exit 0.
Nothing is lost, nothing is logged twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import orjson
import pytest
import redis

from tests.e2e.conftest import PYTHON, ROOT, Stack, _spawn, _stop, running_stack

pytestmark = pytest.mark.e2e

REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
MESSAGES = 200
CLAIM_IDLE_MS = 1000

SETUP = """
import json
from django.core.files.uploadedfile import SimpleUploadedFile
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.registry.services import registered_model_create
from tests.conftest import generated_csv, release, train_version
dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
data = dataset_version_create_from_upload(
    dataset=dataset, upload=SimpleUploadedFile("loans.csv", generated_csv(), content_type="text/csv")
)
model = registered_model_create(name="loan-risk", task_type="classification", favourable_label="yes")
print(json.dumps({"version": release(train_version(model, data)).version}))
"""

LOG = """
import json
from django.db.models import Count
from apps.predictions.models import PredictionRecord
per_request = PredictionRecord.objects.values("request_id").annotate(n=Count("pk"))
print(json.dumps({
    "rows": PredictionRecord.objects.count(),
    "requests": sorted(str(item["request_id"]) for item in per_request),
    "most_rows_per_request": max((item["n"] for item in per_request), default=0),
    "channels": sorted(set(PredictionRecord.objects.values_list("channel", flat=True))),
}))
"""


def shell(stack: Stack, code: str, **env: str) -> dict:
    done = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env={**stack.env, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def stream_stack():
    # Training runs inside the setup shell (eager), so the stack's worker has nothing to do.
    with running_stack(web=False) as stack:
        assert shell(stack, SETUP, FARO_TASKS_EAGER="true") == {"version": 1}
        yield stack


@pytest.fixture
def streams():
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"faro-e2e:{uuid.uuid4().hex[:16]}"
    names = {"input": f"{prefix}:requests", "output": f"{prefix}:results"}
    yield client, names
    client.delete(*names.values())
    client.close()


def consumer(stack: Stack, names: dict[str, str], name: str):
    log = stack.tmp_dir / "log" / f"consumer-{name}.log"
    stack.logs[f"consumer-{name}"] = log
    return _spawn(
        [
            PYTHON,
            "manage.py",
            "score_stream",
            f"--input-stream={names['input']}",
            f"--output-stream={names['output']}",
            "--group=e2e",
            f"--consumer={name}",
            f"--redis-url={REDIS_URL}",
            "--batch-size=5",
            "--block-ms=100",
            f"--claim-idle-ms={CLAIM_IDLE_MS}",
        ],
        stack.env,
        log,
    )


def wait_until(stack: Stack, what: str, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} not reached within {timeout:.0f} s.\n{stack.tails()}")


def answered(client, names) -> list[dict[str, str]]:
    return [
        {key.decode(): value.decode() for key, value in fields.items()}
        for _id, fields in client.xrange(names["output"])
    ]


def test_a_consumer_killed_mid_stream_loses_nothing_and_nothing_is_logged_twice(stream_stack, streams):
    stack, (client, names) = stream_stack, streams
    request_ids = [str(uuid.uuid4()) for _ in range(MESSAGES)]
    for index, request_id in enumerate(request_ids):
        row = {"income": 1000.0 + 20 * index, "age": 20 + index % 50, "city": ["north", "south", "east"][index % 3]}
        client.xadd(names["input"], {"request_id": request_id, "model": "loan-risk", "inputs": orjson.dumps(row)})

    first = consumer(stack, names, "a")
    try:
        wait_until(stack, "the first results", lambda: client.xlen(names["output"]) >= 20)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        _stop(first)
    left_pending = client.xpending(names["input"], "e2e")["pending"]
    [group] = client.xinfo_groups(names["input"])
    acknowledged_by_first = group["entries-read"] - left_pending
    assert 0 < acknowledged_by_first < MESSAGES, "the kill did not land in the middle of the stream"

    second = consumer(stack, names, "b")
    try:
        wait_until(
            stack,
            "every request answered",
            lambda: {r["request_id"] for r in answered(client, names)} >= set(request_ids),
        )
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=20) == 0, stack.tails()
    finally:
        _stop(second)

    summary = stack.log_text("consumer-b").strip().splitlines()[-1]
    assert summary == (
        f"Answered {MESSAGES - acknowledged_by_first} message(s): {MESSAGES - acknowledged_by_first} ok, 0 error(s); "
        f"{left_pending} claimed from other consumers, 0 transient failure(s)."
    )
    assert client.xpending(names["input"], "e2e")["pending"] == 0
    results = answered(client, names)
    assert {r["status"] for r in results} == {"ok"}
    # At least once: a request the first consumer logged but did not acknowledge is answered again, the same.
    by_request: dict[str, set[str]] = {}
    for result in results:
        by_request.setdefault(result["request_id"], set()).add(result["outputs"])
    assert sorted(by_request) == sorted(request_ids)
    assert {len(outputs) for outputs in by_request.values()} == {1}
    log = shell(stack, LOG)
    assert log == {
        "rows": MESSAGES,
        "requests": sorted(request_ids),
        "most_rows_per_request": 1,
        "channels": ["stream"],
    }
