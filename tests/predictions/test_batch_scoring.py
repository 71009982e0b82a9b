"""Batch scoring jobs: the scores are /predict's bit for bit, in Parquet and CSV, with explanations; uploads;
rows that cannot be scored; cancel, reap, duplicate delivery; refusals naming the field; permissions; the
download; the pages and the console."""

from __future__ import annotations

import io
import math
import threading
import time
from datetime import timedelta

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from apps.core.artefacts import artefact_path
from apps.core.errors import InvalidInput
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.features.services import feature_set_create
from apps.features.transforms import CATEGORICAL, NUMERIC, Feature, FeaturePipeline
from apps.governance.models import AuditEvent
from apps.predictions import batch, batch_services
from apps.predictions.loader import model_cache
from apps.predictions.models import BatchScoringJob
from apps.registry.services import (
    model_version_reject,
    registered_model_create,
    training_job_create,
    training_job_run,
)
from tests.conftest import SMALL_PARAMS, generated_csv, train_version

pytestmark = pytest.mark.django_db

HEADER = ["customer_id", "label", "probability_no", "probability_yes"]
REASON_COLUMNS = [f"reason_{rank}{suffix}" for rank in range(1, 6) for suffix in ("", "_feature", "_contribution")]


# -- helpers ----------------------------------------------------------------------------------------------


def run_job(capture, **kwargs) -> BatchScoringJob:
    """Create a job through the service and let its on-commit task run (eagerly, as a worker would)."""
    with capture(execute=True):
        job = batch_services.batch_job_create(**kwargs)
    job.refresh_from_db()
    return job


def output_table(job: BatchScoringJob) -> pa.Table:
    path = artefact_path(job.output_path)
    if job.output_format == "parquet":
        return pq.read_table(path)
    return pacsv.read_csv(path)


def generated_rows(rows: int = 300) -> list[dict]:
    return pacsv.read_csv(io.BytesIO(generated_csv(rows))).to_pylist()


def expected(loaded, rows: list[dict]) -> list[dict]:
    """What LoadedModel gives for `rows`, as /predict answers: label and probabilities per row."""
    inputs = [{item["name"]: row.get(item["name"]) for item in loaded.pipeline.signature()} for row in rows]
    return loaded.predict(loaded.pipeline.transform_rows(inputs))


def as_outputs(rows: list[dict], labels: list[str]) -> list[dict | None]:
    """The output rows of a batch result in /predict's shape; None for a row that was not scored."""
    shaped = []
    for row in rows:
        if row["label"] is None:
            assert all(row[f"probability_{label}"] is None for label in labels)
            shaped.append(None)
        else:
            shaped.append(
                {"label": row["label"], "probabilities": {label: row[f"probability_{label}"] for label in labels}}
            )
    return shaped


def audit_actions(job: BatchScoringJob) -> list[str]:
    return list(
        AuditEvent.objects.filter(object_type="predictions.batchscoringjob", object_id=str(job.pk))
        .order_by("seq")
        .values_list("action", flat=True)
    )


def upload(name: str, content: bytes, content_type: str = "text/csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.fixture
def staff_admin(db):
    return get_user_model().objects.create_superuser("console", password="pw")


# -- the scores -------------------------------------------------------------------------------------------


def test_scores_are_predicts_bit_for_bit_in_parquet(
    champion, dataset_version, settings, api, tokens, django_capture_on_commit_callbacks
):
    settings.FARO_BATCH_CHUNK_ROWS = 64  # several chunks, the last one short
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, dataset_version=dataset_version)
    assert (job.status, job.error, job.progress) == ("succeeded", "", 1.0)
    assert (job.rows_total, job.rows_done, job.problem_count, job.problems, job.attempts) == (300, 300, 0, [], 1)
    table = output_table(job)
    assert table.column_names == HEADER
    assert table.schema.field("probability_yes").type == pa.float64()
    rows = generated_rows()
    want = expected(model_cache.load(champion), rows)
    got = table.to_pylist()
    assert [row["customer_id"] for row in got] == [row["customer_id"] for row in rows]
    assert as_outputs(got, ["no", "yes"]) == want
    # and the very answer of /predict for the same 300 rows
    inputs = [{key: value for key, value in row.items() if key != "repaid"} for row in rows]
    answer = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": inputs})
    assert answer.status_code == 200, answer.content
    assert as_outputs(got, ["no", "yes"]) == answer.json()["outputs"]
    assert audit_actions(job) == ["batch_job.created", "batch_job.started", "batch_job.succeeded"]
    succeeded = AuditEvent.objects.get(action="batch_job.succeeded")
    assert succeeded.data == {
        "rows": 300,
        "scored": 300,
        "problem_count": 0,
        "output_sha256": job.output_sha256,
        "output_format": "parquet",
    }
    assert job.output_path == f"batch-outputs/{job.output_sha256}.parquet"


def test_csv_results_carry_the_same_scores_under_a_header(
    champion, dataset_version, django_capture_on_commit_callbacks
):
    job = run_job(
        django_capture_on_commit_callbacks, model_version=champion, dataset_version=dataset_version, output_format="csv"
    )
    assert job.status == "succeeded"
    text = artefact_path(job.output_path).read_text()
    assert text.splitlines()[0] == '"customer_id","label","probability_no","probability_yes"'
    assert len(text.splitlines()) == 301
    got = output_table(job).to_pylist()
    assert as_outputs(got, ["no", "yes"]) == expected(model_cache.load(champion), generated_rows())


def test_explanations_are_those_of_predict_for_the_same_rows(
    champion, dataset_version, django_capture_on_commit_callbacks
):
    job = run_job(
        django_capture_on_commit_callbacks, model_version=champion, dataset_version=dataset_version, explain=True
    )
    assert job.status == "succeeded"
    table = output_table(job)
    assert table.column_names == [*HEADER, "baseline", *REASON_COLUMNS]
    loaded = model_cache.load(champion)
    rows = [{name: row[name] for name in ("income", "age", "city")} for row in generated_rows()]
    matrix = loaded.pipeline.transform_rows(rows)
    explanations = loaded.explain(matrix, loaded.predict(matrix), rows)
    for got, want in zip(table.to_pylist(), explanations, strict=True):
        assert got["baseline"] == want["baseline"]
        reasons = [
            {
                "sentence": got[f"reason_{rank}"],
                "feature": got[f"reason_{rank}_feature"],
                "contribution": got[f"reason_{rank}_contribution"],
            }
            for rank in range(1, 6)
        ]
        listed = [{key: reason[key] for key in ("sentence", "feature", "contribution")} for reason in want["reasons"]]
        assert reasons == listed + [{"sentence": None, "feature": None, "contribution": None}] * (5 - len(listed))


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_multiclass_and_regression_scores_are_predicts(db, csv_upload, task, django_capture_on_commit_callbacks):
    target = "city" if task == "multiclass" else "income"
    dataset = dataset_create(name=f"loans-{task}", target_column=target, subject_key_column="customer_id")
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    model = registered_model_create(
        name=f"loan-{task}", task_type="classification" if task == "multiclass" else "regression"
    )
    trained = train_version(model, version)
    job = run_job(django_capture_on_commit_callbacks, model_version=trained, dataset_version=version)
    assert job.status == "succeeded", job.error
    loaded = model_cache.load(trained)
    table = output_table(job)
    want = expected(loaded, generated_rows())
    if task == "multiclass":
        assert table.column_names == [
            "customer_id",
            "label",
            "probability_east",
            "probability_north",
            "probability_south",
        ]
        assert as_outputs(table.to_pylist(), ["east", "north", "south"]) == want
    else:
        assert table.column_names == ["customer_id", "value"]
        assert [{"value": value} for value in table.column("value").to_pylist()] == want


def test_a_feature_set_model_scores_through_the_table_path_like_predict(
    champion, dataset, dataset_version, registered_model, django_capture_on_commit_callbacks
):
    feature_set = feature_set_create(
        name="loan-features",
        dataset=dataset,
        definition=[
            {"name": "income", "transform": "standardise", "source": "income"},
            {"name": "age_band", "transform": "bucketise", "source": "age", "params": {"edges": [30, 50]}},
            {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 2}},
            {"name": "per_year", "transform": "ratio", "sources": ["income", "age"]},
        ],
    )
    job = training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params=SMALL_PARAMS,
        feature_set_version=feature_set.versions.get(),
    )
    version = training_job_run(job_id=job.pk)
    content = b"customer_id,income,age,city\nA1,5200.5,41,north\nA2,1800,0,west\nA3,,25,\n"
    scored = run_job(django_capture_on_commit_callbacks, model_version=version, upload=upload("rows.csv", content))
    assert (scored.status, scored.problem_count) == ("succeeded", 0)
    loaded = model_cache.load(version)
    rows = [
        {"income": 5200.5, "age": 41, "city": "north"},
        {"income": 1800.0, "age": 0, "city": "west"},  # an unseen city: one_hot's "other"; a zero ratio: missing
        {"income": None, "age": 25, "city": None},
    ]
    got = output_table(scored).to_pylist()
    assert [row["customer_id"] for row in got] == ["A1", "A2", "A3"]
    assert as_outputs(got, ["no", "yes"]) == loaded.predict(loaded.pipeline.transform_rows(rows))


# -- uploads and rows that cannot be scored -----------------------------------------------------------------


def test_an_upload_without_the_subject_key_is_numbered_and_unreadable_rows_are_problems(
    champion, django_capture_on_commit_callbacks
):
    content = b"income,age,city\n5200.5,41,north\nabc,30,south\n1000,inf,east\n,50,east\n2500,33,west\n"
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, upload=upload("rows.csv", content))
    assert (job.status, job.rows_total, job.rows_done, job.problem_count) == ("succeeded", 5, 5, 2)
    assert job.problems == [
        {"row": 1, "column": "income", "message": "must be a finite number, not 'abc'"},
        {"row": 2, "column": "age", "message": "must be a finite number, not inf"},
    ]
    assert job.input_name == "rows.csv"
    assert not artefact_path(job.input_path).exists()  # the upload is not kept once the job has ended
    got = output_table(job).to_pylist()
    assert [row["row"] for row in got] == [0, 1, 2, 3, 4]
    loaded = model_cache.load(champion)
    want = expected(
        loaded,
        [
            {"income": 5200.5, "age": 41, "city": "north"},
            {"income": None, "age": 50, "city": "east"},  # missing is missing, as in a training table
            {"income": 2500.0, "age": 33, "city": "west"},  # a city the model never saw: missing
        ],
    )
    assert as_outputs(got, ["no", "yes"]) == [want[0], None, None, want[1], want[2]]


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_parquet_and_json_lines_uploads_score_like_the_dataset(champion, kind, django_capture_on_commit_callbacks):
    rows = generated_rows(40)
    if kind == "parquet":
        content = parquet_bytes(pa.Table.from_pylist(rows))
    else:
        content = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, upload=upload(f"rows.{kind}", content))
    assert (job.status, job.rows_done, job.problem_count) == ("succeeded", 40, 0)
    got = output_table(job).to_pylist()
    assert [row["customer_id"] for row in got] == [row["customer_id"] for row in rows]
    assert as_outputs(got, ["no", "yes"]) == expected(model_cache.load(champion), rows)


def test_a_file_the_reader_refuses_fails_the_job_with_its_rows(champion, django_capture_on_commit_callbacks):
    content = b"customer_id,income,age,city\nC1,5200.5,41,north\nC2,100,30\n"
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, upload=upload("rows.csv", content))
    assert (job.status, job.output_path, job.rows_done) == ("failed", "", 0)
    assert job.error.startswith("The CSV could not be parsed")
    assert job.problems == [{"row": 3, "column": None, "message": "has 3 fields; the header has 4"}]
    assert audit_actions(job) == ["batch_job.created", "batch_job.started", "batch_job.failed"]
    assert not artefact_path(job.input_path).exists()


# -- the pure core ----------------------------------------------------------------------------------------


def test_rounding_is_pythons_round_on_every_kind_of_value():
    rng = np.random.default_rng(3)
    halves = (np.arange(0, 200_001) + 0.5) / 1e6
    values = np.concatenate(
        [
            rng.random(100_000),
            rng.random(100_000).astype(np.float32).astype(np.float64),
            halves,
            np.nextafter(halves, 0.0),
            np.nextafter(halves, 1.0),
            [0.0, 1.0, 5e-324, 1e-300, 0.0000005, 0.4999995, 0.9999995, 1 - 2**-53],
        ]
    )
    rounded = batch.round_half_even_6(values)
    assert rounded.tolist() == [round(float(value), 6) for value in values]


def test_the_automatic_pipelines_arrow_matrix_is_the_list_paths_bit_for_bit():
    pipeline = FeaturePipeline(
        [
            Feature(name="income", kind=NUMERIC, minimum=0.0, maximum=1e6, nullable=True),
            Feature(name="age", kind=NUMERIC, minimum=18, maximum=90, integer=True),
            Feature(name="big", kind=NUMERIC, minimum=0, maximum=2**62, integer=True),
            Feature(name="flag", kind=NUMERIC, minimum=0, maximum=1, integer=True),
            Feature(name="city", kind=CATEGORICAL, vocabulary=("east", "north", "south"), nullable=True),
        ]
    )
    rng = np.random.default_rng(11)
    n = 5000
    rows = [
        {
            "income": None if rng.random() < 0.1 else float(rng.normal(5000, 3000)),
            "age": int(rng.integers(18, 90)),
            "big": int(rng.integers(2**53, 2**62)),
            "flag": bool(rng.random() < 0.5),
            "city": [None, "east", "north", "south", "west"][int(rng.integers(0, 5))],
        }
        for _ in range(n)
    ]
    want = pipeline.transform_rows(rows)
    table = pa.Table.from_pylist(rows)
    assert (
        batch.auto_matrix(pipeline, {name: table.column(name) for name in pipeline.names}, n).tobytes()
        == want.tobytes()
    )
    encoded = table.set_column(4, "city", table.column("city").dictionary_encode())
    columns = {name: encoded.column(name) for name in pipeline.names}
    assert batch.auto_matrix(pipeline, columns, n).tobytes() == want.tobytes()


def test_the_core_stops_when_told_and_refuses_an_input_without_the_models_columns(champion, tmp_path):
    loaded = model_cache.load(champion)
    source = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(generated_rows(300)), source)
    seen = []

    def on_chunk(rows_done: int) -> bool:
        seen.append(rows_done)
        return rows_done < 200

    with pytest.raises(batch.BatchStopped):
        batch.score_file(
            loaded, source, tmp_path / "out.parquet", output_format="parquet", chunk_rows=100, on_chunk=on_chunk
        )
    assert seen == [100, 200]
    pq.write_table(pa.table({"income": [1.0], "city": ["north"], "when": pa.array([1], pa.timestamp("s"))}), source)
    with pytest.raises(batch.BatchInputError) as refused:
        batch.score_file(loaded, source, tmp_path / "out.parquet", output_format="csv")
    assert refused.value.message == "The input lacks 1 of the model's inputs: age."
    assert refused.value.problems == [{"row": None, "column": "age", "message": "is missing; the model reads it"}]


# -- cancel, reap, duplicates -----------------------------------------------------------------------------


def test_a_queued_job_is_cancelled_at_once_and_an_ended_one_cannot_be(
    champion, dataset_version, api, tokens, django_capture_on_commit_callbacks
):
    job = batch_services.batch_job_create(
        model_version=champion, upload=upload("rows.csv", generated_csv(20)), actor=None
    )  # its task is never delivered: on-commit callbacks are not run here
    assert artefact_path(job.input_path).exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call("post", f"/api/v1/batch-jobs/{job.pk}/cancel", tokens["write"])
    assert response.status_code == 202, response.content
    assert (response.json()["status"], response.json()["error"]) == ("cancelled", "Cancelled.")
    assert not artefact_path(job.input_path).exists()
    assert batch_services.batch_job_run(job_id=job.pk) is None  # a late delivery does nothing
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("cancelled", 0)
    assert audit_actions(job) == ["batch_job.created", "batch_job.cancelled"]
    again = api.call("post", f"/api/v1/batch-jobs/{job.pk}/cancel", tokens["write"])
    assert (again.status_code, again.json()) == (
        409,
        {"message": f"Batch scoring job {job.pk} has already ended (cancelled).", "extra": {}},
    )


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_after_its_chunk(champion, dataset, settings):
    settings.FARO_JOB_LEASE_SECONDS = 0.4  # the lease (and so a cancel) is checked every 0.1 s
    settings.FARO_BATCH_CHUNK_ROWS = 1000
    big = dataset_version_create_from_upload(
        dataset=dataset, upload=upload("big.csv", generated_csv(rows=60_000, seed=5))
    )
    job = BatchScoringJob.objects.create(
        registered_model=champion.registered_model, model_version=champion, dataset_version=big, explain=True
    )  # queued as the service would, without a task: this test plays the worker on a thread

    def worker() -> None:
        try:
            batch_services.batch_job_run(job_id=job.pk)
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    deadline = time.monotonic() + 60
    while BatchScoringJob.objects.get(pk=job.pk).status == "queued" and time.monotonic() < deadline:
        time.sleep(0.01)
    asked = time.monotonic()
    batch_services.batch_job_cancel(job=job)
    thread.join(timeout=60)
    stopped = time.monotonic() - asked
    job.refresh_from_db()
    assert (job.status, job.error, job.output_path) == ("cancelled", "Cancelled.", "")
    assert job.rows_done < 60_000
    assert stopped < 5
    assert audit_actions(job) == ["batch_job.started", "batch_job.cancel_requested", "batch_job.cancelled"]
    assert list(artefact_path("batch-outputs").iterdir()) == []  # the partial output is gone


def test_a_job_whose_worker_died_is_requeued_then_runs_once(
    champion, dataset_version, settings, django_capture_on_commit_callbacks
):
    from apps.core.jobs import job_claim

    job = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    lease = job_claim(BatchScoringJob, job.pk)  # a worker claimed it, then died
    assert lease.attempt == 1
    later = timezone.now() + timedelta(seconds=settings.FARO_JOB_LEASE_SECONDS + 1)
    with django_capture_on_commit_callbacks(execute=True):
        assert batch_services.batch_jobs_reap(now=later) == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.attempts, job.error, job.rows_done) == ("succeeded", 2, "", 300)
    assert audit_actions(job) == [
        "batch_job.created",
        "batch_job.requeued",
        "batch_job.started",
        "batch_job.succeeded",
    ]
    assert batch_services.batch_job_run(job_id=job.pk) is None  # a duplicate delivery does nothing
    assert audit_actions(job).count("batch_job.started") == 1
    assert batch_services.batch_jobs_reap(now=later) == []


def test_the_reaper_fails_a_job_after_its_last_attempt(champion, settings):
    from apps.core.jobs import job_claim

    settings.FARO_JOB_MAX_ATTEMPTS = 1
    job = batch_services.batch_job_create(model_version=champion, upload=upload("rows.csv", generated_csv(20)))
    job_claim(BatchScoringJob, job.pk)
    later = timezone.now() + timedelta(seconds=settings.FARO_JOB_LEASE_SECONDS + 1)
    assert batch_services.batch_jobs_reap(now=later) == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.error) == (
        "failed",
        "The worker stopped during each of 1 attempts (its lease lapsed); the job was not retried.",
    )
    assert audit_actions(job)[-1] == "batch_job.failed"


# -- the API: create, refusals, permissions, download -----------------------------------------------------


def test_the_api_queues_a_dataset_job_and_downloads_its_result(
    champion, dataset_version, api, tokens, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call(
            "post",
            "/api/v1/batch-jobs",
            tokens["write"],
            {"model": "loan-risk", "dataset": "loans", "output_format": "csv"},
        )
    assert response.status_code == 202, response.content
    body = response.json()
    job = BatchScoringJob.objects.get()
    assert response["Location"] == f"/api/v1/batch-jobs/{job.pk}"
    assert (body["model"], body["version"], body["dataset"], body["dataset_version"]) == ("loan-risk", 1, "loans", 1)
    assert (body["status"], body["output_format"], body["explain"]) == ("queued", "csv", False)
    detail = api.call("get", f"/api/v1/batch-jobs/{job.pk}", tokens["read"]).json()
    assert (detail["status"], detail["rows_total"], detail["rows_done"], detail["progress"]) == (
        "succeeded",
        300,
        300,
        1.0,
    )
    assert detail["download_url"] == f"/api/v1/batch-jobs/{job.pk}/download"
    assert detail["output_sha256"] == job.output_sha256
    listing = api.call("get", "/api/v1/batch-jobs", tokens["read"]).json()
    assert [item["id"] for item in listing] == [job.pk]

    download = api.call("get", f"/api/v1/batch-jobs/{job.pk}/download", tokens["read"], HTTP_ACCEPT="text/csv")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    assert download["Content-Disposition"] == f'attachment; filename="loan-risk-v1-batch-{job.pk}.csv"'
    assert download["X-Content-SHA256"] == job.output_sha256
    assert b"".join(download.streaming_content) == artefact_path(job.output_path).read_bytes()
    event = AuditEvent.objects.filter(action="batch_job.downloaded").get()
    assert (event.object_id, event.actor, event.data) == (
        str(job.pk),
        f"token:{event.actor.split(':')[1]}",
        {"output_sha256": job.output_sha256, "output_format": "csv"},
    )


def test_the_api_scores_an_uploaded_file_with_a_named_version_and_explanations(
    champion, api, tokens, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/batch-jobs",
            {"model": "loan-risk", "version": "1", "explain": "true", "file": upload("rows.csv", generated_csv(25))},
            HTTP_AUTHORIZATION=f"Bearer {tokens['write']}",
        )
    assert response.status_code == 202, response.content
    assert (response.json()["input_name"], response.json()["explain"], response.json()["dataset"]) == (
        "rows.csv",
        True,
        None,
    )
    job = BatchScoringJob.objects.get()
    assert (job.status, job.rows_done) == ("succeeded", 25)
    assert output_table(job).column_names == [*HEADER, "baseline", *REASON_COLUMNS]
    created = AuditEvent.objects.get(action="batch_job.created")
    assert created.data["input_sha256"] == __import__("hashlib").sha256(generated_csv(25)).hexdigest()
    assert (created.data["input_bytes"], created.data["version"]) == (len(generated_csv(25)), 1)


def _refused(api, token, body=None, *, multipart=None) -> dict:
    before = (BatchScoringJob.objects.count(), AuditEvent.objects.count())
    if multipart is not None:
        response = api.post("/api/v1/batch-jobs", multipart, HTTP_AUTHORIZATION=f"Bearer {token}")
    else:
        response = api.call("post", "/api/v1/batch-jobs", token, body)
    assert response.status_code == 400, response.content
    assert (BatchScoringJob.objects.count(), AuditEvent.objects.count()) == before
    return response.json()


def test_bad_requests_are_refused_naming_the_field(champion, dataset_version, api, tokens, csv_upload):
    token = tokens["write"]
    assert _refused(api, token, {"model": "nope", "dataset": "loans"}) == {
        "message": "The batch job is not valid: model: No registered model named 'nope'.",
        "extra": {"fields": {"model": ["No registered model named 'nope'."]}},
    }
    assert _refused(api, token, {"model": "loan-risk", "version": 9, "dataset": "loans"})["extra"] == {
        "fields": {"version": ["loan-risk has no version 9."]}
    }
    assert _refused(api, token, {"model": "loan-risk", "alias": "challenger", "dataset": "loans"})["extra"] == {
        "fields": {"alias": ["loan-risk has no version with the alias 'challenger'."]}
    }
    assert _refused(api, token, {"model": "loan-risk", "version": 1, "alias": "champion", "dataset": "loans"})[
        "extra"
    ] == {"fields": {"alias": ["Give a version or an alias, not both."]}}
    assert _refused(api, token, {"model": "loan-risk"}) == {
        "message": "The batch job is not valid: dataset: "
        "Give a dataset (and optionally its version) or a file to score.",
        "extra": {
            "fields": {
                "dataset": ["Give a dataset (and optionally its version) or a file to score."],
                "file": ["Give a file or a dataset to score."],
            }
        },
    }
    assert _refused(api, token, {"model": "loan-risk", "dataset": "loans", "dataset_version": 7})["extra"] == {
        "fields": {"dataset_version": ["Dataset 'loans' has no version 7."]}
    }
    assert _refused(api, token, {"model": "loan-risk", "dataset": "nope"})["extra"] == {
        "fields": {"dataset": ["No dataset named 'nope'."]}
    }
    assert _refused(api, token, {"model": "loan-risk", "dataset": "loans", "output_format": "xlsx"}) == {
        "message": "Invalid input.",
        "extra": {"fields": {"output_format": ['"xlsx" is not a valid choice.']}},
    }
    assert _refused(api, token, {"model": "loan-risk", "dataset": "loans", "explain": "maybe"})["extra"] == {
        "fields": {"explain": ["Must be a valid boolean."]}
    }
    assert _refused(api, token, {"model": "loan-risk", "dataset": "loans", "colour": "red"}) == {
        "message": "Unknown field(s): colour.",
        "extra": {"fields": {"colour": ["Unknown field."]}},
    }
    assert _refused(api, token, ["loan-risk"])["extra"] == {"fields": {"body": ["Expected an object."]}}
    malformed = api.call("post", "/api/v1/batch-jobs", token, raw=b'{"model": ')
    assert malformed.status_code == 400 and malformed.json()["message"].startswith("Malformed JSON")
    assert _refused(api, token, {"model": "loan-risk", "dataset": "loans", "file": "rows.csv"})["extra"] == {
        "fields": {"file": ["Expected a file upload."]}
    }
    both = {"model": "loan-risk", "dataset": "loans", "file": upload("rows.csv", generated_csv(5))}
    assert _refused(api, token, multipart=both)["extra"] == {
        "fields": {"file": ["Give a file or a dataset, not both."]}
    }
    named = {"model": "loan-risk", "file": upload("rows.xlsx", generated_csv(5))}
    assert _refused(api, token, multipart=named)["extra"] == {
        "fields": {"file": ["Cannot tell the format of 'rows.xlsx': name it .csv, .parquet or .jsonl, or declare it."]}
    }
    lacking = {"model": "loan-risk", "file": upload("rows.csv", b"customer_id,income,city\nC1,1000,north\n")}
    assert _refused(api, token, multipart=lacking)["extra"] == {"fields": {"file": ["Lacks the model's inputs: age."]}}
    typed = {
        "model": "loan-risk",
        "file": upload(
            "rows.parquet",
            parquet_bytes(pa.table({"income": [1.0], "age": [pa.scalar(1, pa.date32())], "city": ["x"]})),
        ),
    }
    assert _refused(api, token, multipart=typed)["extra"] == {
        "fields": {"file": ["age: holds datetime values; the model reads a number"]}
    }
    assert list(artefact_path("batch-inputs").iterdir()) == []  # no refused upload is kept


def test_a_dataset_without_the_models_inputs_and_a_rejected_version_are_refused(
    champion, registered_model, dataset_version, api, tokens, csv_upload
):
    other = dataset_create(name="other", target_column="repaid")
    dataset_version_create_from_upload(
        dataset=other, upload=csv_upload(b"customer_id,income,city,repaid\nC1,100,north,yes\nC2,200,south,no\n")
    )
    assert _refused(api, tokens["write"], {"model": "loan-risk", "dataset": "other"})["extra"] == {
        "fields": {"dataset_version": ["other v1: age: is missing; the model reads it"]}
    }
    second = train_version(registered_model, dataset_version)
    checker = get_user_model().objects.create_user("checker", is_staff=True)
    model_version_reject(version=second, actor=checker, note="Not this one.")
    assert _refused(api, tokens["write"], {"model": "loan-risk", "version": 2, "dataset": "loans"})["extra"] == {
        "fields": {"version": ["loan-risk v2 was rejected; a rejected version is not scored."]}
    }
    with pytest.raises(InvalidInput):
        batch_services.batch_job_create(model_version=second, dataset_version=dataset_version)


def test_scopes_and_sessions(champion, dataset_version, api, tokens, users, client, django_capture_on_commit_callbacks):
    job = run_job(django_capture_on_commit_callbacks, model_version=champion, dataset_version=dataset_version)
    paths = [
        ("get", "/api/v1/batch-jobs"),
        ("get", f"/api/v1/batch-jobs/{job.pk}"),
        ("get", f"/api/v1/batch-jobs/{job.pk}/download"),
        ("post", "/api/v1/batch-jobs"),
        ("post", f"/api/v1/batch-jobs/{job.pk}/cancel"),
    ]
    body = {"model": "loan-risk", "dataset": "loans"}
    before = (BatchScoringJob.objects.count(), AuditEvent.objects.count())
    for method, path in paths:
        anonymous = api.call(method, path, None, body if method == "post" else None)
        assert anonymous.status_code == 401, path
        assert anonymous.json() == {"message": "Authentication credentials were not provided.", "extra": {}}
        assert api.call(method, path, tokens["predict"], body if method == "post" else None).status_code == 403
    for path in ("/api/v1/batch-jobs", f"/api/v1/batch-jobs/{job.pk}/cancel"):
        refused = api.call("post", path, tokens["read"], body)
        assert (refused.status_code, refused.json()) == (
            403,
            {"message": "This token lacks the 'write' scope.", "extra": {}},
        )
    client.force_login(users["end_user"])
    for method, path in paths:
        response = (
            getattr(client, method)(path, body, content_type="application/json")
            if method == "post"
            else client.get(path)
        )
        assert (response.status_code, response.json()) == (
            403,
            {"message": "Batch scoring jobs are for staff.", "extra": {}},
        ), path
    assert (BatchScoringJob.objects.count(), AuditEvent.objects.count()) == before  # nothing changed, nothing read
    for method, path in paths[:3]:
        assert api.call(method, path, tokens["read"]).status_code == 200, path
    client.force_login(users["ds"])
    assert client.get(f"/api/v1/batch-jobs/{job.pk}").json()["status"] == "succeeded"


def test_a_result_is_downloadable_only_once_the_job_succeeded(champion, dataset_version, api, tokens):
    job = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    response = api.call("get", f"/api/v1/batch-jobs/{job.pk}/download", tokens["read"])
    assert (response.status_code, response.json()) == (
        409,
        {"message": f"Batch scoring job {job.pk} has no result to download: it is queued.", "extra": {}},
    )
    assert not AuditEvent.objects.filter(action="batch_job.downloaded").exists()
    assert api.call("get", "/api/v1/batch-jobs/999999", tokens["read"]).json() == {
        "message": "No batch scoring job 999999.",
        "extra": {},
    }


def test_the_schema_documents_the_batch_endpoints(api, tokens, users, client):
    client.force_login(users["ds"])
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/batch-jobs"]) == {"get", "post"}
    assert set(paths["/api/v1/batch-jobs/{job_id}/download"]) == {"get"}
    assert set(paths["/api/v1/batch-jobs"]["post"]["requestBody"]["content"]) == {
        "application/json",
        "multipart/form-data",
    }


# -- pages and console ------------------------------------------------------------------------------------


def test_the_pages_start_follow_and_download_a_job(
    champion, dataset_version, client, users, django_capture_on_commit_callbacks
):
    client.force_login(users["ds"])
    page = client.get("/batch/?model=loan-risk")
    assert page.status_code == 200
    assert '<option value="loan-risk" selected>loan-risk</option>' in page.content.decode()
    refused = client.post("/batch/", {"model": "loan-risk", "output_format": "parquet"})
    assert refused.status_code == 400
    assert "Give a dataset (and optionally its version) or a file to score." in refused.content.decode()
    assert not BatchScoringJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post("/batch/", {"model": "loan-risk", "dataset": "loans", "output_format": "parquet"})
    job = BatchScoringJob.objects.get()
    assert (started.status_code, started["Location"]) == (302, f"/batch/{job.pk}/")
    detail = client.get(f"/batch/{job.pk}/").content.decode()
    assert 'data-testid="status">Succeeded</span>' in detail
    assert f'href="/batch/{job.pk}/download/"' in detail
    assert 'id="cancel-form"' not in detail
    download = client.get(f"/batch/{job.pk}/download/")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == artefact_path(job.output_path).read_bytes()
    assert AuditEvent.objects.get(action="batch_job.downloaded").actor == f"user:{users['ds'].pk}"
    listing = client.get("/batch/").content.decode()
    assert f'href="/batch/{job.pk}/"' in listing


def test_a_queued_job_page_follows_live_and_cancels(champion, dataset_version, client, users):
    job = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    client.force_login(users["ds"])
    page = client.get(f"/batch/{job.pk}/").content.decode()
    assert f'data-status-url="/api/v1/batch-jobs/{job.pk}"' in page
    assert "js/batch.js" in page and 'id="cancel-form"' in page
    response = client.post(f"/batch/{job.pk}/cancel/")
    assert (response.status_code, response["Location"]) == (302, f"/batch/{job.pk}/")
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert f"Batch job #{job.pk} cancelled." in client.get(f"/batch/{job.pk}/").content.decode()


def test_pages_are_for_staff_only(champion, dataset_version, client, users):
    job = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    client.force_login(users["end_user"])
    for path in ("/batch/", f"/batch/{job.pk}/", f"/batch/{job.pk}/download/"):
        assert client.get(path).status_code == 302
    assert client.post("/batch/", {"model": "loan-risk", "dataset": "loans"}).status_code == 302
    assert client.post(f"/batch/{job.pk}/cancel/").status_code == 302
    job.refresh_from_db()
    assert (BatchScoringJob.objects.count(), job.status) == (1, "queued")


def test_the_console_starts_and_cancels_jobs(
    champion, dataset_version, client, staff_admin, django_capture_on_commit_callbacks
):
    client.force_login(staff_admin)
    form = client.get("/admin/predictions/batchscoringjob/add/")
    assert form.status_code == 200
    refused = client.post(
        "/admin/predictions/batchscoringjob/add/", {"model_version": champion.pk, "output_format": "csv"}
    )
    assert refused.status_code == 200
    assert "Give a dataset (and optionally its version) or a file to score." in refused.content.decode()
    assert not BatchScoringJob.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        added = client.post(
            "/admin/predictions/batchscoringjob/add/",
            {"model_version": champion.pk, "dataset_version": dataset_version.pk, "output_format": "csv"},
        )
    assert added.status_code == 302
    job = BatchScoringJob.objects.get()
    assert (job.status, job.output_format, job.requested_by) == ("succeeded", "csv", f"user:{staff_admin.pk}")
    view = client.get(f"/admin/predictions/batchscoringjob/{job.pk}/change/").content.decode()
    assert f'href="/batch/{job.pk}/download/"' in view
    queued = batch_services.batch_job_create(model_version=champion, dataset_version=dataset_version)
    client.post(
        "/admin/predictions/batchscoringjob/",
        {"action": "cancel", "_selected_action": [queued.pk]},
    )
    queued.refresh_from_db()
    assert queued.status == "cancelled"
    assert math.isclose(job.progress, 1.0)
