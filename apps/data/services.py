"""Writes for datasets: descriptions, checks, and immutable versions ingested from uploads by a worker."""

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone
from prometheus_client import Counter

from apps.core.artefacts import (
    artefact_path,
    artefact_temp_path,
    artefact_write_file,
    upload_stage,
)
from apps.core.errors import Conflict, FaroError, InvalidInput
from apps.data.ingest import IngestError, SourceOptions, parquet_writer, schema_changes, write_version
from apps.data.models import Dataset, DatasetCheck, DatasetVersion, IngestJob
from apps.data.selectors import dataset_version_path
from apps.governance.services import acting_user, actor_ref, audit_record

logger = logging.getLogger(__name__)

DATA_CHECK_FAILURES = Counter(
    "faro_data_check_failures",
    "Data checks that failed on a new dataset version, by kind of check and severity (blocking or warning).",
    ["check", "severity"],
)

DATASET_FIELDS = (
    "description",
    "target_column",
    "subject_key_column",
    "purpose",
    "legal_basis",
    "retention_days",
    "column_tags",
    "subject_categories",
    "recipients",
    "owner",
)
PROGRESS_INTERVAL_SECONDS = 0.5
_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _validated(dataset: Dataset) -> None:
    try:
        dataset.full_clean()
    except ValidationError as exc:
        if "name" in exc.message_dict and Dataset.objects.filter(name=dataset.name).exclude(pk=dataset.pk).exists():
            raise Conflict(
                f"A dataset named {dataset.name!r} already exists.",
                extra={"fields": {"name": ["A dataset with this name already exists."]}},
            ) from None
        raise InvalidInput("The dataset is not valid.", extra={"fields": exc.message_dict}) from None


def dataset_create(*, name: str, actor: Any = None, **fields: Any) -> Dataset:
    """Describe a dataset. One with personal columns needs a purpose, a legal basis and a retention period."""
    unknown = set(fields) - set(DATASET_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown dataset fields: {', '.join(sorted(unknown))}.")
    fields.setdefault("owner", acting_user(actor))
    dataset = Dataset(name=name, created_by=acting_user(actor), **fields)
    _validated(dataset)
    with transaction.atomic():
        dataset.save()
        audit_record(actor=actor, action="dataset.created", target=dataset, data=_audit_view(dataset))
    return dataset


def dataset_update(*, dataset: Dataset, actor: Any = None, **fields: Any) -> Dataset:
    unknown = set(fields) - set(DATASET_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown dataset fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        for key, value in fields.items():
            setattr(locked, key, value)
        _validated(locked)
        locked.save()
        audit_record(actor=actor, action="dataset.updated", target=locked, data=_audit_view(locked))
    return locked


def _audit_view(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "target_column": dataset.target_column,
        "subject_key_column": dataset.subject_key_column,
        "legal_basis": dataset.legal_basis,
        "retention_days": dataset.retention_days,
        "column_tags": dataset.column_tags,
    }


# -- checks ------------------------------------------------------------------------------------------


def dataset_check_create(
    *,
    dataset: Dataset,
    kind: str,
    column: str = "",
    params: dict | None = None,
    severity: str = DatasetCheck.Severity.BLOCKING,
    enabled: bool = True,
    actor: Any = None,
) -> DatasetCheck:
    check = DatasetCheck(
        dataset=dataset, kind=kind, column=column, params=params or {}, severity=severity, enabled=enabled
    )
    return _check_save(check, action="dataset_check.created", data=check.spec(), actor=actor)


def dataset_check_update(*, check: DatasetCheck, actor: Any = None, **fields: Any) -> DatasetCheck:
    for key, value in fields.items():
        if key not in ("kind", "column", "params", "severity", "enabled"):
            raise InvalidInput(f"Unknown check field {key!r}.")
        setattr(check, key, value)
    return _check_save(
        check, action="dataset_check.updated", data={**check.spec(), "enabled": check.enabled}, actor=actor
    )


def _check_save(check: DatasetCheck, *, action: str, data: dict[str, Any], actor: Any) -> DatasetCheck:
    """Validate the check's spec, save it and audit it in one transaction."""
    try:
        check.full_clean()
    except ValidationError as exc:
        raise InvalidInput("The check is not valid.", extra={"fields": exc.message_dict}) from None
    with transaction.atomic():
        check.save()
        audit_record(actor=actor, action=action, target=check, data=data)
    return check


def dataset_check_delete(*, check: DatasetCheck, actor: Any = None) -> None:
    with transaction.atomic():
        audit_record(actor=actor, action="dataset_check.deleted", target=check, data=check.spec())
        check.delete()


# -- ingestion ----------------------------------------------------------------------------------------


def parse_ingest_options(raw: dict[str, Any]) -> dict[str, Any]:
    """Upload options from a form or API body, validated: mode, format, delimiter, encoding, schema change."""
    problems: dict[str, list[str]] = {}
    mode = raw.get("mode") or DatasetVersion.Mode.REPLACE
    if mode not in DatasetVersion.Mode.values:
        problems["mode"] = [f"Choose one of: {', '.join(DatasetVersion.Mode.values)}."]
    fmt = raw.get("format") or None
    if fmt not in (None, "csv", "parquet", "jsonl"):
        problems["format"] = ["Choose one of: csv, parquet, jsonl."]
    delimiter = raw.get("delimiter") or None
    if delimiter is not None:
        delimiter = {"\\t": "\t", "tab": "\t"}.get(delimiter, delimiter)
        if len(delimiter) != 1:
            problems["delimiter"] = ["Give one character (or 'tab')."]
    encoding = raw.get("encoding") or None
    if encoding is not None:
        import codecs

        try:
            codecs.lookup(encoding)
        except LookupError:
            problems["encoding"] = [f"Unknown encoding {encoding!r}."]
    accept = raw.get("accept_schema_change") or False
    if isinstance(accept, str):
        lowered = accept.strip().lower()
        if lowered not in ("1", "true", "on", "yes", "0", "false", "off", "no", ""):
            problems["accept_schema_change"] = ["Give true or false."]
        accept = lowered in ("1", "true", "on", "yes")
    if problems:
        raise InvalidInput("The upload options are not valid.", extra={"fields": problems})
    return {
        "mode": mode,
        "format": fmt,
        "delimiter": delimiter,
        "encoding": encoding,
        "accept_schema_change": bool(accept),
    }


def ingest_job_create(
    *,
    dataset: Dataset,
    upload: Any,
    options: dict[str, Any] | None = None,
    expected_sha256: str = "",
    actor: Any = None,
) -> IngestJob:
    """Stage an upload and queue its ingestion; a worker turns it into a version.

    With `expected_sha256`, a damaged or truncated upload is refused before anything is queued.
    """
    parsed = parse_ingest_options(options or {})
    relative, digest, size = upload_stage(upload, kind="uploads")
    if expected_sha256 and expected_sha256.lower() != digest:
        artefact_path(relative).unlink(missing_ok=True)
        raise InvalidInput(
            "The upload is damaged or truncated: its SHA-256 does not match the one given.",
            extra={"fields": {"sha256": [f"Received a file with SHA-256 {digest}."]}},
        )
    from apps.data.tasks import ingest_job_run as ingest_job_run_task

    with transaction.atomic():
        job = IngestJob.objects.create(
            dataset=dataset,
            staged_path=relative,
            original_name=(upload.name or "")[:255],
            original_sha256=digest,
            size_bytes=size,
            options=parsed,
            created_by=acting_user(actor),
            requested_by=actor_ref(actor),
        )
        audit_record(
            actor=actor,
            action="ingest_job.created",
            target=job,
            data={"dataset": dataset.name, "sha256": digest, "bytes": size, "options": parsed},
        )
        transaction.on_commit(lambda: ingest_job_run_task.delay(job.pk))
    return job


def ingest_job_run(*, job_id: int) -> DatasetVersion | None:
    """Run a queued ingestion once; a job that is not queued is left alone (duplicate delivery)."""
    with transaction.atomic():
        claimed = IngestJob.objects.filter(pk=job_id, status=IngestJob.Status.QUEUED).update(
            status=IngestJob.Status.RUNNING, started_at=timezone.now(), progress=0.0
        )
        if not claimed:
            return None
        audit_record(actor="system", action="ingest_job.started", target=IngestJob(pk=job_id))
    job = IngestJob.objects.select_related("dataset", "created_by").get(pk=job_id)
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_INTERVAL_SECONDS:
            last[0] = now
            IngestJob.objects.filter(pk=job_id, status=IngestJob.Status.RUNNING).update(
                progress=round(min(fraction, 0.99) * 0.9, 3)
            )

    staged = artefact_path(job.staged_path)
    try:
        version = dataset_version_ingest(
            dataset=job.dataset,
            source=staged,
            original_name=job.original_name,
            original_sha256=job.original_sha256,
            options=job.options,
            actor=job.created_by or job.requested_by or None,
            on_progress=report,
            job=job,
        )
    except FaroError as exc:
        details = {key: value for key, value in exc.extra.items() if key != "problems"}
        _ingest_fail(job_id, exc.message, exc.extra.get("problems", []), details)
        return None
    except Exception as exc:
        logger.exception("Ingest job %s failed", job_id)
        _ingest_fail(job_id, f"Ingestion failed unexpectedly ({type(exc).__name__}).", [])
        return None
    finally:
        staged.unlink(missing_ok=True)
    return version


def _ingest_fail(
    job_id: int, message: str, problems: list[dict[str, Any]], details: dict[str, Any] | None = None
) -> None:
    with transaction.atomic():
        changed = IngestJob.objects.filter(pk=job_id, status=IngestJob.Status.RUNNING).update(
            status=IngestJob.Status.FAILED,
            error=message,
            problems=problems,
            details=details or {},
            finished_at=timezone.now(),
            staged_path="",
        )
        if changed:
            audit_record(
                actor="system",
                action="ingest_job.failed",
                target=IngestJob(pk=job_id),
                data={"error": message[:500], "problems": len(problems)},
            )


def _check_declared_columns(dataset: Dataset, schema: list[dict[str, Any]], missing: dict[str, int]) -> None:
    names = {column["name"] for column in schema}
    problems = []
    for label, column in (("target column", dataset.target_column), ("subject key", dataset.subject_key_column)):
        if column and column not in names:
            problems.append(
                {"row": None, "column": column, "message": f"the dataset's {label} {column!r} is not in the file"}
            )
    for column in dataset.column_tags or {}:
        if column not in names:
            problems.append({"row": None, "column": column, "message": "is tagged on the dataset but not in the file"})
    key = dataset.subject_key_column
    if key and key in names and missing.get(key):
        problems.append({"row": None, "column": key, "message": f"{missing[key]} rows have no subject key"})
    if problems:
        raise InvalidInput("The file does not match the dataset's declaration.", extra={"problems": problems})


def dataset_version_ingest(
    *,
    dataset: Dataset,
    source: Path,
    original_name: str,
    original_sha256: str,
    options: dict[str, Any],
    actor: Any = None,
    on_progress: Callable[[float], None] | None = None,
    job: IngestJob | None = None,
) -> DatasetVersion:
    """Turn a file into the dataset's next version: read, compare the schema with the parent, profile,
    run the dataset's checks, then store the Parquet file under its SHA-256 and record the version.

    Nothing is stored unless every step passes: a failure raises InvalidInput with the problems.
    """
    from apps.data.checks import blocking_failures, run_checks
    from apps.data.profiling import profile_parquet

    parent = dataset.versions.order_by("-number").first()
    append = options.get("mode") == DatasetVersion.Mode.APPEND
    if append and parent is None:
        raise InvalidInput(
            "There is no version to append to; upload with mode 'replace' first.",
            extra={"fields": {"mode": ["No parent version."]}},
        )
    temp = artefact_temp_path("datasets", ".parquet")
    try:
        try:
            result = write_version(
                source,
                original_name,
                temp,
                SourceOptions(
                    format=options.get("format"), delimiter=options.get("delimiter"), encoding=options.get("encoding")
                ),
                parent=dataset_version_path(version=parent) if append else None,
                on_progress=on_progress,
            )
        except IngestError as exc:
            raise InvalidInput(exc.message, extra={"problems": exc.problems}) from None
        statistics = profile_parquet(temp)
        _check_declared_columns(dataset, result.schema, {name: stats["missing"] for name, stats in statistics.items()})
        changes = schema_changes(parent.schema, result.schema) if parent is not None else None
        if changes and changes["breaking"] and not options.get("accept_schema_change"):
            raise InvalidInput(
                "The schema changes in a breaking way; upload again with 'accept schema change' if intended.",
                extra={"problems": _change_problems(changes), "schema_changes": changes},
            )
        checks = [check.spec() for check in dataset.checks.filter(enabled=True)]
        results = run_checks(temp, checks) if checks else []
        for outcome in results:
            if not outcome.passed:
                DATA_CHECK_FAILURES.labels(check=outcome.kind, severity=outcome.severity).inc()
        failures = blocking_failures(results)
        if failures:
            raise InvalidInput(
                f"{len(failures)} blocking check(s) failed.",
                extra={
                    "problems": [
                        {
                            "row": failure.failing_rows[0] if failure.failing_rows else None,
                            "column": failure.column or None,
                            "message": failure.message,
                            "rows": failure.failing_rows,
                            "count": failure.failing_count,
                        }
                        for failure in failures
                    ]
                },
            )
        relative, digest = artefact_write_file("datasets", ".parquet", temp)
    finally:
        temp.unlink(missing_ok=True)
    validation = {
        "schema_changes": changes,
        "checks": [asdict(item) for item in results],
        "source": {"format": result.source_format, **result.details},
    }
    try:
        with transaction.atomic():
            locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
            if (
                append
                and DatasetVersion.objects.filter(pk=parent.pk).values_list("sha256", flat=True)[0] != parent.sha256
            ):
                raise _ParentRewritten
            number = (locked.versions.aggregate(latest=Max("number"))["latest"] or 0) + 1
            version = DatasetVersion.objects.create(
                dataset=locked,
                number=number,
                parent=parent,
                mode=options.get("mode", DatasetVersion.Mode.REPLACE),
                source_format=result.source_format,
                file_path=relative,
                sha256=digest,
                original_name=original_name[:255],
                original_sha256=original_sha256,
                row_count=result.row_count,
                schema=result.schema,
                statistics=statistics,
                validation=validation,
                created_by=acting_user(actor),
            )
            if job is not None:
                finished = IngestJob.objects.filter(pk=job.pk, status=IngestJob.Status.RUNNING).update(
                    status=IngestJob.Status.SUCCEEDED,
                    progress=1.0,
                    finished_at=timezone.now(),
                    dataset_version=version,
                    staged_path="",
                )
                if not finished:
                    raise Conflict(f"Ingest job {job.pk} was finished elsewhere; version not recorded.")
            audit_record(
                actor=actor,
                action="dataset_version.created",
                target=version,
                data={
                    "dataset": dataset.name,
                    "number": number,
                    "sha256": digest,
                    "rows": result.row_count,
                    "parent": parent.number if parent else None,
                    "mode": version.mode,
                },
            )
    except _ParentRewritten:
        # An erasure rewrote the parent while this copied its rows: the copy may hold the erased person's rows.
        _file_drop_unreferenced(relative)
        raise Conflict(
            f"Version {parent.number} of {dataset.name} changed while this upload was appended to it (a data "
            "subject's rows were erased); upload again to append to it as it is now."
        ) from None
    return version


class _ParentRewritten(Exception):
    pass


def _file_drop_unreferenced(relative: str) -> None:
    if not DatasetVersion.objects.filter(file_path=relative).exists():
        artefact_path(relative).unlink(missing_ok=True)


def _change_problems(changes: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"row": None, "column": name, "message": "was removed"} for name in changes["removed"]] + [
        {"row": None, "column": item["name"], "message": f"changed type from {item['from']} to {item['to']}"}
        for item in changes["retyped"]
    ]


def dataset_version_create_from_upload(
    *, dataset: Dataset, upload: Any, options: dict[str, Any] | None = None, actor: Any = None
) -> DatasetVersion:
    """Ingest an upload right away, in this process (demo set-up, scripts); pages and the API queue a job."""
    parsed = parse_ingest_options(options or {})
    relative, digest, _size = upload_stage(upload, kind="uploads")
    try:
        return dataset_version_ingest(
            dataset=dataset,
            source=artefact_path(relative),
            original_name=upload.name or "",
            original_sha256=digest,
            options=parsed,
            actor=actor,
        )
    finally:
        artefact_path(relative).unlink(missing_ok=True)


# -- export ------------------------------------------------------------------------------------------


def csv_neutralise(value: Any) -> Any:
    """Spreadsheets run cells that start with =, +, -, @: prefix such text with a quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


def dataset_version_export(
    *, version: DatasetVersion, fmt: str, actor: Any = None
) -> tuple[Path | Iterator[bytes], str]:
    """The version as a verified Parquet path or a stream of CSV bytes (formula-safe). Audited."""
    import csv
    import io

    import pyarrow.parquet as pq

    if fmt not in ("csv", "parquet"):
        raise InvalidInput("Choose format csv or parquet.", extra={"fields": {"format": ["Unknown format."]}})
    path = dataset_version_path(version=version)
    audit_record(
        actor=actor,
        action="dataset_version.downloaded",
        target=version,
        data={"dataset": version.dataset.name, "number": version.number, "format": fmt},
    )
    if fmt == "parquet":
        return path, "application/vnd.apache.parquet"

    def rows() -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        parquet = pq.ParquetFile(path)
        writer.writerow(parquet.schema_arrow.names)
        for batch in parquet.iter_batches(batch_size=10_000):
            columns = [column.to_pylist() for column in batch.columns]
            for row in zip(*columns, strict=True):
                writer.writerow([csv_neutralise(value) for value in row])
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()

    return rows(), "text/csv"


# -- storage verification ------------------------------------------------------------------------------


@dataclass
class StorageReport:
    checked: int = 0
    purged: int = 0
    mismatched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    not_rematerialised: list[str] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return len(self.mismatched) + len(self.missing) + len(self.orphans) + len(self.not_rematerialised)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def lines(self) -> list[str]:
        return (
            [f"MISMATCH {item}" for item in self.mismatched]
            + [f"MISSING {item}" for item in self.missing]
            + [f"ORPHAN {item}" for item in self.orphans]
            + [f"NOT REPRODUCIBLE {item}" for item in self.not_rematerialised]
        )


def parquet_rematerialise(source: Path, target: Path) -> None:
    """Rewrite a version's Parquet file row group by row group with the writer of ingestion."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(source)
    writer = parquet_writer(target, parquet.schema_arrow)
    try:
        for index in range(parquet.metadata.num_row_groups):
            writer.write_table(parquet.read_row_group(index))
    finally:
        writer.close()


def dataset_storage_verify(*, rematerialise: bool = False) -> StorageReport:
    """Every version's file present with its recorded SHA-256; no unreferenced files; optionally each
    version rewritten from its own rows gives the same bytes. Purged versions have no file: they are counted,
    and a file only they refer to is an orphan (the next retention run removes it)."""
    from apps.core.artefacts import sha256_file

    report = StorageReport()
    referenced = set()
    for version in DatasetVersion.objects.select_related("dataset").order_by("dataset__name", "number"):
        if version.purged_at is not None:
            report.purged += 1
            continue
        label = f"{version.dataset.name} v{version.number} ({version.file_path})"
        referenced.add(version.file_path)
        path = artefact_path(version.file_path)
        report.checked += 1
        if not path.exists():
            report.missing.append(label)
            continue
        if sha256_file(path) != version.sha256:
            report.mismatched.append(label)
            continue
        if rematerialise:
            temp = artefact_temp_path("datasets", ".parquet")
            try:
                parquet_rematerialise(path, temp)
                if sha256_file(temp) != version.sha256:
                    report.not_rematerialised.append(label)
            finally:
                temp.unlink(missing_ok=True)
    folder = artefact_path("datasets")
    if folder.exists():
        for path in sorted(folder.iterdir()):
            relative = f"datasets/{path.name}"
            if relative not in referenced and not path.name.startswith(".incoming-"):
                report.orphans.append(relative)
    return report


# -- retention -----------------------------------------------------------------------------------------


@dataclass
class PurgedVersion:
    dataset: str
    number: int
    sha256: str
    retention_days: int
    created_at: datetime


@dataclass
class DatasetPurge:
    """What a retention run did to dataset versions (or would do, in a dry run)."""

    versions: list[PurgedVersion] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files_kept: dict[str, list[str]] = field(default_factory=dict)  # file -> the live versions still using it


def retention_reason(days: int) -> str:
    return f"{days}-day retention"


def _versions_due(now: datetime) -> list[DatasetVersion]:
    due: list[DatasetVersion] = []
    for dataset in Dataset.objects.filter(retention_days__gt=0).order_by("name"):
        cutoff = now - timedelta(days=dataset.retention_days)
        versions = DatasetVersion.objects.filter(dataset=dataset, purged_at__isnull=True, created_at__lt=cutoff)
        due += versions.select_related("dataset").order_by("number")
    return due


def _version_purge(version: DatasetVersion, now: datetime) -> bool:
    """Mark one version purged and audit it, in one transaction; False if another run got there first."""
    dataset = version.dataset
    # The statistics of personal columns hold values from the rows (most frequent values, ranges): they go with
    # the rows. The rest (row count, schema, other columns' statistics) stays, for lineage and model cards.
    personal = {*dataset.personal_columns, dataset.subject_key_column}
    statistics = {name: stats for name, stats in (version.statistics or {}).items() if name not in personal}
    with transaction.atomic():
        changed = DatasetVersion.objects.filter(pk=version.pk, purged_at__isnull=True).update(
            purged_at=now, purge_reason=retention_reason(dataset.retention_days), statistics=statistics
        )
        if changed:
            audit_record(
                actor="system",
                action="dataset_version.purged",
                target=version,
                data={
                    "dataset": dataset.name,
                    "number": version.number,
                    "sha256": version.sha256,
                    "retention_days": dataset.retention_days,
                },
            )
    return bool(changed)


def dataset_versions_purge(*, now: datetime | None = None, dry_run: bool = False) -> DatasetPurge:
    """Purge every dataset version older than its dataset's retention (counted from its `created_at`).

    Each version is marked purged (`purged_at`, `purge_reason`) and audited as `dataset_version.purged` in one
    transaction; the statistics of its personal columns are dropped. The row stays, so the model versions
    trained on it keep their lineage (and still load and serve: they do not need the data); whatever reads its
    rows gets DatasetVersionPurged. Then every file that only purged versions refer to is removed from storage;
    a file another live version shares (same content, same SHA-256) is kept. Removing files after the records
    commit means a crash leaves a file behind, never a live version without its file: the next run removes
    it. Datasets without a retention period are never purged. `dry_run` reports and changes nothing.
    """
    now = now or timezone.now()
    result = DatasetPurge()
    due = _versions_due(now)
    for version in due:
        if dry_run or _version_purge(version, now):
            result.versions.append(
                PurgedVersion(
                    dataset=version.dataset.name,
                    number=version.number,
                    sha256=version.sha256,
                    retention_days=version.dataset.retention_days,
                    created_at=version.created_at,
                )
            )
    live: dict[str, list[str]] = {}
    still_live = DatasetVersion.objects.filter(purged_at__isnull=True).exclude(pk__in=[version.pk for version in due])
    for name, number, file_path in still_live.order_by("dataset__name", "number").values_list(
        "dataset__name", "number", "file_path"
    ):
        live.setdefault(file_path, []).append(f"{name} v{number}")
    purged_files = set(DatasetVersion.objects.filter(purged_at__isnull=False).values_list("file_path", flat=True))
    purged_files |= {version.file_path for version in due}
    # A version ingested from the same bytes while this runs could reuse a file about to go; `dataset_verify`
    # would then report it missing. Ingests and purges of one content at the same moment are not expected.
    for file_path in sorted(purged_files):
        if file_path in live:
            if any(version.file_path == file_path for version in due):
                result.files_kept[file_path] = live[file_path]
        elif artefact_path(file_path).exists():
            if not dry_run:
                artefact_path(file_path).unlink(missing_ok=True)
            result.files_removed.append(file_path)
    return result
