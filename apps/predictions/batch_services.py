"""Batch scoring jobs: queued with everything knowable checked up front, run by a worker under a lease in
chunks (`apps.predictions.batch`), cancelled, reaped when their worker died, and downloaded. Every change
is audited in its own transaction; work is enqueued only once that transaction commits.

The scores are not written to the decision log row by row: the job is the record (who scored which input
with which version, and the SHA-256 of the result), and the result file is the decisions.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from apps.core.artefacts import (
    artefact_path,
    artefact_temp_path,
    artefact_verified_path,
    artefact_write_file,
    upload_stage,
)
from apps.core.errors import Conflict, FaroError, InvalidInput, NotFound
from apps.core.jobs import Lease, job_start, jobs_reap_and_requeue
from apps.data.models import DatasetVersion
from apps.data.selectors import dataset_version_live_check, dataset_version_path
from apps.governance.restrictions import restriction_cache
from apps.governance.services import acting_user, actor_principal, audit_record
from apps.predictions import batch
from apps.predictions.metrics import BATCH_ROWS
from apps.predictions.models import BatchScoringJob
from apps.registry.models import ModelVersion

logger = logging.getLogger(__name__)

INPUT_KIND = "batch-inputs"
OUTPUT_KIND = "batch-outputs"
CONTENT_TYPES = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}
# How often the rows done are written while a job runs (the lease is renewed at its own pace).
ROWS_DONE_INTERVAL_SECONDS = 1.0
# For an upload, reading it into Parquet is this share of the progress bar; scoring is the rest.
UPLOAD_READ_SHARE = 0.2


# -- reads ----------------------------------------------------------------------------------------------


def batch_job_list() -> QuerySet[BatchScoringJob]:
    return BatchScoringJob.objects.select_related("registered_model", "model_version", "dataset_version__dataset")


def batch_job_get(*, job_id: int) -> BatchScoringJob:
    job = batch_job_list().filter(pk=job_id).first()
    if job is None:
        raise NotFound(f"No batch scoring job {job_id}.")
    return job


# -- create ---------------------------------------------------------------------------------------------


def _refuse(fields: dict[str, list[str]]) -> None:
    if fields:
        first = next(iter(fields.items()))
        raise InvalidInput(f"The batch job is not valid: {first[0]}: {first[1][0]}", extra={"fields": fields})


def _version_problems(version: ModelVersion) -> list[str]:
    """Why a version cannot be scored, if it cannot: rejected, its feature set changed, its file is gone."""
    from apps.registry.scoring import version_pipeline

    if version.status == ModelVersion.Status.REJECTED:
        return [f"{version} was rejected; a rejected version is not scored."]
    try:
        version_pipeline(version)
    except FaroError as exc:
        return [exc.message]
    if not artefact_path(version.artefact_path).exists():
        return [f"The model file of {version} is missing from storage."]
    return []


def _input_problems(version: ModelVersion, schema: Any = None, columns: list[str] | None = None) -> list[str]:
    """The input's columns against the version's inputs: each missing column, or one that holds values the
    model cannot read (with an arrow `schema`); from bare column names only what is missing."""
    inputs = (version.signature or {}).get("inputs") or []
    if schema is None:
        present = set(columns or [])
        missing = [item["name"] for item in inputs if item["name"] not in present]
        return [f"Lacks the model's inputs: {', '.join(missing)}."] if missing else []
    try:
        batch.plan(
            schema,
            signature=inputs,
            subject_key=(version.feature_state or {}).get("subject_key", ""),
            task_type=version.task_type,
            labels=version.labels,
            explain=False,
        )
    except batch.BatchInputError as exc:
        return [f"{problem['column']}: {problem['message']}" for problem in exc.problems] or [exc.message]
    return []


def _upload_problems(version: ModelVersion, path: Path, name: str) -> list[str]:
    """What the start of an upload tells: its format (by name and content) and its columns."""
    import pyarrow.parquet as pq

    try:
        columns = batch.peek_columns(path, name)
    except batch.BatchInputError as exc:
        return [exc.message]
    if not columns:
        return []  # not told cheaply: the worker reads the file and fails the job with the reason
    with open(path, "rb") as handle:
        is_parquet = handle.read(4) == b"PAR1"
    try:
        schema = pq.read_schema(path) if is_parquet else None
    except (OSError, ValueError):
        schema = None  # damaged: the worker fails the job with the reader's reason
    return _input_problems(version, schema=schema, columns=columns)


def batch_job_create(
    *,
    model_version: ModelVersion,
    dataset_version: DatasetVersion | None = None,
    upload: Any = None,
    output_format: str = BatchScoringJob.Format.PARQUET,
    explain: bool = False,
    actor: Any = None,
) -> BatchScoringJob:
    """Queue a batch scoring job of a dataset version or an uploaded file (exactly one); a worker starts it
    once this transaction commits.

    Refused up front, naming the field: a rejected or unservable version, neither or both inputs, an
    unknown output format, a file that is not CSV, Parquet or JSON Lines, an input without the model's
    inputs. An upload is kept under batch-inputs/ until the job ends.
    """
    fields: dict[str, list[str]] = {}
    if output_format not in BatchScoringJob.Format.values:
        fields["output_format"] = [f"Choose one of: {', '.join(BatchScoringJob.Format.values)}."]
    version_problems = _version_problems(model_version)
    if version_problems:
        fields["version"] = version_problems
    if dataset_version is None and upload is None:
        fields["dataset"] = ["Give a dataset (and optionally its version) or a file to score."]
        fields["file"] = ["Give a file or a dataset to score."]
    elif dataset_version is not None and upload is not None:
        fields["file"] = ["Give a file or a dataset, not both."]
    elif dataset_version is not None and not version_problems:
        import pyarrow.parquet as pq

        dataset_version_live_check(version=dataset_version)
        try:
            schema = pq.read_schema(artefact_path(dataset_version.file_path))
        except (OSError, ValueError):  # missing, or not Parquet any more (arrow's errors are ValueErrors)
            fields["dataset_version"] = [f"The file of {dataset_version} is missing or damaged in storage."]
        else:
            problems = _input_problems(model_version, schema=schema)
            if problems:
                fields["dataset_version"] = [f"{dataset_version}: {problem}" for problem in problems]
    _refuse(fields)

    staged = digest = ""
    size = 0
    if upload is not None:
        staged, digest, size = upload_stage(upload, kind=INPUT_KIND)
        problems = _upload_problems(model_version, artefact_path(staged), upload.name or "")
        if problems:
            artefact_path(staged).unlink(missing_ok=True)
            _refuse({"file": problems})
    from apps.predictions.batch_tasks import batch_job_run as batch_job_run_task

    try:
        with transaction.atomic():
            job = BatchScoringJob.objects.create(
                registered_model=model_version.registered_model,
                model_version=model_version,
                dataset_version=dataset_version,
                input_path=staged,
                input_name=((upload.name or "upload") if upload is not None else "")[:255],
                output_format=output_format,
                explain=explain,
                created_by=acting_user(actor),
                requested_by=actor_principal(actor),
            )
            audit_record(
                actor=actor,
                action="batch_job.created",
                target=job,
                data={
                    "model": model_version.registered_model.name,
                    "version": model_version.version,
                    "dataset_version": dataset_version.pk if dataset_version is not None else None,
                    "input_name": job.input_name,
                    "input_sha256": digest,
                    "input_bytes": size,
                    "output_format": output_format,
                    "explain": explain,
                },
            )
            transaction.on_commit(lambda: batch_job_run_task.delay(job.pk))
    except BaseException:
        if staged:
            artefact_path(staged).unlink(missing_ok=True)
        raise
    return job


def batch_job_create_from_refs(
    *,
    model: str,
    version: int | None = None,
    alias: str | None = None,
    dataset: str | None = None,
    dataset_version: int | None = None,
    upload: Any = None,
    output_format: str = BatchScoringJob.Format.PARQUET,
    explain: bool = False,
    actor: Any = None,
) -> BatchScoringJob:
    """`batch_job_create` from names, as the API and the page take them: the model and a version number or an
    alias (default: the champion), a dataset and a version number (default: its latest). What does not
    exist is refused naming its field (400), with every other problem found."""
    from apps.data.selectors import dataset_get, dataset_version_get
    from apps.registry.models import RegisteredModel
    from apps.registry.selectors import model_version_by_number, model_version_for_alias

    fields: dict[str, list[str]] = {}
    found_version = None
    if version is not None and alias:
        fields["alias"] = ["Give a version or an alias, not both."]
    elif not RegisteredModel.objects.filter(name=model).exists():
        fields["model"] = [f"No registered model named {model!r}."]
    else:
        try:
            found_version = (
                model_version_by_number(model_name=model, version=version)
                if version is not None
                else model_version_for_alias(model_name=model, alias=alias or "champion")
            )
        except NotFound as exc:
            fields["version" if version is not None else "alias"] = [exc.message]
    found_dataset_version = None
    if dataset:
        try:
            found_dataset = dataset_get(name=dataset)
        except NotFound as exc:
            fields["dataset"] = [exc.message]
        else:
            try:
                found_dataset_version = dataset_version_get(dataset=found_dataset, number=dataset_version)
            except NotFound as exc:
                fields["dataset_version" if dataset_version is not None else "dataset"] = [exc.message]
    elif dataset_version is not None:
        fields["dataset"] = ["Name the dataset whose version to score."]
    _refuse(fields)
    return batch_job_create(
        model_version=found_version,
        dataset_version=found_dataset_version,
        upload=upload,
        output_format=output_format,
        explain=explain,
        actor=actor,
    )


# -- cancel and reap ------------------------------------------------------------------------------------


def _discard_input(job_id: int) -> None:
    """An upload is not kept once its job has ended."""
    relative = BatchScoringJob.objects.filter(pk=job_id).values_list("input_path", flat=True).first()
    if relative:
        artefact_path(relative).unlink(missing_ok=True)


def batch_job_cancel(*, job: BatchScoringJob, actor: Any = None) -> BatchScoringJob:
    """Cancel a job: a queued one at once; a running one stops after the chunk it is scoring (within seconds).
    An ended job cannot be cancelled (409)."""
    now = timezone.now()
    with transaction.atomic():
        if BatchScoringJob.objects.filter(pk=job.pk, status=BatchScoringJob.Status.QUEUED).update(
            status=BatchScoringJob.Status.CANCELLED, cancel_requested_at=now, finished_at=now, error="Cancelled."
        ):
            audit_record(actor=actor, action="batch_job.cancelled", target=job)
            transaction.on_commit(lambda: _discard_input(job.pk))
        elif BatchScoringJob.objects.filter(
            pk=job.pk, status=BatchScoringJob.Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now):
            audit_record(actor=actor, action="batch_job.cancel_requested", target=job)
        elif not BatchScoringJob.objects.filter(pk=job.pk, status=BatchScoringJob.Status.RUNNING).exists():
            job.refresh_from_db()
            raise Conflict(f"Batch scoring job {job.pk} has already ended ({job.get_status_display().lower()}).")
    job.refresh_from_db()
    return job


def batch_jobs_reap(*, now: datetime | None = None) -> list[int]:
    """Take back batch jobs whose worker died: queue them again, or fail them after the last attempt."""
    from apps.predictions.batch_tasks import batch_job_run as batch_job_run_task

    return jobs_reap_and_requeue(
        BatchScoringJob,
        audit=audit_record,
        action_prefix="batch_job",
        requeue=batch_job_run_task.delay,
        on_failed=_discard_input,
        now=now,
    )


# -- run ------------------------------------------------------------------------------------------------


def _job_end(lease: Lease, job_id: int, status: str, message: str, action: str, problems: list | None = None) -> bool:
    with transaction.atomic():
        ended = lease.finish(status=status, error=message, **({"problems": problems} if problems is not None else {}))
        if ended:
            audit_record(
                actor="system", action=action, target=BatchScoringJob(pk=job_id), data={"error": message[:500]}
            )
    if ended:
        _discard_input(job_id)
    return ended


def batch_job_run(*, job_id: int) -> BatchScoringJob | None:
    """Run one attempt of a queued job: claim it under a lease, score the input chunk by chunk into a
    temporary file, then store the result under its SHA-256 and end the job.

    A job that is not QUEUED is left alone (a duplicate delivery, or it ended). The lease is renewed after
    every chunk; a cancel request or the reaper taking the job back stops the attempt at the next chunk and
    discards its partial output. An input that cannot be scored fails the job with the reason; rows that
    cannot be scored are counted (and the first listed) in `problems`, with empty scores in the output.
    """
    lease = job_start(BatchScoringJob, job_id, audit=audit_record, action="batch_job.started")
    if lease is None:
        logger.info("Batch scoring job %s is not queued; nothing to do", job_id)
        return None
    job = BatchScoringJob.objects.select_related(
        "registered_model",
        "model_version__registered_model",
        "model_version__dataset_version__dataset",
        "dataset_version__dataset",
    ).get(pk=job_id)
    mine = BatchScoringJob.objects.filter(pk=job_id, status=BatchScoringJob.Status.RUNNING, attempts=lease.attempt)
    suffix = f".{job.output_format}"
    target = artefact_temp_path(OUTPUT_KIND, suffix)
    converted: Path | None = None
    try:
        from apps.predictions.loader import model_cache

        loaded = model_cache.load(job.model_version)
        share = 0.0
        if job.dataset_version is not None:
            source = dataset_version_path(version=job.dataset_version)
        else:
            share = UPLOAD_READ_SHARE
            uploaded = artefact_path(job.input_path)
            if not job.input_path or not uploaded.exists():
                raise batch.BatchInputError("The uploaded file is no longer in storage; upload it again.")
            converted = artefact_temp_path(INPUT_KIND, ".parquet")

            def reading(fraction: float) -> None:
                if not lease.renew(progress=fraction * share):
                    raise batch.BatchStopped()

            batch.upload_to_parquet(uploaded, job.input_name, converted, on_progress=reading)
            source = converted
        total = batch.input_rows(source)
        mine.update(rows_total=total, rows_done=0, problems=[], problem_count=0)
        last = [time.monotonic()]

        def on_chunk(rows_done: int) -> bool:
            now = time.monotonic()
            if now - last[0] >= ROWS_DONE_INTERVAL_SECONDS:
                last[0] = now
                mine.update(rows_done=rows_done)
            return lease.renew(progress=share + (1 - share) * rows_done / max(total, 1))

        result = batch.score_file(
            loaded,
            source,
            target,
            output_format=job.output_format,
            explain=job.explain,
            chunk_rows=int(settings.FARO_BATCH_CHUNK_ROWS),
            workers=int(settings.FARO_BATCH_THREADS),
            on_chunk=on_chunk,
            refused=restriction_cache.column_checker(),
        )
        lease.renew(force=True)
        relative, digest = artefact_write_file(OUTPUT_KIND, suffix, target)
    except batch.BatchStopped:
        target.unlink(missing_ok=True)
        if BatchScoringJob.objects.filter(pk=job_id, cancel_requested_at__isnull=False).exists():
            _job_end(lease, job_id, BatchScoringJob.Status.CANCELLED, "Cancelled.", "batch_job.cancelled")
        return None
    except batch.BatchInputError as exc:
        target.unlink(missing_ok=True)
        _job_end(lease, job_id, BatchScoringJob.Status.FAILED, exc.message, "batch_job.failed", exc.problems)
        return None
    except FaroError as exc:
        target.unlink(missing_ok=True)
        _job_end(lease, job_id, BatchScoringJob.Status.FAILED, exc.message, "batch_job.failed")
        return None
    except Exception as exc:
        target.unlink(missing_ok=True)
        logger.exception("Batch scoring job %s failed", job_id)
        message = f"Batch scoring failed unexpectedly ({type(exc).__name__}): {exc}"
        _job_end(lease, job_id, BatchScoringJob.Status.FAILED, message, "batch_job.failed")
        return None
    finally:
        if converted is not None:
            converted.unlink(missing_ok=True)

    with transaction.atomic():
        if not lease.finish(
            status=BatchScoringJob.Status.SUCCEEDED,
            progress=1.0,
            rows_total=result.rows,
            rows_done=result.rows,
            problems=result.problems,
            problem_count=result.problem_count,
            output_path=relative,
            output_sha256=digest,
            error="",
        ):
            logger.info("Batch scoring job %s was taken back or ended elsewhere; its output is not recorded", job_id)
            return None
        audit_record(
            actor="system",
            action="batch_job.succeeded",
            target=job,
            data={
                "rows": result.rows,
                "scored": result.scored,
                "problem_count": result.problem_count,
                "output_sha256": digest,
                "output_format": job.output_format,
            },
        )
    _discard_input(job_id)
    BATCH_ROWS.labels(model=job.registered_model.name, version=str(job.model_version.version)).inc(result.scored)
    return batch_job_get(job_id=job_id)


# -- download -------------------------------------------------------------------------------------------


def batch_job_download(*, job: BatchScoringJob, actor: Any = None) -> tuple[Path, str, str]:
    """The job's result, verified against its SHA-256: (path, file name, content type). Audited: the file
    holds a decision about every row."""
    if job.status != BatchScoringJob.Status.SUCCEEDED or not job.output_path:
        raise Conflict(
            f"Batch scoring job {job.pk} has no result to download: it is {job.get_status_display().lower()}."
        )
    path = artefact_verified_path(job.output_path, job.output_sha256)
    with transaction.atomic():
        audit_record(
            actor=actor,
            action="batch_job.downloaded",
            target=job,
            data={"output_sha256": job.output_sha256, "output_format": job.output_format},
        )
    name = f"{job.registered_model.name}-v{job.model_version.version}-batch-{job.pk}.{job.output_format}"
    return path, name, CONTENT_TYPES[job.output_format]
