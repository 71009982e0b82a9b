"""Writes for feature sets: a definition is validated against its dataset's columns before it is stored."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max

from apps.core.errors import Conflict, InvalidInput
from apps.data.models import Dataset
from apps.features.models import FeatureSet, FeatureSetVersion
from apps.features.pipeline import definition_hash, sources_of, validate_definition
from apps.governance.services import acting_user, audit_record


def dataset_schema(dataset: Dataset) -> dict[str, str]:
    """Column -> logical type of the dataset's latest version."""
    latest = dataset.versions.order_by("-number").first()
    if latest is None:
        raise InvalidInput(
            f"Dataset {dataset.name!r} has no version yet; upload data before defining features.",
            extra={"fields": {"dataset": ["No data to check the features against."]}},
        )
    return {column["name"]: column["type"] for column in latest.schema}


def feature_definition_check(dataset: Dataset, definition: Any) -> list[dict[str, Any]]:
    """The definition, if it fits the dataset's latest columns; InvalidInput naming each problem otherwise."""
    problems = validate_definition(definition, dataset_schema(dataset))
    if problems:
        raise InvalidInput(f"{len(problems)} problem(s) in the feature set.", extra={"problems": problems})
    return definition


def feature_set_create(
    *, name: str, dataset: Dataset, definition: Any, description: str = "", actor: Any = None
) -> FeatureSet:
    """A feature set and its first version; the definition must fit the dataset's latest columns."""
    feature_set = FeatureSet(name=name, description=description, dataset=dataset, created_by=acting_user(actor))
    try:
        feature_set.full_clean()
    except ValidationError as exc:
        if FeatureSet.objects.filter(name=name).exists():
            raise Conflict(f"A feature set named {name!r} already exists.") from None
        raise InvalidInput("The feature set is not valid.", extra={"fields": exc.message_dict}) from None
    feature_definition_check(dataset, definition)
    with transaction.atomic():
        feature_set.save()
        audit_record(
            actor=actor, action="feature_set.created", target=feature_set, data={"name": name, "dataset": dataset.name}
        )
        feature_set_version_create(feature_set=feature_set, definition=definition, actor=actor)
    return feature_set


def feature_set_version_create(*, feature_set: FeatureSet, definition: Any, actor: Any = None) -> FeatureSetVersion:
    """A new immutable version; the same definition as the latest one is refused as a no-op."""
    feature_definition_check(feature_set.dataset, definition)
    digest = definition_hash(definition)
    with transaction.atomic():
        locked = FeatureSet.objects.select_for_update().get(pk=feature_set.pk)
        latest = locked.versions.order_by("-number").first()
        if latest is not None and latest.definition_hash == digest:
            raise Conflict(f"Version {latest.number} of {locked.name} already has this definition.")
        number = (locked.versions.aggregate(latest=Max("number"))["latest"] or 0) + 1
        version = FeatureSetVersion.objects.create(
            feature_set=locked,
            number=number,
            definition=definition,
            definition_hash=digest,
            created_by=acting_user(actor),
        )
        audit_record(
            actor=actor,
            action="feature_set_version.created",
            target=version,
            data={"feature_set": locked.name, "number": number, "definition_hash": digest},
        )
    return version


def feature_tags(version: FeatureSetVersion) -> dict[str, list[str]]:
    """Each feature's personal-data tags: the union of its source columns' tags."""
    tags = version.feature_set.dataset.column_tags or {}
    return {
        feature["name"]: sorted({tag for source in sources_of(feature) for tag in tags.get(source, [])})
        for feature in version.definition
    }


# -- the online store -----------------------------------------------------------------------------------
# Imports are local to these functions: this section is the online store's, appended to the module.

MATERIALISATION_PROGRESS_INTERVAL_SECONDS = 0.5


def materialisation_check(*, dataset_version: Any, timestamp_column: str = "") -> None:
    """Refuse, naming the field, a version that cannot be materialised: the dataset must declare a subject
    key that the version has, and a timestamp column must exist and hold dates or times."""
    dataset = dataset_version.dataset
    key = dataset.subject_key_column
    if not key:
        raise InvalidInput(
            f"Dataset {dataset.name!r} declares no subject key, so its rows have no entity id; "
            "set its subject_key_column first.",
            extra={"fields": {"dataset": ["The dataset declares no subject key (subject_key_column)."]}},
        )
    types = {column["name"]: column["type"] for column in dataset_version.schema}
    label = f"{dataset.name} v{dataset_version.number}"
    if key not in types:
        raise InvalidInput(
            f"{label} has no column {key!r}, the dataset's subject key.",
            extra={"fields": {"dataset_version": [f"Has no column {key!r} (the subject key)."]}},
        )
    if timestamp_column and timestamp_column not in types:
        raise InvalidInput(
            f"{label} has no column {timestamp_column!r}.",
            extra={"fields": {"timestamp_column": [f"Column {timestamp_column!r} is not in {label}."]}},
        )
    if timestamp_column and types[timestamp_column] != "datetime":
        kind = types[timestamp_column]
        raise InvalidInput(
            f"Column {timestamp_column!r} of {label} holds {kind} values, not dates or times.",
            extra={"fields": {"timestamp_column": [f"Column {timestamp_column!r} is {kind}, not datetime."]}},
        )


def materialisation_job_create(*, dataset_version: Any, timestamp_column: str = "", actor: Any = None) -> Any:
    """Queue writing the version's latest row per entity to the online store; a worker runs it."""
    from apps.features.models import MaterialisationJob
    from apps.features.online import store_for_settings
    from apps.features.tasks import materialisation_job_run as materialisation_job_run_task
    from apps.governance.services import actor_ref

    materialisation_check(dataset_version=dataset_version, timestamp_column=timestamp_column)
    store = store_for_settings()
    with transaction.atomic():
        job = MaterialisationJob.objects.create(
            dataset_version=dataset_version,
            timestamp_column=timestamp_column,
            store=store.name,
            created_by=acting_user(actor),
            requested_by=actor_ref(actor),
        )
        audit_record(
            actor=actor,
            action="materialisation_job.created",
            target=job,
            data={
                "dataset": dataset_version.dataset.name,
                "number": dataset_version.number,
                "timestamp_column": timestamp_column,
                "store": store.name,
            },
        )
        transaction.on_commit(lambda: materialisation_job_run_task.delay(job.pk))
    return job


def materialisation_job_run(*, job_id: int) -> Any:
    """Run a queued materialisation once; a job that is not queued is left alone (duplicate delivery).

    Every value written carries the job's start time as its `materialised_at`."""
    import logging
    import time

    from django.utils import timezone

    from apps.core.errors import FaroError
    from apps.data.selectors import dataset_version_path
    from apps.features.models import MaterialisationJob
    from apps.features.online import materialise, store_named

    started = timezone.now()
    with transaction.atomic():
        claimed = MaterialisationJob.objects.filter(pk=job_id, status=MaterialisationJob.Status.QUEUED).update(
            status=MaterialisationJob.Status.RUNNING, started_at=started, progress=0.0
        )
        if not claimed:
            return None
        audit_record(actor="system", action="materialisation_job.started", target=MaterialisationJob(pk=job_id))
    job = MaterialisationJob.objects.select_related("dataset_version__dataset", "created_by").get(pk=job_id)
    version = job.dataset_version
    last = [time.monotonic()]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= MATERIALISATION_PROGRESS_INTERVAL_SECONDS:
            last[0] = now
            MaterialisationJob.objects.filter(pk=job_id, status=MaterialisationJob.Status.RUNNING).update(
                progress=round(min(fraction, 0.99), 3)
            )

    try:
        materialisation_check(dataset_version=version, timestamp_column=job.timestamp_column)
        result = materialise(
            path=dataset_version_path(version=version),
            dataset=version.dataset,
            dataset_version=version,
            key_column=version.dataset.subject_key_column,
            timestamp_column=job.timestamp_column,
            store=store_named(job.store),
            materialised_at=started,
            on_progress=report,
        )
    except FaroError as exc:
        _materialisation_fail(job_id, exc.message)
        return None
    except Exception as exc:
        logging.getLogger(__name__).exception("Materialisation job %s failed", job_id)
        _materialisation_fail(job_id, f"Materialisation failed unexpectedly ({type(exc).__name__}).")
        return None
    with transaction.atomic():
        finished = MaterialisationJob.objects.filter(pk=job_id, status=MaterialisationJob.Status.RUNNING).update(
            status=MaterialisationJob.Status.SUCCEEDED,
            progress=1.0,
            rows_read=result.rows_read,
            rows_written=result.rows_written,
            finished_at=timezone.now(),
        )
        if finished:
            audit_record(
                actor=job.created_by or job.requested_by or None,
                action="online_store.materialised",
                target=job,
                data={
                    "dataset": version.dataset.name,
                    "number": version.number,
                    "store": job.store,
                    "rows_read": result.rows_read,
                    "rows_written": result.rows_written,
                },
            )
    return MaterialisationJob.objects.select_related("dataset_version__dataset").get(pk=job_id)


def _materialisation_fail(job_id: int, message: str) -> None:
    from django.utils import timezone

    from apps.features.models import MaterialisationJob

    with transaction.atomic():
        changed = MaterialisationJob.objects.filter(pk=job_id, status=MaterialisationJob.Status.RUNNING).update(
            status=MaterialisationJob.Status.FAILED, error=message, finished_at=timezone.now()
        )
        if changed:
            audit_record(
                actor="system",
                action="materialisation_job.failed",
                target=MaterialisationJob(pk=job_id),
                data={"error": message[:500]},
            )


def training_table_build(
    *,
    labels: Any,
    features: Any,
    entity: str,
    label_time: str,
    feature_time: str,
    into: Dataset,
    ttl_seconds: float | None = None,
    actor: Any = None,
) -> Any:
    """A point-in-time correct training table, stored as the next version of `into`.

    Each label row of the `labels` dataset version gets the feature values of the `features` dataset version
    known at its event time, never later ones (and none older than the TTL). The table goes through the
    same ingestion, checks and audit as an upload.
    """
    import datetime

    import pyarrow.parquet as pq

    from apps.core.artefacts import artefact_temp_path, sha256_file
    from apps.data.selectors import dataset_version_table
    from apps.data.services import dataset_version_ingest
    from apps.features.point_in_time import PointInTimeError, point_in_time_join

    ttl = datetime.timedelta(seconds=ttl_seconds) if ttl_seconds is not None else None
    try:
        table = point_in_time_join(
            dataset_version_table(version=labels),
            dataset_version_table(version=features),
            entity=entity,
            label_time=label_time,
            feature_time=feature_time,
            ttl=ttl,
        )
    except PointInTimeError as exc:
        raise InvalidInput(f"The training table cannot be built: {exc.message}") from None
    temp = artefact_temp_path("datasets", ".parquet")
    try:
        pq.write_table(table, temp, compression="zstd")
        return dataset_version_ingest(
            dataset=into,
            source=temp,
            original_name="training-table.parquet",
            original_sha256=sha256_file(temp),
            options={"mode": "replace", "format": "parquet"},
            actor=actor,
        )
    finally:
        temp.unlink(missing_ok=True)
