"""The online store: materialise the latest row per entity (database and real Redis), look it up by id at
prediction time, and refuse what cannot be materialised or found, naming the field or the entity."""

import csv
import datetime as dt
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.artefacts import artefact_path
from apps.data.services import dataset_create, dataset_update, dataset_version_create_from_upload
from apps.features import online
from apps.features.models import MaterialisationJob, OnlineFeatureRow
from apps.features.services import materialisation_job_create, materialisation_job_run
from apps.governance.models import AuditEvent
from apps.predictions.models import PredictionRecord
from tests.conftest import generated_csv

ROOT = Path(__file__).resolve().parents[2]
UTC = dt.UTC


# -- stores ---------------------------------------------------------------------------------------------


def _redis_url(settings) -> str:
    """The real Redis: REDIS_URL when the run sets it (CI), else the local server's database 15 (CI starts Redis
    for both runs; without it these tests fail, naming the address)."""
    import redis

    url = settings.REDIS_URL or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        raise AssertionError(f"no Redis at {url}: {exc}") from None
    return url


def _flush(url: str, dataset_name: str) -> None:
    """Delete this test's keys only: the prefix of its own dataset."""
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{online.REDIS_PREFIX}:{dataset_name}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture(params=["database", "redis"])
def store_kind(request, settings):
    """Run the test against each backend, chosen the way production chooses it: by settings."""
    settings.FARO_ONLINE_STORE = request.param
    if request.param == "redis":
        settings.REDIS_URL = _redis_url(settings)
    return request.param


@pytest.fixture
def redis_cleanup(settings):
    names: list[str] = []
    yield names.append
    if settings.FARO_ONLINE_STORE == "redis":
        for name in names:
            _flush(settings.REDIS_URL, name)


def unique_name(prefix: str = "online") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def upload(content: bytes, name: str = "data.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def generated_rows() -> dict[str, dict]:
    """The generated table as typed rows by customer id, as a client would send them."""
    rows = {}
    for record in csv.DictReader(io.StringIO(generated_csv().decode())):
        rows[record["customer_id"]] = {
            "customer_id": record["customer_id"],
            "income": float(record["income"]),
            "age": int(record["age"]),
            "city": record["city"],
            "repaid": record["repaid"],
        }
    return rows


def materialise_job(version, django_capture_on_commit_callbacks, timestamp_column: str = "") -> MaterialisationJob:
    with django_capture_on_commit_callbacks(execute=True):
        job = materialisation_job_create(dataset_version=version, timestamp_column=timestamp_column)
    return MaterialisationJob.objects.get(pk=job.pk)


# A table with repeated entities and an event time: the latest row per entity must win, wherever it is.
EVENTS_CSV = (
    b"customer_id,seen_at,income,age,city,repaid\n"
    b"A,2024-03-02T09:30:00,2000.0,30,north,no\n"  # A: the latest, though not the last row
    b"B,,1000.0,40,south,no\n"  # B: a row without a time loses to any row with one
    b"A,2024-03-01T08:00:00,2100.0,31,north,no\n"
    b"C,,3000.0,50,east,yes\n"
    b"B,2024-01-05T00:00:00,1100.0,41,south,yes\n"
    b"C,,3100.0,51,east,no\n"  # C: never a time: the last row wins
    b"D,2024-02-01T12:00:00,4000.0,60,north,yes\n"
    b"A,2024-02-15T00:00:00,2200.0,32,north,yes\n"
    b"D,2024-02-01T12:00:00,4100.0,61,north,no\n"  # D: a tie: the later row wins
    b"B,,1200.0,42,south,no\n"
)
LATEST_BY_TIME = {
    "A": ({"customer_id": "A", "seen_at": "2024-03-02T09:30:00", "income": 2000.0, "age": 30, "city": "north",
           "repaid": "no"}, dt.datetime(2024, 3, 2, 9, 30, tzinfo=UTC)),
    "B": ({"customer_id": "B", "seen_at": "2024-01-05T00:00:00", "income": 1100.0, "age": 41, "city": "south",
           "repaid": "yes"}, dt.datetime(2024, 1, 5, tzinfo=UTC)),
    "C": ({"customer_id": "C", "seen_at": None, "income": 3100.0, "age": 51, "city": "east", "repaid": "no"}, None),
    "D": ({"customer_id": "D", "seen_at": "2024-02-01T12:00:00", "income": 4100.0, "age": 61, "city": "north",
           "repaid": "no"}, dt.datetime(2024, 2, 1, 12, tzinfo=UTC)),
}  # fmt: skip


@pytest.fixture
def events_version(db, redis_cleanup):
    name = unique_name("events")
    redis_cleanup(name)
    dataset = dataset_create(name=name, target_column="repaid", subject_key_column="customer_id")
    return dataset_version_create_from_upload(dataset=dataset, upload=upload(EVENTS_CSV))


# -- materialisation ------------------------------------------------------------------------------------


def test_the_generated_dataset_is_materialised_with_progress_and_freshness(
    store_kind, db, csv_upload, redis_cleanup, django_capture_on_commit_callbacks
):
    name = unique_name()
    redis_cleanup(name)
    dataset = dataset_create(name=name, target_column="repaid", subject_key_column="customer_id")
    version = dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())

    job = materialise_job(version, django_capture_on_commit_callbacks)

    assert (job.status, job.progress, job.rows_read, job.rows_written, job.store, job.error) == (
        "succeeded",
        1.0,
        300,
        300,
        store_kind,
        "",
    )
    expected = generated_rows()
    found = online.store_for_settings().get_many(dataset, ["C0000", "C0150", "C0299", "C0300"])
    assert found == {key: (expected[key], None, job.started_at) for key in ("C0000", "C0150", "C0299")}
    assert OnlineFeatureRow.objects.filter(dataset=dataset).count() == (300 if store_kind == "database" else 0)
    assert list(
        AuditEvent.objects.filter(object_type="features.materialisationjob")
        .order_by("seq")
        .values_list("action", "data")
    ) == [
        (
            "materialisation_job.created",
            {"dataset": name, "number": 1, "timestamp_column": "", "store": store_kind},
        ),
        ("materialisation_job.started", {}),
        (
            "online_store.materialised",
            {"dataset": name, "number": 1, "store": store_kind, "rows_read": 300, "rows_written": 300},
        ),
    ]


def test_the_latest_row_per_entity_wins_by_event_time(store_kind, events_version, django_capture_on_commit_callbacks):
    job = materialise_job(events_version, django_capture_on_commit_callbacks, timestamp_column="seen_at")

    assert (job.status, job.progress, job.rows_read, job.rows_written) == ("succeeded", 1.0, 10, 4)
    found = online.store_for_settings().get_many(events_version.dataset, ["A", "B", "C", "D", "E"])
    assert found == {key: (values, event_time, job.started_at) for key, (values, event_time) in LATEST_BY_TIME.items()}


def test_without_a_timestamp_column_the_last_row_per_entity_wins(
    store_kind, events_version, django_capture_on_commit_callbacks
):
    job = materialise_job(events_version, django_capture_on_commit_callbacks)

    assert (job.rows_read, job.rows_written) == (10, 4)
    found = online.store_for_settings().get_many(events_version.dataset, ["A", "B", "C", "D"])
    assert {key: (values["income"], event_time) for key, (values, event_time, _) in found.items()} == {
        "A": (2200.0, None),
        "B": (1200.0, None),
        "C": (3100.0, None),
        "D": (4100.0, None),
    }


@pytest.mark.parametrize(("batch_rows", "chunk_rows"), [(1, 1), (2, 3), (3, 2), (100, 100)])
def test_batches_and_write_chunks_do_not_change_the_result(settings, events_version, batch_rows, chunk_rows):
    """Rows of one entity spread over many batches, and writes split into chunks, give the same store."""
    settings.FARO_ONLINE_STORE = "database"
    version = events_version
    at = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    progress: list[float] = []
    result = online.materialise(
        path=artefact_path(version.file_path),
        dataset=version.dataset,
        dataset_version=version,
        key_column="customer_id",
        timestamp_column="seen_at",
        store=online.DatabaseStore(),
        materialised_at=at,
        on_progress=progress.append,
        batch_rows=batch_rows,
        chunk_rows=chunk_rows,
    )
    assert (result.rows_read, result.rows_written) == (10, 4)
    found = online.DatabaseStore().get_many(version.dataset, list(LATEST_BY_TIME))
    assert found == {key: (values, event_time, at) for key, (values, event_time) in LATEST_BY_TIME.items()}
    assert progress == sorted(progress) and progress[-1] == 1.0


def test_the_redis_layout_is_a_hash_per_entity(settings, events_version, django_capture_on_commit_callbacks):
    import redis

    settings.REDIS_URL = _redis_url(settings)
    settings.FARO_ONLINE_STORE = "redis"
    job = materialise_job(events_version, django_capture_on_commit_callbacks, timestamp_column="seen_at")

    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    name = events_version.dataset.name
    assert sorted(client.scan_iter(match=f"faro:online:{name}:*")) == [f"faro:online:{name}:{key}" for key in "ABCD"]
    assert client.hgetall(f"faro:online:{name}:A") == {
        "values": '{"customer_id":"A","seen_at":"2024-03-02T09:30:00","income":2000.0,"age":30,"city":"north",'
        '"repaid":"no"}',
        "event_time": "2024-03-02T09:30:00+00:00",
        "materialised_at": job.started_at.isoformat(),
        "dataset_version": "1",
    }
    assert client.hget(f"faro:online:{name}:C", "event_time") == ""
    assert online.RedisStore(settings.REDIS_URL).delete_many(events_version.dataset, ["A", "B", "nobody"]) == 2
    assert sorted(online.store_for_settings().get_many(events_version.dataset, "ABCD")) == ["C", "D"]


def test_a_new_version_upserts_without_duplicates(settings, db, redis_cleanup, django_capture_on_commit_callbacks):
    settings.FARO_ONLINE_STORE = "database"
    dataset = dataset_create(name=unique_name(), target_column="repaid", subject_key_column="customer_id")
    first = dataset_version_create_from_upload(dataset=dataset, upload=upload(EVENTS_CSV))
    materialise_job(first, django_capture_on_commit_callbacks)
    second = dataset_version_create_from_upload(
        dataset=dataset,
        upload=upload(b"customer_id,seen_at,income,age,city,repaid\nA,2024-04-01T00:00:00,9999.0,33,east,yes\n"),
    )
    job = materialise_job(second, django_capture_on_commit_callbacks)

    rows = {row.entity_id: row for row in OnlineFeatureRow.objects.filter(dataset=dataset)}
    assert sorted(rows) == ["A", "B", "C", "D"]
    assert (rows["A"].values["income"], rows["A"].dataset_version_id, rows["A"].materialised_at) == (
        9999.0,
        second.pk,
        job.started_at,
    )
    assert (rows["B"].values["income"], rows["B"].dataset_version_id) == (1200.0, first.pk)


def test_a_duplicate_delivery_runs_nothing(settings, events_version, django_capture_on_commit_callbacks):
    settings.FARO_ONLINE_STORE = "database"
    job = materialise_job(events_version, django_capture_on_commit_callbacks)
    assert materialisation_job_run(job_id=job.pk) is None
    assert MaterialisationJob.objects.get(pk=job.pk).finished_at == job.finished_at


def test_a_damaged_version_fails_the_job_with_its_reason(settings, events_version, django_capture_on_commit_callbacks):
    settings.FARO_ONLINE_STORE = "database"
    artefact_path(events_version.file_path).write_bytes(b"not the parquet file")
    job = materialise_job(events_version, django_capture_on_commit_callbacks)
    assert (job.status, job.rows_written) == ("failed", 0)
    assert job.error == f"Artefact {events_version.file_path} does not match its recorded SHA-256"
    assert not OnlineFeatureRow.objects.exists()
    assert AuditEvent.objects.filter(action="materialisation_job.failed", object_id=str(job.pk)).exists()


def test_the_store_setting_is_parsed_strictly(tmp_path):
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "config.settings.base", "FARO_VAR_DIR": str(tmp_path)}
    code = "import django; django.setup(); from django.conf import settings; print(settings.FARO_ONLINE_STORE)"

    def run(**env):
        return subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, env={**base, **env}
        )

    assert run().stdout.strip() == "database"
    assert run(REDIS_URL="redis://127.0.0.1:6379/15").stdout.strip() == "redis"
    assert run(REDIS_URL="redis://127.0.0.1:6379/15", FARO_ONLINE_STORE="database").stdout.strip() == "database"
    for env in ({"FARO_ONLINE_STORE": "redis"}, {"FARO_ONLINE_STORE": "Database"}, {"FARO_ONLINE_STORE": "memcached"}):
        result = run(**env)
        assert result.returncode != 0
        assert f"FARO_ONLINE_STORE={env['FARO_ONLINE_STORE']!r} must be database or redis" in result.stderr


# -- the API ----------------------------------------------------------------------------------------------


@pytest.fixture
def loans_online(store_kind, settings, champion, api, tokens, django_capture_on_commit_callbacks):
    """The champion's training dataset ("loans") materialised through the API."""
    if store_kind == "redis":
        _flush(settings.REDIS_URL, "loans")
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call("post", "/api/v1/online-store/materialisations", tokens["write"], {"dataset": "loans"})
    assert response.status_code == 202, response.content
    job = MaterialisationJob.objects.get()
    assert response["Location"] == f"/api/v1/online-store/materialisations/{job.pk}"
    yield job
    if store_kind == "redis":
        _flush(settings.REDIS_URL, "loans")


def _z(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_a_materialisation_is_queued_and_followed_over_the_api(api, tokens, loans_online, store_kind):
    job = loans_online
    body = api.call("get", f"/api/v1/online-store/materialisations/{job.pk}", tokens["read"]).json()
    assert body == {
        "id": job.pk,
        "url": f"/api/v1/online-store/materialisations/{job.pk}",
        "dataset": "loans",
        "dataset_version": 1,
        "timestamp_column": "",
        "store": store_kind,
        "status": "succeeded",
        "progress": 1.0,
        "rows_read": 300,
        "rows_written": 300,
        "created_at": _z(job.created_at),
        "started_at": _z(job.started_at),
        "finished_at": _z(job.finished_at),
        "error": "",
    }
    assert AuditEvent.objects.get(action="materialisation_job.created").actor.startswith("token:")


def test_an_entity_is_read_with_its_freshness(api, tokens, loans_online):
    response = api.call("get", "/api/v1/online-store/loans/entities/C0042", tokens["read"])
    assert response.status_code == 200, response.content
    assert response.json() == {
        "dataset": "loans",
        "entity_id": "C0042",
        "values": generated_rows()["C0042"],
        "event_time": None,
        "materialised_at": _z(loans_online.started_at),
    }
    unknown = api.call("get", "/api/v1/online-store/loans/entities/C9999", tokens["read"])
    assert (unknown.status_code, unknown.json()) == (
        404,
        {"message": "Unknown entity 'C9999' in the online store of loans.", "extra": {}},
    )
    assert api.call("get", "/api/v1/online-store/loans/entities/C0042", tokens["predict"]).status_code == 403
    assert api.call("get", "/api/v1/online-store/nope/entities/C0042", tokens["read"]).json() == {
        "message": "No dataset named 'nope'.",
        "extra": {},
    }


def test_an_event_time_is_served_with_the_values(
    store_kind, events_version, api, tokens, django_capture_on_commit_callbacks
):
    name = events_version.dataset.name
    with django_capture_on_commit_callbacks(execute=True):
        response = api.call(
            "post",
            "/api/v1/online-store/materialisations",
            tokens["write"],
            {"dataset": name, "dataset_version": 1, "timestamp_column": "seen_at"},
        )
    assert response.status_code == 202, response.content
    job = MaterialisationJob.objects.get()
    body = api.call("get", f"/api/v1/online-store/{name}/entities/B", tokens["read"]).json()
    assert body == {
        "dataset": name,
        "entity_id": "B",
        "values": LATEST_BY_TIME["B"][0],
        "event_time": "2024-01-05T00:00:00Z",
        "materialised_at": _z(job.started_at),
    }


def test_a_prediction_by_entity_id_equals_one_with_the_full_row(api, tokens, loans_online):
    rows = generated_rows()
    full = [
        {key: value for key, value in rows["C0005"].items() if key != "repaid"},
        {**{key: value for key, value in rows["C0007"].items() if key != "repaid"}, "income": 8000.0},
        {"income": 5200.5, "age": 41, "city": "north"},
    ]
    by_entity = [{"entity_id": "C0005"}, {"entity_id": "C0007", "income": 8000.0}, full[2]]

    expected = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": full})
    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": by_entity})

    assert response.status_code == 200, response.content
    assert response.json()["outputs"] == expected.json()["outputs"]
    logged = PredictionRecord.objects.filter(request_id=response.json()["request_id"]).order_by("row")
    # The subject key is logged once, as subject_id, not among the inputs.
    assert [(record.subject_id, {"customer_id": record.subject_id, **record.inputs}) for record in logged] == [
        ("C0005", full[0]),
        ("C0007", full[1]),
        ("", {"customer_id": "", **full[2]}),
    ]


def test_an_unknown_entity_is_a_404_naming_it_and_nothing_is_logged(api, tokens, loans_online):
    response = api.call(
        "post",
        "/api/v1/models/loan-risk/predict",
        tokens["predict"],
        {"inputs": [{"entity_id": "C0001"}, {"entity_id": "C9999"}, {"entity_id": 12}]},
    )
    assert response.status_code == 404
    assert response.json() == {
        "message": "Unknown entity 'C9999' in the online store of loans.",
        "extra": {
            "errors": [
                {"row": 1, "field": "entity_id", "message": "Unknown entity 'C9999' in the online store of loans."},
                {"row": 2, "field": "entity_id", "message": "Unknown entity 12 in the online store of loans."},
            ]
        },
    }
    assert not PredictionRecord.objects.exists()


def test_bad_entity_ids_and_a_conflicting_subject_key_are_refused(api, tokens, loans_online):
    response = api.call(
        "post",
        "/api/v1/models/loan-risk/predict",
        tokens["predict"],
        {"inputs": [{"entity_id": True}, {"entity_id": "C0001", "customer_id": "C0002"}, {"entity_id": ""}]},
    )
    assert response.status_code == 400
    assert response.json()["extra"]["errors"] == [
        {"row": 0, "field": "entity_id", "message": "must be a non-empty string or integer of at most 200 characters"},
        {"row": 1, "field": "customer_id", "message": "differs from entity_id 'C0001'"},
        {"row": 2, "field": "entity_id", "message": "must be a non-empty string or integer of at most 200 characters"},
    ]
    assert not PredictionRecord.objects.exists()


def test_all_entities_of_a_request_are_one_lookup_and_rows_without_one_none(api, tokens, loans_online, monkeypatch):
    import apps.predictions.services as prediction_services

    calls: list[list[str]] = []
    real = prediction_services.store_for_settings

    def counting():
        store = real()
        get_many = store.get_many

        def counted(dataset, entity_ids):
            entity_ids = list(entity_ids)
            calls.append(entity_ids)
            return get_many(dataset, entity_ids)

        store.get_many = counted
        return store

    monkeypatch.setattr(prediction_services, "store_for_settings", counting)
    inputs = [{"entity_id": f"C{index:04d}"} for index in range(50)]
    response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": inputs})
    assert response.status_code == 200, response.content
    assert calls == [[f"C{index:04d}" for index in range(50)]]

    calls.clear()
    plain = {"inputs": [{"income": 5200.5, "age": 41, "city": "north"}]}
    assert api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], plain).status_code == 200
    assert calls == []


def test_the_entity_path_costs_two_queries_whatever_the_row_count(
    settings, api, tokens, champion, django_capture_on_commit_callbacks
):
    """The database store: the training dataset, then every entity row at once."""
    from apps.predictions.services import prediction_make

    settings.FARO_ONLINE_STORE = "database"
    materialise_job(champion.dataset_version, django_capture_on_commit_callbacks)
    prediction_make(model_name="loan-risk", rows=[{"entity_id": "C0000"}])  # warm the model cache
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        prediction_make(model_name="loan-risk", rows=[{"entity_id": "C0000"}])
    with CaptureQueriesContext(connection) as many:
        prediction_make(model_name="loan-risk", rows=[{"entity_id": f"C{index:04d}"} for index in range(200)])
    assert len(many.captured_queries) == len(few.captured_queries)
    online_queries = [query["sql"] for query in many.captured_queries if "features_onlinefeaturerow" in query["sql"]]
    assert len(online_queries) == 1


# -- refusals ---------------------------------------------------------------------------------------------


def test_a_dataset_without_a_subject_key_is_refused_naming_the_field(api, tokens, db, csv_upload):
    dataset = dataset_create(name=unique_name(), target_column="repaid")
    dataset_version_create_from_upload(dataset=dataset, upload=csv_upload())
    response = api.call("post", "/api/v1/online-store/materialisations", tokens["write"], {"dataset": dataset.name})
    assert response.status_code == 400
    assert response.json() == {
        "message": f"Dataset {dataset.name!r} declares no subject key, so its rows have no entity id; "
        "set its subject_key_column first.",
        "extra": {"fields": {"dataset": ["The dataset declares no subject key (subject_key_column)."]}},
    }
    assert not MaterialisationJob.objects.exists()


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("when", "Column 'when' is not in {name} v1."),
        ("age", "Column 'age' is integer, not datetime."),
        ("city", "Column 'city' is string, not datetime."),
    ],
)
def test_a_bad_timestamp_column_is_refused_naming_the_field(api, tokens, events_version, column, message):
    name = events_version.dataset.name
    response = api.call(
        "post",
        "/api/v1/online-store/materialisations",
        tokens["write"],
        {"dataset": name, "timestamp_column": column},
    )
    assert response.status_code == 400
    assert response.json()["extra"] == {"fields": {"timestamp_column": [message.format(name=name)]}}
    assert not MaterialisationJob.objects.exists()


def test_other_bad_requests(api, tokens, events_version):
    name = events_version.dataset.name
    path = "/api/v1/online-store/materialisations"
    assert api.call("post", path, tokens["write"], {}).json() == {
        "message": "Invalid input.",
        "extra": {"fields": {"dataset": ["This field is required."]}},
    }
    assert api.call("post", path, tokens["write"], {"dataset": "nope"}).status_code == 404
    missing_version = api.call("post", path, tokens["write"], {"dataset": name, "dataset_version": 7})
    assert (missing_version.status_code, missing_version.json()["message"]) == (
        404,
        f"Dataset {name!r} has no version 7.",
    )
    assert api.call("post", path, tokens["read"], {"dataset": name}).status_code == 403
    assert api.call("get", f"{path}/999", tokens["read"]).json() == {
        "message": "No materialisation job 999.",
        "extra": {},
    }
    assert not MaterialisationJob.objects.exists()


def test_a_subject_key_dropped_after_queueing_fails_the_job(
    settings, events_version, django_capture_on_commit_callbacks
):
    settings.FARO_ONLINE_STORE = "database"
    job = materialisation_job_create(dataset_version=events_version)  # queued; not yet run
    dataset_update(dataset=events_version.dataset, subject_key_column="")
    assert materialisation_job_run(job_id=job.pk) is None
    job.refresh_from_db()
    assert job.status == "failed"
    assert "declares no subject key" in job.error


@pytest.mark.parametrize(("redis_url", "expected"), [("redis://127.0.0.1:6379/0", "redis"), ("", "database")])
def test_redis_is_the_default_store_when_redis_is_configured(tmp_path, redis_url, expected):
    import subprocess
    import sys
    from pathlib import Path

    env = {key: value for key, value in os.environ.items() if key not in ("REDIS_URL", "FARO_ONLINE_STORE")}
    env.update(
        {"DJANGO_SETTINGS_MODULE": "config.settings.base", "FARO_VAR_DIR": str(tmp_path), "REDIS_URL": redis_url}
    )
    code = "import django; django.setup(); from django.conf import settings; print(settings.FARO_ONLINE_STORE)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, expected), done.stderr
