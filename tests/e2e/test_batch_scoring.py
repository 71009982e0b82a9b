"""Batch scoring through real processes: a file uploaded to gunicorn, scored by a real Celery worker, its
result downloaded; and a running job cancelled. The scores are checked against the model in this process.

Run with `pytest -m e2e tests/e2e/test_batch_scoring.py`. With DATABASE_URL and REDIS_URL set, the stack runs
on a fresh PostgreSQL database and a Redis broker; otherwise on SQLite and the filesystem broker.
"""

from __future__ import annotations

import hashlib
import io
import json
import time

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
import requests

from tests.conftest import generated_csv
from tests.e2e.conftest import POLL_SECONDS, Stack, running_stack

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT = 30
JOB_TIMEOUT_SECONDS = 180.0
CANCEL_LIMIT_SECONDS = 10.0
SLOW_ROWS = 100_000  # with explanations and chunks of 1,000 rows: tens of seconds of work, cancelled early

SETUP = """
import json
from django.core.files.uploadedfile import SimpleUploadedFile
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.governance.services import token_create
from apps.registry.services import registered_model_create, training_job_create, training_job_run
from tests.conftest import SMALL_PARAMS, generated_csv
dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
small = dataset_version_create_from_upload(
    dataset=dataset, upload=SimpleUploadedFile("loans.csv", generated_csv(), content_type="text/csv")
)
model = registered_model_create(name="loan-risk", task_type="classification")
job = training_job_create(registered_model=model, dataset_version=small, params=SMALL_PARAMS)
training_job_run(job_id=job.pk)  # here, unless the worker's delivery of the same task claimed it first
import time
from apps.registry.models import TrainingJob
deadline = time.monotonic() + 120
while TrainingJob.objects.get(pk=job.pk).status not in ("succeeded", "failed") and time.monotonic() < deadline:
    time.sleep(0.2)
assert TrainingJob.objects.get(pk=job.pk).status == "succeeded", TrainingJob.objects.get(pk=job.pk).error
big = dataset_version_create_from_upload(
    dataset=dataset,
    upload=SimpleUploadedFile("big.csv", generated_csv(rows={rows}, seed=9), content_type="text/csv"),
)
_, token = token_create(name="e2e-batch", scopes=["read", "write"])
print(json.dumps({{"token": token, "big": big.number}}))
"""

SCORES = """
import json
import pyarrow as pa, pyarrow.csv as pacsv, io
from apps.predictions.loader import model_cache
from apps.registry.models import ModelVersion
from tests.conftest import generated_csv
loaded = model_cache.load(ModelVersion.objects.select_related("registered_model", "dataset_version__dataset").get())
source = pacsv.read_csv(io.BytesIO(generated_csv({rows}))).to_pylist()
rows = [{{k: r[k] for k in ("income", "age", "city")}} for r in source]
print(json.dumps(loaded.predict(loaded.pipeline.transform_rows(rows))))
"""

AUDIT = """
import json
from apps.governance.models import AuditEvent
print(json.dumps(list(AuditEvent.objects.filter(object_type="predictions.batchscoringjob", object_id="{job}")
                     .order_by("seq").values_list("action", flat=True))))
"""


def shell(stack: Stack, code: str) -> object:
    done = stack.manage("shell", "-c", code, timeout=300)
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def batch_stack():
    with running_stack(extra_env={"FARO_BATCH_CHUNK_ROWS": "1000"}) as stack:
        stack.ids = shell(stack, SETUP.format(rows=SLOW_ROWS))  # type: ignore[attr-defined]
        yield stack


def call(stack: Stack, method: str, path: str, **kwargs) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.ids['token']}"}  # type: ignore[attr-defined]
    return requests.request(method, stack.url(path), headers=headers, timeout=HTTP_TIMEOUT, **kwargs)


def wait_for(stack: Stack, job: int, what: str, ok, timeout: float = JOB_TIMEOUT_SECONDS) -> dict:
    deadline = time.monotonic() + timeout
    current: dict = {}
    while time.monotonic() < deadline:
        stack.assert_running()
        current = call(stack, "GET", f"/api/v1/batch-jobs/{job}").json()
        if ok(current):
            return current
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"batch job {job}: {what} not reached within {timeout:.0f} s; last {current}\n{stack.tails()}")


def batch_rows_scored(stack) -> float:
    """faro_batch_rows_scored_total of loan-risk v1 at the web's /metrics: counted in the Celery worker."""
    text = requests.get(stack.url("/metrics"), timeout=30).text
    for line in text.splitlines():
        if line.startswith('faro_batch_rows_scored_total{model="loan-risk",version="1"} '):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_uploaded_file_is_scored_by_the_worker_and_downloaded(batch_stack):
    stack = batch_stack
    content = generated_csv(rows=500, seed=7)
    counted_before = batch_rows_scored(stack)
    created = call(
        stack,
        "POST",
        "/api/v1/batch-jobs",
        data={"model": "loan-risk", "version": "1", "output_format": "parquet"},
        files={"file": ("rows.csv", content, "text/csv")},
    )
    assert created.status_code == 202, created.text
    job = created.json()["id"]
    assert created.headers["Location"] == f"/api/v1/batch-jobs/{job}"
    done = wait_for(stack, job, "the end", lambda state: state["status"] in ("succeeded", "failed", "cancelled"))
    assert (done["status"], done["error"], done["rows_total"], done["rows_done"], done["problem_count"]) == (
        "succeeded",
        "",
        500,
        500,
        0,
    )
    assert (done["attempts"], done["progress"]) == (1, 1.0)
    assert batch_rows_scored(stack) == counted_before + 500  # the worker's count reaches the web's /metrics

    download = call(stack, "GET", done["download_url"])
    assert download.status_code == 200, download.text
    assert download.headers["Content-Disposition"] == f'attachment; filename="loan-risk-v1-batch-{job}.parquet"'
    assert hashlib.sha256(download.content).hexdigest() == download.headers["X-Content-SHA256"] == done["output_sha256"]
    table = pq.read_table(pa.BufferReader(download.content))
    source = pacsv.read_csv(io.BytesIO(content))
    assert table.column("customer_id").to_pylist() == source.column("customer_id").to_pylist()
    want = shell(stack, SCORES.format(rows=500))
    got = [
        {"label": row["label"], "probabilities": {"no": row["probability_no"], "yes": row["probability_yes"]}}
        for row in table.to_pylist()
    ]
    assert got == want
    assert shell(stack, AUDIT.format(job=job)) == [
        "batch_job.created",
        "batch_job.started",
        "batch_job.succeeded",
        "batch_job.downloaded",
    ]


def test_a_running_job_is_cancelled_within_seconds(batch_stack):
    stack = batch_stack
    created = call(
        stack,
        "POST",
        "/api/v1/batch-jobs",
        json={
            "model": "loan-risk",
            "version": 1,
            "dataset": "loans",
            "dataset_version": stack.ids["big"],
            "explain": True,
        },  # type: ignore[attr-defined]
    )
    assert created.status_code == 202, created.text
    job = created.json()["id"]
    wait_for(stack, job, "scoring under way", lambda state: state["status"] == "running" and state["rows_done"] > 0)
    asked = time.monotonic()
    cancelled = call(stack, "POST", f"/api/v1/batch-jobs/{job}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["cancel_requested_at"] is not None
    done = wait_for(stack, job, "cancelled", lambda state: state["status"] != "running", timeout=60)
    assert time.monotonic() - asked < CANCEL_LIMIT_SECONDS
    assert (done["status"], done["error"], done["download_url"], done["output_sha256"]) == (
        "cancelled",
        "Cancelled.",
        None,
        "",
    )
    assert done["rows_done"] < SLOW_ROWS
    assert call(stack, "GET", f"/api/v1/batch-jobs/{job}/download").status_code == 409
    assert shell(stack, AUDIT.format(job=job)) == [
        "batch_job.created",
        "batch_job.started",
        "batch_job.cancel_requested",
        "batch_job.cancelled",
    ]
    outputs = stack.tmp_dir / "artefacts" / "batch-outputs"
    assert sorted(path.suffix for path in outputs.iterdir()) == [".parquet"]  # the first test's; no partial file
