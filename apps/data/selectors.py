"""Reads for datasets."""

from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from apps.core.artefacts import ArtefactCorrupted, artefact_verified_path
from apps.core.errors import Conflict, NotFound
from apps.data.models import Dataset, DatasetVersion, IngestJob


class DatasetVersionPurged(Conflict):
    """The version's rows were purged (its dataset's retention passed): the record stays, the data is gone.

    409: the request is fine, but the version's state no longer allows it, and retrying will not help."""

    def __init__(self, version: DatasetVersion) -> None:
        super().__init__(
            version.purged_message(),
            extra={
                "dataset": version.dataset.name,
                "version": version.number,
                "purged_at": version.purged_at.isoformat(),
                "purge_reason": version.purge_reason,
            },
        )


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


def dataset_version_live_check(*, version: DatasetVersion) -> None:
    """Raise DatasetVersionPurged if the version is purged, asking the database: `version` may be stale."""
    purged = (
        version
        if version.purged_at is not None
        else DatasetVersion.objects.select_related("dataset").filter(pk=version.pk, purged_at__isnull=False).first()
    )
    if purged is not None:
        raise DatasetVersionPurged(purged)


def dataset_version_path(*, version: DatasetVersion) -> Path:
    """The version's Parquet file, its SHA-256 verified: the one way to a version's rows.

    A purged version raises DatasetVersionPurged, also when it was purged after `version` was loaded (its file
    is then missing); a version an erasure rewrote after it was loaded is read from its new file (and `version`
    updated); a file missing for any other reason is ArtefactCorrupted, as for every artefact.
    """
    if version.purged_at is not None:
        raise DatasetVersionPurged(version)
    try:
        return artefact_verified_path(version.file_path, version.sha256)
    except ArtefactCorrupted:
        dataset_version_live_check(version=version)
        if not _rewritten_since(version):
            raise
        return artefact_verified_path(version.file_path, version.sha256)


def _rewritten_since(version: DatasetVersion) -> bool:
    """Whether an erasure rewrote the version's file after `version` was loaded (its old file is then gone); if
    so, `version` is brought up to date with the new file."""
    current = DatasetVersion.objects.filter(pk=version.pk).values_list("sha256", flat=True).first()
    if current is None or current == version.sha256:
        return False
    version.refresh_from_db(fields=["file_path", "sha256", "row_count", "statistics", "erased_rows", "erased_at"])
    return True


def dataset_version_table(*, version: DatasetVersion, columns: list[str] | None = None) -> Any:
    """The version's rows (or just `columns`) as an Arrow table, after verifying the file's SHA-256."""
    import pyarrow.parquet as pq

    path = dataset_version_path(version=version)
    try:
        return pq.read_table(path, columns=columns)
    except FileNotFoundError:  # purged or rewritten between the check and the read
        return pq.read_table(dataset_version_path(version=version), columns=columns)


def ingest_job_get(*, job_id: int) -> IngestJob:
    job = IngestJob.objects.filter(pk=job_id).select_related("dataset", "dataset_version").first()
    if job is None:
        raise NotFound(f"No ingest job {job_id}.")
    return job


def rows_carried(*, version: DatasetVersion, sha256: str, rows: Any) -> Any:
    """Row numbers of the file `sha256` of `version`, carried through the erasures that rewrote it since to the
    current file: erased rows are dropped, later ones move up. Raises NotFound if the file is not in its history."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.int64)
    current = sha256
    rewrites = {rewrite.before: rewrite for rewrite in version.rewrites.all()}
    while current != version.sha256:
        rewrite = rewrites.get(current)
        if rewrite is None:
            raise NotFound(f"{version} never had the file {current[:12]}…; its row numbers cannot be carried over.")
        removed = np.asarray(rewrite.positions, dtype=np.int64)
        rows = rows[~np.isin(rows, removed)]
        rows = rows - np.searchsorted(removed, rows)
        current = rewrite.after
    return rows
