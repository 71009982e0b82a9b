"""Dataset retention: versions past their dataset's retention are purged (file removed unless shared, record
kept for lineage, audited), and everything that reads their rows says so clearly."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from apps.core.artefacts import artefact_path
from apps.data.models import DatasetVersion, IngestJob
from apps.data.selectors import DatasetVersionPurged, dataset_version_table
from apps.data.services import (
    dataset_update,
    dataset_version_create_from_upload,
    dataset_versions_purge,
    ingest_job_create,
    ingest_job_run,
)
from apps.governance.models import AuditEvent
from apps.monitoring.models import DriftReport
from apps.predictions.batch_services import batch_job_create
from apps.predictions.models import BatchScoringJob
from apps.predictions.services import prediction_make
from apps.registry.models import TrainingJob
from apps.registry.services import training_job_create
from tests.conftest import generated_csv, valid_row

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
PURGED_MESSAGE = "Dataset version 1 of loans was purged on 2026-12-01 under its 365-day retention."


def governed(dataset, days: int = 365):
    return dataset_update(
        dataset=dataset,
        purpose="Decide on loan applications.",
        legal_basis="b",
        retention_days=days,
        column_tags={"customer_id": ["personal"], "age": ["personal", "protected"], "repaid": ["target"]},
    )


def upload(dataset, seed: int = 7) -> DatasetVersion:
    content = generated_csv(seed=seed)
    return dataset_version_create_from_upload(
        dataset=dataset, upload=SimpleUploadedFile("loans.csv", content, content_type="text/csv")
    )


def age(version: DatasetVersion, days: int) -> None:
    DatasetVersion.objects.filter(pk=version.pk).update(created_at=NOW - timedelta(days=days))


def purge_events() -> list[tuple[str, str, dict]]:
    return list(
        AuditEvent.objects.filter(action="dataset_version.purged")
        .order_by("seq")
        .values_list("actor", "object_id", "data")
    )


def test_versions_past_retention_are_purged_exactly_and_audited(dataset):
    governed(dataset)
    first, second, third = upload(dataset, seed=1), upload(dataset, seed=2), upload(dataset, seed=3)
    age(first, 400)
    age(second, 366)
    age(third, 364)

    result = dataset_versions_purge(now=NOW)

    assert [(item.dataset, item.number, item.sha256, item.retention_days) for item in result.versions] == [
        ("loans", 1, first.sha256, 365),
        ("loans", 2, second.sha256, 365),
    ]
    assert result.files_removed == sorted([first.file_path, second.file_path])
    assert result.files_kept == {}
    assert not artefact_path(first.file_path).exists()
    assert not artefact_path(second.file_path).exists()
    assert artefact_path(third.file_path).exists()
    first.refresh_from_db()
    assert (first.purged_at, first.purge_reason) == (NOW, "365-day retention")
    # The record stays: schema and row count for lineage; the statistics of personal columns went with the rows.
    assert (first.row_count, first.column_names) == (300, ["customer_id", "income", "age", "city", "repaid"])
    assert sorted(first.statistics) == ["city", "income", "repaid"]
    assert DatasetVersion.objects.get(pk=third.pk).purged_at is None
    assert purge_events() == [
        ("system", str(first.pk), {"dataset": "loans", "number": 1, "sha256": first.sha256, "retention_days": 365}),
        ("system", str(second.pk), {"dataset": "loans", "number": 2, "sha256": second.sha256, "retention_days": 365}),
    ]

    again = dataset_versions_purge(now=NOW)
    assert (again.versions, again.files_removed, len(purge_events())) == ([], [], 2)
    out = StringIO()
    call_command("dataset_verify", stdout=out)  # purged versions are not missing files
    assert out.getvalue() == "Dataset storage intact: 1 version(s) verified; 2 purged version(s) have no file.\n"


def test_a_file_shared_with_a_live_version_stays_until_no_live_version_uses_it(dataset):
    governed(dataset)
    old, same = upload(dataset), upload(dataset)  # the same bytes: one file, by its SHA-256
    assert old.file_path == same.file_path
    age(old, 400)
    age(same, 100)

    result = dataset_versions_purge(now=NOW)

    assert [item.number for item in result.versions] == [1]
    assert result.files_removed == []
    assert result.files_kept == {old.file_path: ["loans v2"]}
    assert artefact_path(old.file_path).exists()
    assert dataset_version_table(version=same).num_rows == 300
    with pytest.raises(DatasetVersionPurged):
        dataset_version_table(version=DatasetVersion.objects.get(pk=old.pk))

    age(same, 366)
    later = dataset_versions_purge(now=NOW)
    assert ([item.number for item in later.versions], later.files_removed) == ([2], [old.file_path])
    assert not artefact_path(old.file_path).exists()


def test_a_dry_run_changes_nothing(dataset):
    governed(dataset)
    version = upload(dataset)
    age(version, 400)
    before = AuditEvent.objects.count()

    result = dataset_versions_purge(now=NOW, dry_run=True)

    assert ([item.number for item in result.versions], result.files_removed) == ([1], [version.file_path])
    assert artefact_path(version.file_path).exists()
    assert DatasetVersion.objects.get(pk=version.pk).purged_at is None
    assert AuditEvent.objects.count() == before


def test_a_dataset_without_retention_is_never_purged(dataset):
    version = upload(dataset)
    age(version, 10_000)
    assert dataset_versions_purge(now=NOW).versions == []
    assert DatasetVersion.objects.get(pk=version.pk).purged_at is None


def test_reading_a_purged_versions_rows_is_refused_with_its_date_and_retention(dataset, api, tokens, client, users):
    governed(dataset)
    version = upload(dataset)
    stale = DatasetVersion.objects.get(pk=version.pk)  # loaded before the purge, as a running job would have it
    age(version, 400)
    dataset_versions_purge(now=NOW)

    with pytest.raises(DatasetVersionPurged) as purged:
        dataset_version_table(version=stale)
    assert purged.value.message == PURGED_MESSAGE
    assert purged.value.status_code == 409

    response = api.call("get", "/api/v1/datasets/loans/versions/1/download?format=parquet", tokens["read"])
    assert response.status_code == 409
    assert response.json() == {
        "message": PURGED_MESSAGE,
        "extra": {
            "dataset": "loans",
            "version": 1,
            "purged_at": "2026-12-01T12:00:00+00:00",
            "purge_reason": "365-day retention",
        },
    }
    body = api.call("get", "/api/v1/datasets/loans/versions/1", tokens["read"]).json()
    assert (body["purged_at"], body["purge_reason"]) == ("2026-12-01T12:00:00Z", "365-day retention")

    client.force_login(users["ds"])
    download = client.get("/datasets/loans/v1/download.csv")
    assert download.status_code == 409
    assert PURGED_MESSAGE in download.content.decode()
    page = client.get("/datasets/loans/v1/").content.decode()
    assert PURGED_MESSAGE in page
    assert "download.csv" not in page
    assert "purged 2026-12-01" in client.get("/datasets/loans/").content.decode()
    users["ds"].is_superuser = True
    users["ds"].save()
    console = client.get("/admin/data/datasetversion/", {"purged_at__isempty": "0"})
    assert console.status_code == 200
    assert "365-day retention" in console.content.decode()

    # Appending to a purged version fails the ingest job with the same message, and creates no version.
    appended = ingest_job_create(
        dataset=dataset,
        upload=SimpleUploadedFile("more.csv", generated_csv(rows=10, seed=9), content_type="text/csv"),
        options={"mode": "append"},
    )
    assert ingest_job_run(job_id=appended.pk) is None  # the worker's run (on commit, outside a test)
    appended.refresh_from_db()
    assert (appended.status, appended.error) == (IngestJob.Status.FAILED, PURGED_MESSAGE)
    assert DatasetVersion.objects.count() == 1


def test_a_model_trained_on_a_purged_version_still_serves_and_its_pages_render(
    champion, registered_model, api, tokens, client, users
):
    governed(champion.dataset_version.dataset, days=30)
    age(champion.dataset_version, 31)
    assert [item.number for item in dataset_versions_purge(now=NOW).versions] == [1]
    assert not artefact_path(champion.dataset_version.file_path).exists()

    result = prediction_make(model_name="loan-risk", rows=[valid_row()])  # the model cache is empty: loaded anew
    assert result.model.version_id == champion.pk
    assert len(result.outputs) == 1

    client.force_login(users["ds"])
    page = client.get(f"/models/loan-risk/versions/{champion.version}/")
    assert page.status_code == 200
    assert "(purged 2026-12-01 under its 30-day retention" in page.content.decode()
    assert client.get(f"/models/loan-risk/versions/{champion.version}/card/").status_code == 200

    # What needs the rows says why it cannot have them, and changes nothing.
    message = "Dataset version 1 of loans was purged on 2026-12-01 under its 30-day retention."
    with pytest.raises(DatasetVersionPurged, match=message):
        training_job_create(registered_model=registered_model, dataset_version=champion.dataset_version)
    with pytest.raises(DatasetVersionPurged, match=message):
        batch_job_create(model_version=champion, dataset_version=champion.dataset_version)
    assert (TrainingJob.objects.count(), BatchScoringJob.objects.count()) == (1, 0)
    drift = api.call("post", "/api/v1/models/loan-risk/drift-reports", tokens["write"], {"hours": 1})
    assert (drift.status_code, drift.json()["message"]) == (409, message)
    assert DriftReport.objects.count() == 0


def test_a_file_left_by_an_interrupted_purge_is_removed_by_the_next_run(dataset):
    governed(dataset)
    version = upload(dataset)
    # As if the worker died after the record was committed and before the file was removed.
    DatasetVersion.objects.filter(pk=version.pk).update(purged_at=NOW, purge_reason="365-day retention")
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("dataset_verify", stdout=out)
    assert out.getvalue().splitlines()[0] == f"ORPHAN {version.file_path}"

    result = dataset_versions_purge(now=NOW)

    assert (result.versions, result.files_removed) == ([], [version.file_path])
    assert not artefact_path(version.file_path).exists()
    assert purge_events() == []  # the version's event was written with its record
