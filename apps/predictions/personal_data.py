"""What the predictions app holds about a data subject, for access requests and erasure.

- The decision log: every `PredictionRecord` whose `subject_id` is the subject, on every route (shadow included),
  with the feedback (`actual`) stored on the same rows.
- Batch scoring outputs: the rows of a succeeded job's Parquet or CSV result whose id column is the model's subject
  key (the input had that column; otherwise rows are numbered and say nothing of whom they are about).

Erasing a subject from a batch output writes the file again without their rows, records the new path, SHA-256 (what
downloads verify) and row counts with the job in one transaction, then removes the old file unless another job
shares it. The file is rewritten record by record, so the rows that stay are byte for byte what they were: Parquet
row group by row group with the writer the job used, CSV by copying the other records' text.

Uploaded batch inputs are not kept: a job's upload is removed when the job ends (`batch_services._discard_input`).
One that outlived its ended job (the worker stopped between the two) is removed by an erasure too.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.db import transaction

from apps.core.artefacts import artefact_path, artefact_temp_path, artefact_write_file, sha256_file
from apps.core.personal_data import StepResult, StepState, Subject, redact, rows_digest
from apps.governance.services import audit_record
from apps.predictions.batch_services import OUTPUT_KIND
from apps.predictions.models import BatchScoringJob, PredictionRecord

# -- the decision log ---------------------------------------------------------------------------------------------


def _decision_subject_ids(subject: Subject) -> list[str]:
    """The subject keys in the log that are this subject: the key itself, or those matching its digest."""
    if subject.value is not None:
        return [subject.value] if PredictionRecord.objects.filter(subject_id=subject.value).exists() else []
    stored = PredictionRecord.objects.exclude(subject_id="").order_by().values_list("subject_id", flat=True)
    return subject.pick(stored.distinct().iterator(chunk_size=10_000))


def _decision_keys(records: Any) -> list[str]:
    return [
        f"{request_id}#{row}#{version_id}"
        for request_id, row, version_id in records.values_list("request_id", "row", "model_version_id")
    ]


class DecisionLog:
    store = "predictions.decision_log"
    label = "Decision log (predictions, with their feedback)"
    order = 30

    def targets(self, subject: Subject) -> list[str]:
        return ["all"]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        """Delete the subject's decisions; the result is saved in the same transaction, so a re-run after the
        commit reports it again."""
        if "result" in state.data:
            return StepResult(**state.data["result"])
        ids = _decision_subject_ids(subject)
        with transaction.atomic():
            records = PredictionRecord.objects.filter(subject_id__in=ids)
            before = _decision_keys(records)
            feedback = records.exclude(actual=None).count()
            deleted, _ = records.delete()
            result = {
                "count": deleted,
                "before": rows_digest(before),
                "after": rows_digest(_decision_keys(PredictionRecord.objects.filter(subject_id__in=ids))),
                "detail": {"decisions": deleted, "with_feedback": feedback},
            }
            state.save({"result": result})
        return StepResult(**result)

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        records = (
            PredictionRecord.objects.filter(subject_id__in=_decision_subject_ids(subject))
            .select_related("model_version__registered_model")
            .order_by("created_at", "request_id", "row", "model_version_id")
        )
        return [
            {
                "request_id": str(record.request_id),
                "row": record.row,
                "created_at": record.created_at.isoformat(),
                "model": record.model_version.registered_model.name,
                "model_version": record.model_version.version,
                "route": record.route,
                "channel": record.channel,
                "inputs": record.inputs,
                "output": record.output,
                "explanation": record.explanation,
                "actual": record.actual,
                "actual_at": record.actual_at.isoformat() if record.actual_at else None,
            }
            for record in records
        ]


# -- batch outputs: reading -------------------------------------------------------------------------------------

PARQUET, CSV = BatchScoringJob.Format.PARQUET, BatchScoringJob.Format.CSV
_RISKY = ("=", "+", "-", "@")  # what batch._neutralised prefixes with a quote in a CSV text cell


def _csv_records(path: Path) -> Iterator[bytes]:
    """The records of a CSV file as written by arrow (header first), each with its line ending: a newline inside
    a quoted value does not end a record (quotes inside a value are doubled, so their count stays even)."""
    with open(path, "rb") as handle:
        pending, quotes = b"", 0
        for line in handle:
            pending += line
            quotes += line.count(b'"')
            if quotes % 2 == 0:
                yield pending
                pending, quotes = b"", 0
        if pending:
            yield pending


def _csv_fields(record: bytes) -> list[tuple[str, bool]]:
    """A record's values, each with whether it was quoted: arrow quotes every text value and no number, and
    writes a missing value as nothing."""
    text = record.decode("utf-8")
    if text.endswith("\n"):
        text = text[:-1]
    if text.endswith("\r"):
        text = text[:-1]
    fields: list[tuple[str, bool]] = []
    position, end = 0, len(text)
    while True:
        if position < end and text[position] == '"':
            parts, start = [], position + 1
            while True:
                close = text.index('"', start)
                parts.append(text[start:close])
                if text[close + 1 : close + 2] == '"':
                    parts.append('"')
                    start = close + 2
                else:
                    position = close + 1
                    break
            fields.append(("".join(parts), True))
        else:
            comma = text.find(",", position)
            comma = end if comma < 0 else comma
            fields.append((text[position:comma], False))
            position = comma
        if position >= end:
            return fields
        position += 1


def _csv_originals(text: str, quoted: bool) -> list[str]:
    """The values a CSV id cell can have been written from: text starting with =, +, - or @ was given a leading
    quote (which text that already started with a quote keeps as it was)."""
    if quoted and text[:1] == "'" and text[1:2] in _RISKY:
        return [text[1:], text]
    return [text]


def _csv_value(text: str, quoted: bool) -> Any:
    if quoted:
        return text
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def _first_column(path: Path, output_format: str) -> str:
    if output_format == PARQUET:
        import pyarrow.parquet as pq

        return pq.read_schema(path).names[0]
    records = _csv_records(path)
    try:
        header = next(records, b"")
    finally:
        records.close()
    return _csv_fields(header)[0][0] if header else ""


def _id_column(job: BatchScoringJob) -> str | None:
    """The output's id column when it holds the model's subject key (batch.plan names it the key, or input_<key>
    when an output column has that name), else None: the rows are numbered."""
    key = (job.model_version.feature_state or {}).get("subject_key", "")
    if not key or not job.output_path:
        return None
    path = artefact_path(job.output_path)
    if not path.exists():
        return None
    first = _first_column(path, job.output_format)
    return first if first in (key, f"input_{key}") else None


class _Found:
    """Where a subject's rows are in an output: their 0-based positions, how many of them were not scored (a
    problem row), the subject keys as the file holds them, and the rows themselves when asked for."""

    def __init__(self) -> None:
        self.positions: list[int] = []
        self.unscored = 0
        self.keys: set[str] = set()
        self.rows: list[dict[str, Any]] = []


def _find_parquet(path: Path, subject: Subject, *, rows: bool) -> _Found:
    import numpy as np
    import pyarrow.parquet as pq

    found = _Found()
    parquet = pq.ParquetFile(path)
    names = parquet.schema_arrow.names
    offset = 0
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.read_row_group(index, columns=None if rows else names[:2])
        mask = subject.mask(group.column(0))
        matched = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if len(matched):
            picked = group.filter(mask)
            found.positions += [offset + int(position) for position in matched]
            found.unscored += picked.column(1).null_count
            found.keys.update(str(key) for key in picked.column(0).to_pylist())
            if rows:
                found.rows += picked.to_pylist()
        offset += group.num_rows
    return found


def _find_csv(path: Path, subject: Subject, *, rows: bool) -> _Found:
    records = _csv_records(path)
    header = [name for name, _ in _csv_fields(next(records, b""))]
    originals: dict[str, set[tuple[str, bool]]] = {}
    for record in records:
        text, quoted = _csv_fields(record)[0]
        for original in _csv_originals(text, quoted):
            originals.setdefault(original, set()).add((text, quoted))
    picked = subject.pick(originals)
    cells = {cell for original in picked for cell in originals[original]}
    found = _Found()
    if not cells:
        return found
    found.keys = set(picked)
    records = _csv_records(path)
    next(records, None)
    for position, record in enumerate(records):
        fields = _csv_fields(record)
        if fields[0] not in cells:
            continue
        found.positions.append(position)
        found.unscored += len(fields) > 1 and fields[1] == ("", False)
        if rows:
            found.rows.append({name: _csv_value(*cell) for name, cell in zip(header, fields, strict=False)})
    return found


def _find(job: BatchScoringJob, subject: Subject, *, rows: bool = False) -> _Found:
    path = artefact_path(job.output_path)
    return (_find_parquet if job.output_format == PARQUET else _find_csv)(path, subject, rows=rows)


# -- batch outputs: rewriting -----------------------------------------------------------------------------------


def _rewrite(job: BatchScoringJob, positions: list[int]) -> tuple[str, str, int]:
    """The output written again without the rows at `positions`; returns (relative path, sha256, rows kept)."""
    source = artefact_path(job.output_path)
    suffix = f".{job.output_format}"
    temp = artefact_temp_path(OUTPUT_KIND, suffix)
    gone = set(positions)
    kept = 0
    try:
        if job.output_format == PARQUET:
            kept = _rewrite_parquet(source, temp, gone)
        else:
            with open(temp, "wb") as out:
                records = _csv_records(source)
                out.write(next(records, b""))
                for position, record in enumerate(records):
                    if position not in gone:
                        out.write(record)
                        kept += 1
        relative, digest = artefact_write_file(OUTPUT_KIND, suffix, temp)
    finally:
        temp.unlink(missing_ok=True)
    return relative, digest, kept


def _rewrite_parquet(source: Path, target: Path, gone: set[int]) -> int:
    """Row group by row group, with the writer (and so the encodings) the job wrote it with."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from apps.predictions.batch import _Writer

    parquet = pq.ParquetFile(source)
    writer = _Writer(target, parquet.schema_arrow, PARQUET)
    removed = np.fromiter(sorted(gone), dtype=np.int64, count=len(gone))
    kept = offset = 0
    try:
        for index in range(parquet.metadata.num_row_groups):
            group = parquet.read_row_group(index)
            numbers = np.arange(offset, offset + group.num_rows, dtype=np.int64)
            offset += group.num_rows
            group = group.filter(pa.array(~np.isin(numbers, removed)))
            if group.num_rows:
                writer.write(group)
                kept += group.num_rows
    finally:
        writer.close()
    return kept


def _remove_unshared_output(relative: str) -> None:
    if relative and not BatchScoringJob.objects.filter(output_path=relative).exists():
        artefact_path(relative).unlink(missing_ok=True)


def _problems_without(problems: Any, positions: list[int], secrets: set[str]) -> tuple[list[Any], int]:
    """The job's listed problems without those of the subject's rows, and with the subject's key replaced in any
    other message (only messages: a row number equal to a numeric key is not the key); returns them and how many
    entries were dropped or changed."""
    gone = set(positions)
    listed = problems if isinstance(problems, list) else []
    kept = [dict(p) if isinstance(p, dict) else p for p in listed if not (isinstance(p, dict) and p.get("row") in gone)]
    changed = len(listed) - len(kept)
    for problem in kept:
        if isinstance(problem, dict) and isinstance(problem.get("message"), str):
            for secret in sorted(secrets):
                problem["message"], count = redact(problem["message"], secret)
                changed += count
    return kept, changed


# -- batch outputs: the handler ---------------------------------------------------------------------------------


def _output_jobs() -> Any:
    return (
        BatchScoringJob.objects.filter(status=BatchScoringJob.Status.SUCCEEDED)
        .exclude(output_path="")
        .select_related("registered_model", "model_version")
        .order_by("pk")
    )


def _leftover_inputs() -> list[BatchScoringJob]:
    """Ended jobs whose upload is still in storage: it should have been removed when the job ended."""
    ended = (BatchScoringJob.Status.SUCCEEDED, BatchScoringJob.Status.FAILED, BatchScoringJob.Status.CANCELLED)
    jobs = BatchScoringJob.objects.filter(status__in=ended).exclude(input_path="").order_by("pk")
    return [job for job in jobs if artefact_path(job.input_path).exists()]


INPUT_TARGET = "input:"


class BatchOutputs:
    store = "predictions.batch_output"
    label = "Batch scoring results (Parquet and CSV files)"
    order = 40

    def targets(self, subject: Subject) -> list[str]:
        outputs = [str(job.pk) for job in _output_jobs() if _id_column(job)]
        return outputs + [f"{INPUT_TARGET}{job.pk}" for job in _leftover_inputs()]

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult:
        done = state.data.get("result")
        if target.startswith(INPUT_TARGET):
            return self._erase_input(int(target.removeprefix(INPUT_TARGET)), state)
        if done is not None:  # committed before an interruption: only the old file may be left to remove
            _remove_unshared_output(state.data["old_path"])
            return StepResult(**done)
        job = _output_jobs().filter(pk=int(target)).first()
        if job is None or _id_column(job) is None:
            return StepResult(count=0, detail={"job": int(target), "skipped": "no result holding subject keys"})
        found = _find(job, subject)
        secrets = found.keys | ({subject.value} if subject.value is not None else set())
        problems, changed = _problems_without(job.problems, found.positions, secrets)
        if not found.positions and not changed:
            return StepResult(count=0, before=job.output_sha256, after=job.output_sha256, detail={"job": job.pk})
        removed = len(found.positions)
        if removed:
            relative, digest, kept = _rewrite(job, found.positions)
        else:  # only the listed problems mention the subject
            relative, digest, kept = job.output_path, job.output_sha256, job.rows_done
        result = {
            "count": removed,
            "before": job.output_sha256,
            "after": digest,
            "detail": {"job": job.pk, "rows": removed, "problems_changed": changed},
        }
        with transaction.atomic():
            locked = BatchScoringJob.objects.select_for_update().get(pk=job.pk)
            if locked.output_sha256 != job.output_sha256:  # rewritten meanwhile by another runner: start again
                locked = None
            else:
                old_path = locked.output_path
                BatchScoringJob.objects.filter(pk=job.pk).update(
                    output_path=relative,
                    output_sha256=digest,
                    rows_total=max(locked.rows_total - removed, 0),
                    rows_done=kept,
                    problems=problems,
                    problem_count=max(locked.problem_count - found.unscored, 0),
                )
                audit_record(
                    actor="system",
                    action="batch_job.rows_erased",
                    target=locked,
                    data={"rows": removed, "before": job.output_sha256, "after": digest, "subject": subject.ref},
                )
                state.save({"result": result, "old_path": old_path if old_path != relative else ""})
        if locked is None:
            if relative != job.output_path:
                _remove_unshared_output(relative)
            return self.erase(subject, target, state)
        if old_path != relative:
            _remove_unshared_output(old_path)
        return StepResult(**result)

    def _erase_input(self, job_id: int, state: StepState) -> StepResult:
        """An upload that outlived its ended job, removed as its job's end would have removed it. The result is
        saved before the removal, so a re-run after it reports the same."""
        saved = state.data
        if "result" not in saved:
            job = BatchScoringJob.objects.filter(pk=job_id).first()
            path = artefact_path(job.input_path) if job is not None and job.input_path else None
            if job is None or not job.is_finished or path is None or not path.exists():
                return StepResult(count=0, detail={"job": job_id, "skipped": "no leftover upload"})
            saved = {
                "result": {
                    "count": 1,
                    "before": sha256_file(path),
                    "after": "",
                    "detail": {"job": job_id, "leftover_upload_removed": True},
                },
                "input_path": job.input_path,
            }
            state.save(saved)
        artefact_path(saved["input_path"]).unlink(missing_ok=True)
        return StepResult(**saved["result"])

    def export(self, subject: Subject) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for job in _output_jobs():
            if _id_column(job) is None:
                continue
            rows += [
                {
                    "job": job.pk,
                    "model": job.registered_model.name,
                    "model_version": job.model_version.version,
                    "finished_at": job.finished_at.isoformat() if job.finished_at else None,
                    **row,
                }
                for row in _find(job, subject, rows=True).rows
            ]
        return rows
