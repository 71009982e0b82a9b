"""Writes for datasets: creation and immutable versions from uploads."""

import tempfile
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from apps.core.artefacts import artefact_temp_path, artefact_write_file, sha256_file
from apps.core.errors import Conflict, InvalidInput, PayloadTooLarge
from apps.data.ingest import IngestError, ingest_csv
from apps.data.models import Dataset, DatasetVersion
from apps.governance.services import acting_user, audit_record


def dataset_create(
    *, name: str, description: str = "", target_column: str = "", subject_key_column: str = "", actor: Any = None
) -> Dataset:
    dataset = Dataset(
        name=name,
        description=description,
        target_column=target_column,
        subject_key_column=subject_key_column,
        created_by=acting_user(actor),
    )
    try:
        dataset.full_clean()
    except ValidationError as exc:
        if "name" in exc.message_dict and Dataset.objects.filter(name=name).exists():
            raise Conflict(
                f"A dataset named {name!r} already exists.",
                extra={"fields": {"name": ["A dataset with this name already exists."]}},
            ) from None
        raise InvalidInput("The dataset is not valid.", extra={"fields": exc.message_dict}) from None
    with transaction.atomic():
        dataset.save()
        audit_record(
            actor=actor,
            action="dataset.created",
            target=dataset,
            data={"name": name, "target_column": target_column, "subject_key_column": subject_key_column},
        )
    return dataset


def _check_declared_columns(dataset: Dataset, schema: list[dict[str, Any]], statistics: dict[str, Any]) -> None:
    names = {column["name"] for column in schema}
    problems = []
    for label, column in (("target column", dataset.target_column), ("subject key", dataset.subject_key_column)):
        if column and column not in names:
            problems.append({"column": column, "message": f"the dataset's {label} {column!r} is not in the file"})
    key = dataset.subject_key_column
    if key and key in names and statistics[key]["missing"]:
        problems.append({"column": key, "message": f"{statistics[key]['missing']} rows have no subject key"})
    if problems:
        raise InvalidInput("The file does not match the dataset's declaration.", extra={"problems": problems})


def dataset_version_create(
    *, dataset: Dataset, source: Path, original_name: str = "", actor: Any = None
) -> DatasetVersion:
    """Ingest a CSV file into a new immutable version.

    The Parquet file is written under its SHA-256 before the row exists; a failed upload raises
    InvalidInput with the rows and columns at fault and leaves neither a row nor a file behind.
    """
    original_sha256 = sha256_file(source)
    temp = artefact_temp_path("datasets", ".parquet")
    try:
        result = ingest_csv(source, temp)
        _check_declared_columns(dataset, result.schema, result.statistics)
        relative, digest = artefact_write_file("datasets", ".parquet", temp)
    except IngestError as exc:
        raise InvalidInput(exc.message, extra={"problems": exc.problems}) from None
    finally:
        temp.unlink(missing_ok=True)
    created_by = acting_user(actor)
    with transaction.atomic():
        locked = Dataset.objects.select_for_update().get(pk=dataset.pk)
        number = (locked.versions.aggregate(latest=Max("number"))["latest"] or 0) + 1
        version = DatasetVersion.objects.create(
            dataset=locked,
            number=number,
            file_path=relative,
            sha256=digest,
            original_name=original_name[:255],
            original_sha256=original_sha256,
            row_count=result.row_count,
            schema=result.schema,
            statistics=result.statistics,
            created_by=created_by,
        )
        audit_record(
            actor=actor,
            action="dataset_version.created",
            target=version,
            data={"dataset": dataset.name, "number": number, "sha256": digest, "rows": result.row_count},
        )
    return version


def dataset_version_create_from_upload(*, dataset: Dataset, upload: Any, actor: Any = None) -> DatasetVersion:
    """Spool an uploaded file (anything with .chunks() and .name) to disk and ingest it."""
    from django.conf import settings

    if upload.size is not None and upload.size > settings.FARO_UPLOAD_MAX_BYTES:
        raise PayloadTooLarge(f"The file is {upload.size} bytes; the limit is {settings.FARO_UPLOAD_MAX_BYTES}.")
    name = getattr(upload, "name", "") or ""
    if not name.lower().endswith(".csv"):
        raise InvalidInput(
            f"{name or 'The file'} is not a .csv file; upload a CSV with a header row.",
            extra={"fields": {"file": ["Expected a .csv file."]}},
        )
    with tempfile.NamedTemporaryFile(suffix=".csv") as spool:
        for chunk in upload.chunks():
            spool.write(chunk)
        spool.flush()
        return dataset_version_create(dataset=dataset, source=Path(spool.name), original_name=name, actor=actor)
