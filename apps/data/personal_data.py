"""What the data app holds about a data subject, for access requests and erasure: the rows of every dataset
version whose dataset names a subject key column, and anything those rows left in a version's statistics, its
validation report or an ingest job's problems.

Erasing a subject from a version rewrites its Parquet file without the subject's rows (row group by row group, so
memory stays bounded), records the new SHA-256, row count and statistics, tells the registry which row positions
went (`rows_erased`: holdouts are row numbers, and model versions trained on the old rows are flagged) in the same
transaction, then removes the old file unless another version shares it.
"""

from pathlib import Path
from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from apps.core.artefacts import artefact_path, artefact_temp_path, artefact_write_file
from apps.core.personal_data import StepResult, StepState, Subject, redact
from apps.data.models import DatasetVersion, DatasetVersionRewrite, IngestJob
from apps.data.selectors import dataset_version_path
from apps.governance.services import audit_record

# Sent inside the transaction that records a rewritten version: `version` (after), `positions` (the 0-based
# numbers, in the old file, of the rows removed, ascending), `before` and `after` (the files' SHA-256s).
rows_erased = Signal()

SUBJECT_ROWS_EXPORT_MAX = 10_000


def _versions(subject: Subject) -> Any:
    return (
        DatasetVersion.objects.filter(purged_at__isnull=True)
        .exclude(dataset__subject_key_column="")
        .select_related("dataset")
        .order_by("dataset__name", "number")
    )


def _positions(path: Path, key: str, subject: Subject) -> list[int]:
    """The 0-based numbers of the subject's rows, reading the key column one row group at a time."""
    import numpy as np
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    found: list[int] = []
    offset = 0
    for index in range(parquet.metadata.num_row_groups):
        column = parquet.read_row_group(index, columns=[key]).column(0)
        mask = subject.mask(column).to_numpy(zero_copy_only=False)
        found.extend(int(position) + offset for position in np.flatnonzero(mask))
        offset += len(column)
    return found


def _rewrite(source: Path, key: str, subject: Subject) -> tuple[str, str, int]:
    """Write the file again without the subject's rows; returns (relative path, sha256, rows kept)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from apps.data.ingest import parquet_writer

    parquet = pq.ParquetFile(source)
    temp = artefact_temp_path("datasets", ".parquet")
    kept = 0
    try:
        writer = parquet_writer(temp, parquet.schema_arrow)
        try:
            for index in range(parquet.metadata.num_row_groups):
                group = parquet.read_row_group(index)
                group = group.filter(pc.invert(subject.mask(group.column(key))))
                kept += group.num_rows
                writer.write_table(group)
        finally:
            writer.close()
        relative, digest = artefact_write_file("datasets", ".parquet", temp)
    finally:
        temp.unlink(missing_ok=True)
    return relative, digest, kept


def _remove_unshared(file_path: str) -> None:
    if not DatasetVersion.objects.filter(file_path=file_path).exists():
        artefact_path(file_path).unlink(missing_ok=True)


class DatasetVersionRows:
    store = "data.dataset_version"
    label = "Dataset versions (Parquet files)"
    order = 10

    def targets(self, subject: Subject) -> list[str]:
        return [str(pk) for pk in _versions(subject).values_list("pk", flat=True)]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        from apps.data.profiling import profile_parquet

        done = state.data.get("result")
        if done is not None:  # committed before an interruption: only the old file may be left to remove
            _remove_unshared(state.data["old_path"])
            return StepResult(**done)
        version = DatasetVersion.objects.select_related("dataset").filter(pk=int(target)).first()
        if version is None or version.purged_at is not None:
            return StepResult(count=0, detail={"skipped": "purged" if version else "gone"})
        key = version.dataset.subject_key_column
        path = dataset_version_path(version=version)
        positions = _positions(path, key, subject)
        label = f"{version.dataset.name} v{version.number}"
        if not positions:
            return StepResult(count=0, before=version.sha256, after=version.sha256, detail={"version": label})
        relative, digest, kept = _rewrite(path, key, subject)
        statistics = profile_parquet(artefact_path(relative))
        secret = subject.value
        validation = redact(version.validation, secret)[0] if secret else version.validation
        result = {"count": len(positions), "before": version.sha256, "after": digest, "detail": {"version": label}}
        with transaction.atomic():
            locked = DatasetVersion.objects.select_for_update().get(pk=version.pk)
            stale = locked.sha256 != version.sha256  # another runner rewrote it meanwhile
            if not stale:
                old_path = locked.file_path
                DatasetVersion.objects.filter(pk=version.pk).update(
                    file_path=relative,
                    sha256=digest,
                    row_count=kept,
                    statistics=statistics,
                    validation=validation,
                    erased_rows=locked.erased_rows + len(positions),
                    erased_at=timezone.now(),
                )
                locked.refresh_from_db()
                DatasetVersionRewrite.objects.create(
                    version=locked, before=version.sha256, after=digest, positions=positions
                )
                rows_erased.send(
                    sender=DatasetVersion, version=locked, positions=positions, before=version.sha256, after=digest
                )
                audit_record(
                    actor="system",
                    action="dataset_version.rows_erased",
                    target=locked,
                    data={
                        "dataset": version.dataset.name,
                        "number": version.number,
                        "rows": len(positions),
                        "before": version.sha256,
                        "after": digest,
                        "subject": subject.ref,
                    },
                )
                state.save({"result": result, "old_path": old_path})
        if stale:
            _remove_unshared(relative)
            return self.erase(subject, target, state)
        _remove_unshared(old_path)
        return StepResult(**result)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = []
        for version in _versions(subject):
            path = dataset_version_path(version=version)
            parquet = pq.ParquetFile(path)
            key = version.dataset.subject_key_column
            for index in range(parquet.metadata.num_row_groups):
                group = parquet.read_row_group(index)
                matched = group.filter(subject.mask(group.column(key)))
                rows += [
                    {"dataset": version.dataset.name, "version": version.number, **row} for row in matched.to_pylist()
                ]
                if len(rows) >= SUBJECT_ROWS_EXPORT_MAX:
                    return rows[:SUBJECT_ROWS_EXPORT_MAX]
        return rows


class IngestJobProblems:
    """An ingest job's problems may quote cell values (a duplicate key, a value out of range)."""

    store = "data.ingest_job"
    label = "Upload problems reported by ingest jobs"
    order = 11

    def targets(self, subject: Subject) -> list[str]:
        return ["all"] if subject.value is not None else []

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        changed = 0
        for job in IngestJob.objects.exclude(problems=[]).only("pk", "problems").iterator():
            problems, count = redact(job.problems, subject.value)
            if count:
                IngestJob.objects.filter(pk=job.pk).update(problems=problems)
                changed += count
        return StepResult(count=changed)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        return []
