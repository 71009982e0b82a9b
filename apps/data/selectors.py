"""Reads for datasets."""

from typing import Any

from django.db.models import QuerySet

from apps.core.artefacts import artefact_verified_path
from apps.core.errors import NotFound
from apps.data.models import Dataset, DatasetVersion, IngestJob


def dataset_list() -> QuerySet[Dataset]:
    return Dataset.objects.all()


def dataset_get(*, name: str) -> Dataset:
    dataset = Dataset.objects.filter(name=name).first()
    if dataset is None:
        raise NotFound(f"No dataset named {name!r}.")
    return dataset


def dataset_version_get(*, dataset: Dataset, number: int | None = None) -> DatasetVersion:
    versions = DatasetVersion.objects.filter(dataset=dataset).select_related("dataset")
    version = versions.filter(number=number).first() if number is not None else versions.order_by("-number").first()
    if version is None:
        raise NotFound(
            f"Dataset {dataset.name!r} has no version {number}."
            if number is not None
            else f"Dataset {dataset.name!r} has no versions yet."
        )
    return version


def dataset_version_table(*, version: DatasetVersion, columns: list[str] | None = None) -> Any:
    """The version's rows (or just `columns`) as an Arrow table, after verifying the file's SHA-256."""
    import pyarrow.parquet as pq

    return pq.read_table(artefact_verified_path(version.file_path, version.sha256), columns=columns)


def ingest_job_get(*, job_id: int) -> IngestJob:
    job = IngestJob.objects.filter(pk=job_id).select_related("dataset", "dataset_version").first()
    if job is None:
        raise NotFound(f"No ingest job {job_id}.")
    return job
