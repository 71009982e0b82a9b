"""Writes for the registry: training jobs, versions and alias moves (promotion, rollback)."""

import logging
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.artefacts import artefact_write_bytes
from apps.core.errors import Conflict, FaroError, InvalidInput
from apps.data.models import DatasetVersion
from apps.data.selectors import dataset_version_table
from apps.features.models import FeatureSetVersion
from apps.features.pipeline import validate_definition
from apps.governance.services import acting_user, actor_ref, audit_record
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob
from apps.registry.training import CLASSIFICATION, TrainingDataError, train, validate_params

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL_SECONDS = 0.5


def registered_model_create(
    *, name: str, description: str = "", task_type: str = "auto", favourable_label: str = "", actor: Any = None
) -> RegisteredModel:
    model = RegisteredModel(name=name, description=description, task_type=task_type, favourable_label=favourable_label)
    try:
        model.full_clean()
    except ValidationError as exc:
        if RegisteredModel.objects.filter(name=name).exists():
            raise Conflict(f"A registered model named {name!r} already exists.") from None
        raise InvalidInput("The registered model is not valid.", extra={"fields": exc.message_dict}) from None
    with transaction.atomic():
        model.save()
        audit_record(actor=actor, action="registered_model.created", target=model, data={"name": name})
    return model


def training_job_create(
    *,
    registered_model: RegisteredModel,
    dataset_version: DatasetVersion,
    params: dict[str, Any] | None = None,
    feature_set_version: FeatureSetVersion | None = None,
    actor: Any = None,
) -> TrainingJob:
    """Queue a training job; the worker starts it once this transaction commits.

    A feature set must read the job's dataset, and its definition must fit this version's columns.
    """
    resolved, problems = validate_params(params)
    if problems:
        raise InvalidInput(
            "The training parameters are not valid.",
            extra={"fields": {f"params.{name}": [problem] for name, problem in problems.items()}},
        )
    target = dataset_version.dataset.target_column
    if not target:
        raise InvalidInput(
            f"Dataset {dataset_version.dataset.name!r} declares no target column to train on.",
            extra={"fields": {"dataset": ["The dataset has no target column."]}},
        )
    if feature_set_version is not None:
        feature_set = feature_set_version.feature_set
        if feature_set.dataset_id != dataset_version.dataset_id:
            raise InvalidInput(
                f"Feature set {feature_set.name!r} reads dataset {feature_set.dataset.name!r}, not "
                f"{dataset_version.dataset.name!r}.",
                extra={"fields": {"feature_set": ["The feature set reads another dataset."]}},
            )
        schema = {column["name"]: column["type"] for column in dataset_version.schema}
        problems = validate_definition(feature_set_version.definition, schema)
        if problems:
            raise InvalidInput(f"{feature_set_version} does not fit {dataset_version}.", extra={"problems": problems})
    from apps.registry.tasks import training_job_run as training_job_run_task

    with transaction.atomic():
        job = TrainingJob.objects.create(
            registered_model=registered_model,
            dataset_version=dataset_version,
            params=resolved,
            feature_set_version=feature_set_version,
            created_by=acting_user(actor),
        )
        audit_record(
            actor=actor,
            action="training_job.created",
            target=job,
            data={"model": registered_model.name, "dataset_version": dataset_version.pk},
        )
        transaction.on_commit(lambda: training_job_run_task.delay(job.pk))
    return job


def training_job_create_for_model_name(
    *,
    model_name: str,
    dataset_version: DatasetVersion,
    params: dict[str, Any] | None = None,
    feature_set_version: FeatureSetVersion | None = None,
    actor: Any = None,
) -> TrainingJob:
    """Queue a training job for `model_name`, registering the model on first use.

    One transaction: a refused job (bad parameters, no target) leaves no newly registered model behind.
    """
    with transaction.atomic():
        registered = RegisteredModel.objects.filter(name=model_name).first() or registered_model_create(
            name=model_name, actor=actor
        )
        return training_job_create(
            registered_model=registered,
            dataset_version=dataset_version,
            params=params,
            feature_set_version=feature_set_version,
            actor=actor,
        )


def _job_fail(job_id: int, message: str) -> None:
    with transaction.atomic():
        changed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.FAILED, error=message, finished_at=timezone.now()
        )
        if changed:
            audit_record(
                actor="system",
                action="training_job.failed",
                target=TrainingJob(pk=job_id),
                data={"error": message[:500]},
            )


def training_job_run(*, job_id: int) -> ModelVersion | None:
    """Run a queued job once: claim it, train, register exactly one version.

    A job that is not QUEUED (already claimed by another delivery, finished or missing) is left alone,
    so a task delivered twice trains once. A data problem fails the job with a message a person can act on.
    """
    with transaction.atomic():
        claimed = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.RUNNING, started_at=timezone.now(), progress=0.0
        )
        if not claimed:
            logger.info("Training job %s is not queued; nothing to do", job_id)
            return None
        audit_record(actor="system", action="training_job.started", target=TrainingJob(pk=job_id))
    job = TrainingJob.objects.select_related("registered_model", "dataset_version__dataset").get(pk=job_id)
    dataset = job.dataset_version.dataset
    last_report = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last_report[0] >= PROGRESS_INTERVAL_SECONDS:
            last_report[0] = now
            TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).update(
                progress=round(min(fraction, 0.99), 3)
            )

    try:
        columns = dataset_version_table(version=job.dataset_version).to_pydict()
        result = train(
            columns,
            target=dataset.target_column,
            subject_key=dataset.subject_key_column,
            task_type=job.registered_model.task_type,
            params=job.params,
            on_progress=report,
            feature_definition=job.feature_set_version.definition if job.feature_set_version else None,
            schema={column["name"]: column["type"] for column in job.dataset_version.schema},
        )
        relative, digest = artefact_write_bytes("models", ".ubj", result.model_ubj)
    except TrainingDataError as exc:
        _job_fail(job_id, str(exc))
        return None
    except FaroError as exc:
        _job_fail(job_id, exc.message)
        return None
    except Exception as exc:
        logger.exception("Training job %s failed", job_id)
        _job_fail(job_id, f"Training failed unexpectedly ({type(exc).__name__}): {exc}")
        return None

    outputs: dict[str, Any] = (
        {"label": {"type": "category", "categories": result.labels}, "probabilities": result.labels}
        if result.task_type == CLASSIFICATION
        else {"value": {"type": "number"}}
    )
    with transaction.atomic():
        registered = RegisteredModel.objects.select_for_update().get(pk=job.registered_model_id)
        number = (registered.versions.aggregate(latest=Max("version"))["latest"] or 0) + 1
        version = ModelVersion.objects.create(
            registered_model=registered,
            version=number,
            dataset_version=job.dataset_version,
            task_type=result.task_type,
            target_column=dataset.target_column,
            labels=result.labels,
            params={**result.params, "best_iteration": result.best_iteration},
            metrics={**result.metrics, "rows": result.rows},
            feature_state=result.pipeline.to_state(),
            feature_set_version=job.feature_set_version,
            feature_definition_hash=job.feature_set_version.definition_hash if job.feature_set_version else "",
            signature={"inputs": result.pipeline.signature(), "outputs": outputs},
            artefact_path=relative,
            artefact_sha256=digest,
            size_bytes=len(result.model_ubj),
        )
        finished = TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING).update(
            status=TrainingJob.Status.SUCCEEDED,
            progress=1.0,
            finished_at=timezone.now(),
            model_version=version,
            warnings=result.warnings,
            warning_count=result.warning_count,
        )
        if not finished:
            raise Conflict(f"Training job {job_id} was finished elsewhere; version not registered.")
        audit_record(
            actor="system",
            action="model_version.registered",
            target=version,
            data={
                "model": registered.name,
                "version": number,
                "sha256": digest,
                "job": job_id,
                "metrics": result.metrics,
            },
        )
        audit_record(actor="system", action="training_job.succeeded", target=job, data={"version": number})
    return version


def _move_alias(*, registered: RegisteredModel, alias: str, target: ModelVersion, kind: str, actor: Any) -> ModelAlias:
    current = ModelAlias.objects.filter(registered_model=registered, name=alias).select_related("version").first()
    previous = current.version if current else None
    if current is None:
        current = ModelAlias.objects.create(registered_model=registered, name=alias, version=target)
    else:
        current.version = target
        current.save(update_fields=["version", "updated_at"])
    AliasChange.objects.create(
        registered_model=registered,
        alias=alias,
        kind=kind,
        from_version=previous,
        to_version=target,
        actor=actor_ref(actor),
    )
    audit_record(
        actor=actor,
        action=f"model.{'promoted' if kind == AliasChange.Kind.PROMOTE else 'rolled_back'}",
        target=target,
        data={
            "model": registered.name,
            "alias": alias,
            "version": target.version,
            "previous_version": previous.version if previous else None,
        },
    )
    return current


def model_version_promote(
    *, version: ModelVersion, alias: str = ModelAlias.Name.CHAMPION, actor: Any = None
) -> ModelAlias:
    """Point `alias` at `version`. Concurrent promotions are serialised on the registered model's row."""
    if alias not in ModelAlias.Name.values:
        raise InvalidInput(
            f"Unknown alias {alias!r}; choose from {', '.join(ModelAlias.Name.values)}.",
            extra={"fields": {"alias": ["Unknown alias."]}},
        )
    with transaction.atomic():
        registered = RegisteredModel.objects.select_for_update().get(pk=version.registered_model_id)
        current = ModelAlias.objects.filter(registered_model=registered, name=alias).first()
        if current is not None and current.version_id == version.pk:
            return current
        return _move_alias(
            registered=registered, alias=alias, target=version, kind=AliasChange.Kind.PROMOTE, actor=actor
        )


def model_alias_rollback(
    *, registered_model: RegisteredModel, alias: str = ModelAlias.Name.CHAMPION, actor: Any = None
) -> ModelAlias:
    """Point `alias` back at the version it had before the current one was promoted."""
    with transaction.atomic():
        registered = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        current = ModelAlias.objects.filter(registered_model=registered, name=alias).first()
        if current is None:
            raise Conflict(f"{registered.name} has no {alias} to roll back.")
        promotion = (
            AliasChange.objects.filter(
                registered_model=registered, alias=alias, kind=AliasChange.Kind.PROMOTE, to_version=current.version_id
            )
            .select_related("from_version")
            .order_by("-at", "-id")
            .first()
        )
        if promotion is None or promotion.from_version is None:
            raise Conflict(f"{registered.name}@{alias} has no previous version to roll back to.")
        return _move_alias(
            registered=registered,
            alias=alias,
            target=promotion.from_version,
            kind=AliasChange.Kind.ROLLBACK,
            actor=actor,
        )
