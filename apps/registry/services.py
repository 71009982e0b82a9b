"""Writes for the registry: models, training jobs (leased, cancellable, reaped), versions and their
release: gates, approval by someone other than the maker, alias moves (promotion, rollback)."""

import io
import logging
from datetime import datetime
from typing import Any

import numpy as np
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.core.artefacts import artefact_read_bytes, artefact_write_bytes
from apps.core.errors import Conflict, FaroError, InvalidInput, NotFound
from apps.core.jobs import job_start, jobs_reap_and_requeue
from apps.data.models import ColumnTag, DatasetVersion
from apps.data.selectors import dataset_version_table, rows_carried
from apps.events.services import event_emit
from apps.features.models import FeatureSetVersion
from apps.features.pipeline import validate_definition
from apps.governance.services import acting_user, actor_principal, actor_ref, audit_record
from apps.registry import lineage
from apps.registry.gates import gates_evaluate
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob, alias_validator
from apps.registry.training import (
    CLASSIFICATION,
    TrainingCancelled,
    TrainingDataError,
    check_trainable,
    train,
    validate_params,
)

logger = logging.getLogger(__name__)

MODEL_FIELDS = (
    "description",
    "task_type",
    "favourable_label",
    "owner",
    "latency_p95_ms_target",
    "availability_target",
    "quality_metric",
    "quality_minimum",
    "max_relative_drop",
    "fairness_limits",
    "erasure_policy",
)


# -- registered models ----------------------------------------------------------------------------------


def _model_validate(model: RegisteredModel) -> None:
    from apps.registry.evaluation import FAIRNESS_DEFAULTS
    from apps.registry.gates import KNOWN_METRICS

    problems: dict[str, list[str]] = {}
    try:
        model.full_clean()
    except ValidationError as exc:
        if "name" in exc.message_dict and RegisteredModel.objects.filter(name=model.name).exclude(pk=model.pk).exists():
            raise Conflict(f"A registered model named {model.name!r} already exists.") from None
        problems.update(exc.message_dict)
    if model.quality_metric and model.quality_metric not in KNOWN_METRICS:
        problems.setdefault("quality_metric", []).append(f"Unknown metric; choose from {', '.join(KNOWN_METRICS)}.")
    limits = model.fairness_limits
    if not isinstance(limits, dict) or not all(
        key in FAIRNESS_DEFAULTS and isinstance(value, (int, float)) and not isinstance(value, bool)
        for key, value in limits.items()
    ):
        problems.setdefault("fairness_limits", []).append(
            f"An object with numbers for: {', '.join(sorted(FAIRNESS_DEFAULTS))}."
        )
    if problems:
        raise InvalidInput("The registered model is not valid.", extra={"fields": problems})


def registered_model_create(*, name: str, actor: Any = None, **fields: Any) -> RegisteredModel:
    unknown = set(fields) - set(MODEL_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
    fields.setdefault("owner", acting_user(actor))
    model = RegisteredModel(name=name, **fields)
    _model_validate(model)
    with transaction.atomic():
        model.save()
        audit_record(actor=actor, action="registered_model.created", target=model, data={"name": name})
    return model


def registered_model_update(*, registered_model: RegisteredModel, actor: Any = None, **changes: Any) -> RegisteredModel:
    """Change a model's description, owner, SLA or gate settings; the audit records old and new values."""
    unknown = set(changes) - set(MODEL_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown fields: {', '.join(sorted(unknown))}.")
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        before = {name: getattr(model, f"{name}_id" if name == "owner" else name) for name in changes}
        for name, value in changes.items():
            setattr(model, name, value)
        _model_validate(model)
        model.save()
        after = {name: getattr(model, f"{name}_id" if name == "owner" else name) for name in changes}
        changed = {name: {"from": before[name], "to": after[name]} for name in changes if before[name] != after[name]}
        if changed:
            audit_record(actor=actor, action="registered_model.updated", target=model, data=changed)
    return model


# -- training jobs ----------------------------------------------------------------------------------------


def _protected_columns(dataset_version: DatasetVersion) -> list[str]:
    present = {column["name"] for column in dataset_version.schema}
    return sorted(
        column
        for column, tags in (dataset_version.dataset.column_tags or {}).items()
        if ColumnTag.PROTECTED in tags and column in present
    )


def training_job_create(
    *,
    registered_model: RegisteredModel,
    dataset_version: DatasetVersion,
    params: dict[str, Any] | None = None,
    feature_set_version: FeatureSetVersion | None = None,
    actor: Any = None,
) -> TrainingJob:
    """Queue a training job; the worker starts it once this transaction commits.

    Everything knowable up front is checked here (parameters, the target, classes, rows for the split, the
    time column, the feature set against the data), so a job never fails later for a reason known now.
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
    schema = {column["name"]: column["type"] for column in dataset_version.schema}
    if feature_set_version is not None:
        feature_set = feature_set_version.feature_set
        if feature_set.dataset_id != dataset_version.dataset_id:
            raise InvalidInput(
                f"Feature set {feature_set.name!r} reads dataset {feature_set.dataset.name!r}, not "
                f"{dataset_version.dataset.name!r}.",
                extra={"fields": {"feature_set": ["The feature set reads another dataset."]}},
            )
        definition_problems = validate_definition(feature_set_version.definition, schema)
        if definition_problems:
            raise InvalidInput(
                f"{feature_set_version} does not fit {dataset_version}.", extra={"problems": definition_problems}
            )
    needed = [name for name in (target, resolved.get("time_column") or "") if name and name in schema]
    columns = dataset_version_table(version=dataset_version, columns=needed) if needed else {}
    reasons = check_trainable(
        columns, target=target, task_type=registered_model.task_type, params=resolved, schema=schema
    )
    if reasons:
        raise InvalidInput(
            f"{dataset_version} cannot train this model: {' '.join(reasons)}", extra={"problems": reasons}
        )
    from apps.registry.tasks import training_job_run as training_job_run_task

    with transaction.atomic():
        job = TrainingJob.objects.create(
            registered_model=registered_model,
            dataset_version=dataset_version,
            params=resolved,
            feature_set_version=feature_set_version,
            created_by=acting_user(actor),
            requested_by=actor_principal(actor),
        )
        audit_record(
            actor=actor,
            action="training_job.created",
            target=job,
            data={"model": registered_model.name, "dataset_version": dataset_version.pk, "params": resolved},
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


def training_job_repeat(*, registered_model: RegisteredModel, actor: Any = None) -> TrainingJob:
    """Queue a job like the model's last one, on the newest version of its dataset and, if it used a feature
    set, the newest version of that set."""
    last = registered_model.training_jobs.select_related("dataset_version__dataset", "feature_set_version").first()
    if last is None:
        raise Conflict(f"{registered_model.name} has never been trained; start its first job from the training page.")
    dataset = last.dataset_version.dataset
    dataset_version = dataset.versions.order_by("-number").first()
    feature_set_version = None
    if last.feature_set_version is not None:
        feature_set_version = last.feature_set_version.feature_set.versions.order_by("-number").first()
    return training_job_create(
        registered_model=registered_model,
        dataset_version=dataset_version,
        params=last.params,
        feature_set_version=feature_set_version,
        actor=actor,
    )


def training_job_cancel(*, job: TrainingJob, actor: Any = None) -> TrainingJob:
    """Cancel a job: a queued one at once; a running one stops at its next boosting round (within seconds)."""
    now = timezone.now()
    with transaction.atomic():
        if TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.QUEUED).update(
            status=TrainingJob.Status.CANCELLED, cancel_requested_at=now, finished_at=now, error="Cancelled."
        ):
            audit_record(actor=actor, action="training_job.cancelled", target=job)
        elif TrainingJob.objects.filter(
            pk=job.pk, status=TrainingJob.Status.RUNNING, cancel_requested_at__isnull=True
        ).update(cancel_requested_at=now):
            audit_record(actor=actor, action="training_job.cancel_requested", target=job)
        elif not TrainingJob.objects.filter(pk=job.pk, status=TrainingJob.Status.RUNNING).exists():
            job.refresh_from_db()
            raise Conflict(f"Training job {job.pk} has already ended ({job.get_status_display().lower()}).")
    job.refresh_from_db()
    return job


def _job_end(lease, job: TrainingJob, status: str, message: str, action: str) -> None:
    with transaction.atomic():
        if lease.finish(status=status, error=message):
            audit_record(actor="system", action=action, target=job, data={"error": message[:500]})


def training_jobs_reap(*, now: datetime | None = None) -> list[int]:
    """Take back training jobs whose worker died: queue them again, or fail them after the last attempt."""
    from apps.registry.tasks import training_job_run as training_job_run_task

    return jobs_reap_and_requeue(
        TrainingJob, audit=audit_record, action_prefix="training_job", requeue=training_job_run_task.delay, now=now
    )


def _numeric_groups(values: list[Any], column: str) -> list[Any]:
    """A numeric protected attribute (age) compared as two groups, split at its median."""
    present = np.array([value for value in values if value is not None], dtype=np.float64)
    if not len(present):
        return values
    median = float(np.median(present))
    shown = f"{median:g}"
    return [
        None if value is None else (f"{column} < {shown}" if value < median else f"{column} ≥ {shown}")
        for value in values
    ]


def _favourable_index(target: Any, favourable_label: str) -> int | None:
    """Which of a binary target's two labels (ordered by their text, as training orders them) is the outcome
    the model's fairness report counts as selected; None (the second label) when the model names none."""
    import pyarrow.compute as pc

    labels = sorted((value for value in pc.unique(target).to_pylist() if value is not None), key=str)
    if len(labels) != 2 or not favourable_label:
        return None
    texts = [str(label) for label in labels]
    return texts.index(favourable_label) if favourable_label in texts else None


def training_job_run(*, job_id: int) -> ModelVersion | None:
    """Run one attempt of a queued job: claim it under a lease, train, register at most one version.

    A job that is not QUEUED (another delivery has it, it ended, or it is missing) is left alone. The lease
    is renewed as boosting rounds complete; a cancel request or the reaper taking the job back stops the
    attempt at the next round. A data problem fails the job with a message a person can act on.
    """
    lease = job_start(TrainingJob, job_id, audit=audit_record, action="training_job.started")
    if lease is None:
        logger.info("Training job %s is not queued; nothing to do", job_id)
        return None
    job = TrainingJob.objects.select_related("registered_model", "dataset_version__dataset", "feature_set_version").get(
        pk=job_id
    )
    dataset = job.dataset_version.dataset
    trials: list[dict[str, Any]] = []

    def on_progress(fraction: float) -> None:
        lease.renew(progress=fraction)

    def on_trial(trial: dict[str, Any]) -> None:
        trials.append(trial)
        TrainingJob.objects.filter(pk=job_id, status=TrainingJob.Status.RUNNING, attempts=lease.attempt).update(
            trials=trials
        )
        lease.renew(force=True)

    try:
        table = dataset_version_table(version=job.dataset_version)
        protected = {}
        for column in _protected_columns(job.dataset_version):
            values = table.column(column).to_pylist()
            kind = next(c["type"] for c in job.dataset_version.schema if c["name"] == column)
            protected[column] = _numeric_groups(values, column) if kind in ("integer", "float") else values
        registered = job.registered_model
        result = train(
            table,
            target=dataset.target_column,
            subject_key=dataset.subject_key_column,
            task_type=registered.task_type,
            params=job.params,
            on_progress=on_progress,
            should_stop=lambda: not lease.renew(),
            on_trial=on_trial,
            feature_definition=job.feature_set_version.definition if job.feature_set_version else None,
            schema={column["name"]: column["type"] for column in job.dataset_version.schema},
            protected=protected or None,
            favourable_index=_favourable_index(table.column(dataset.target_column), registered.favourable_label),
            fairness_limits=registered.fairness_limits or None,
        )
        lease.renew(force=True)
        relative, digest = artefact_write_bytes("models", ".ubj", result.model_ubj)
        onnx = lineage.onnx_export(result)
        holdout_path, holdout_digest = _holdout_write(result.test_rows)
    except TrainingCancelled:
        cancelled = TrainingJob.objects.filter(pk=job_id, cancel_requested_at__isnull=False).exists()
        if cancelled:
            _job_end(lease, job, TrainingJob.Status.CANCELLED, "Cancelled.", "training_job.cancelled")
        return None
    except TrainingDataError as exc:
        _job_end(lease, job, TrainingJob.Status.FAILED, str(exc), "training_job.failed")
        return None
    except FaroError as exc:
        _job_end(lease, job, TrainingJob.Status.FAILED, exc.message, "training_job.failed")
        return None
    except Exception as exc:
        logger.exception("Training job %s failed", job_id)
        _job_end(
            lease,
            job,
            TrainingJob.Status.FAILED,
            f"Training failed unexpectedly ({type(exc).__name__}): {exc}",
            "training_job.failed",
        )
        return None

    outputs = _outputs(result.task_type, result.labels)
    with transaction.atomic():
        registered, number = _next_version(job.registered_model_id)
        # An erasure that rewrote the data while this trained: the version learnt from rows that are gone.
        current = DatasetVersion.objects.filter(pk=job.dataset_version_id).values_list("sha256", flat=True).first()
        erased_data_at = timezone.now() if current != job.dataset_version.sha256 else None
        version = ModelVersion.objects.create(
            registered_model=registered,
            version=number,
            dataset_version=job.dataset_version,
            task_type=result.task_type,
            target_column=dataset.target_column,
            labels=result.labels,
            params={**result.params, "best_iteration": result.best_iteration},
            metrics={**result.metrics, **result.evaluation.get("metrics", {}), "rows": result.rows},
            feature_state=result.pipeline.to_state(),
            feature_set_version=job.feature_set_version,
            feature_definition_hash=job.feature_set_version.definition_hash if job.feature_set_version else "",
            signature={"inputs": result.pipeline.signature(), "outputs": outputs},
            artefact_path=relative,
            artefact_sha256=digest,
            size_bytes=len(result.model_ubj),
            onnx_path=onnx.get("path", ""),
            onnx_sha256=onnx.get("sha256", ""),
            onnx_parity=onnx.get("parity", {}),
            evaluation={**result.evaluation, "latency": result.latency, "protected_attributes": sorted(protected)},
            lineage=lineage.lineage_for(job, result),
            holdout_path=holdout_path,
            holdout_sha256=holdout_digest,
            erased_data_at=erased_data_at,
            created_by=job.created_by,
            maker=job.requested_by,
        )
        if not lease.finish(
            status=TrainingJob.Status.SUCCEEDED,
            progress=1.0,
            model_version=version,
            warnings=result.warnings,
            warning_count=result.warning_count,
            error="",
        ):
            raise Conflict(f"Training job {job_id} was taken back or ended elsewhere; version not registered.")
        audit_record(
            actor="system",
            action="model_version.registered",
            target=version,
            data={
                "model": registered.name,
                "version": number,
                "sha256": digest,
                "onnx_sha256": version.onnx_sha256,
                "job": job_id,
                "metrics": result.metrics,
            },
        )
        audit_record(actor="system", action="training_job.succeeded", target=job, data={"version": number})
        event_emit(kind="model_version.ready", payload=_version_payload(version))
    model_version_gates_evaluate(version=version)
    return version


def _outputs(task_type: str, labels: list[Any]) -> dict[str, Any]:
    """The signature's outputs: a label and its probabilities, or a number."""
    if task_type == CLASSIFICATION:
        return {"label": {"type": "category", "categories": labels}, "probabilities": labels}
    return {"value": {"type": "number"}}


def _next_version(registered_model_id: int) -> tuple[RegisteredModel, int]:
    """The model, locked for the rest of the transaction, and the number its next version takes."""
    registered = RegisteredModel.objects.select_for_update().get(pk=registered_model_id)
    return registered, (registered.versions.aggregate(latest=Max("version"))["latest"] or 0) + 1


def _holdout_write(rows: np.ndarray) -> tuple[str, str]:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(rows, dtype=np.int32), allow_pickle=False)
    return artefact_write_bytes("holdouts", ".npy", buffer.getvalue())


def model_version_holdout_rows(version: ModelVersion) -> np.ndarray:
    """The row numbers (0-based, in the dataset version) of the version's held-out test rows."""
    if not version.holdout_path:
        raise NotFound(f"{version} has no recorded holdout.")
    data = artefact_read_bytes(version.holdout_path, version.holdout_sha256)
    rows = np.load(io.BytesIO(data), allow_pickle=False)
    trained_on = (version.lineage or {}).get("dataset", {}).get("sha256")
    if trained_on and trained_on != version.dataset_version.sha256:  # erasures rewrote the file since
        rows = rows_carried(version=version.dataset_version, sha256=trained_on, rows=rows)
    return rows


# -- release: gates, approval, aliases --------------------------------------------------------------------


def _version_payload(version: ModelVersion) -> dict[str, Any]:
    return {
        "model": version.registered_model.name,
        "version": version.version,
        "status": version.status,
        "artefact_sha256": version.artefact_sha256,
        "metrics": {key: value for key, value in version.metrics.items() if key != "rows"},
    }


def _current_champion(registered: RegisteredModel) -> ModelVersion | None:
    alias = (
        ModelAlias.objects.filter(registered_model=registered, name=ModelAlias.Name.CHAMPION)
        .select_related(
            "version__registered_model", "version__dataset_version__dataset", "version__feature_set_version"
        )
        .first()
    )
    return alias.version if alias else None


def model_version_gates_evaluate(*, version: ModelVersion) -> dict[str, Any]:
    """Measure the version against its model's release gates and the current champion, on the version's
    own holdout, and store the evidence on the version."""
    version = ModelVersion.objects.select_related(
        "registered_model", "dataset_version__dataset", "feature_set_version"
    ).get(pk=version.pk)
    champion = _current_champion(version.registered_model)
    report = gates_evaluate(version=version, champion=champion if champion and champion.pk != version.pk else None)
    with transaction.atomic():
        ModelVersion.objects.filter(pk=version.pk).update(gate_report=report)
        audit_record(
            actor="system",
            action="model_version.gates_evaluated",
            target=version,
            data={"passed": report["passed"], "champion": (report.get("champion") or {}).get("version")},
        )
    version.gate_report = report
    return report


def _gates_fresh(version: ModelVersion) -> bool:
    champion = _current_champion(version.registered_model)
    recorded = (version.gate_report.get("champion") or {}).get("version_id")
    current = champion.pk if champion and champion.pk != version.pk else None
    return bool(version.gate_report) and recorded == current


def model_version_approve(*, version: ModelVersion, actor: Any = None, note: str = "") -> ModelVersion:
    """Approve a pending version. The maker (who started its training) may not approve it. Failing gates
    can be overridden only with a written reason, which the evidence and the audit keep."""
    version = ModelVersion.objects.select_related("registered_model").get(pk=version.pk)
    if not _gates_fresh(version):
        model_version_gates_evaluate(version=version)
        version.refresh_from_db()
    checker = actor_principal(actor)
    if version.maker and checker == version.maker:
        raise Conflict(
            f"{version} was trained at your request; someone else must approve it (maker-checker).",
            extra={"maker": version.maker},
        )
    passed = bool(version.gate_report.get("passed"))
    if not passed and not note.strip():
        failing = [gate["name"] for gate in version.gate_report.get("gates", []) if not gate["passed"]]
        raise Conflict(
            f"{version} fails its release gates ({', '.join(failing)}); approving it needs a written reason.",
            extra={"failing_gates": failing},
        )
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.PENDING).update(
            status=ModelVersion.Status.APPROVED,
            decided_by=acting_user(actor),
            decided_at=timezone.now(),
            decision_note=note.strip(),
        )
        if not changed:
            raise Conflict(f"{version} is not pending approval (it is {version.get_status_display().lower()}).")
        version.refresh_from_db()
        audit_record(
            actor=actor,
            action="model_version.approved",
            target=version,
            data={
                "model": version.registered_model.name,
                "version": version.version,
                "gates_passed": passed,
                "override_reason": note.strip() if not passed else "",
            },
        )
        event_emit(kind="model_version.approved", payload=_version_payload(version))
    return version


def model_version_reject(*, version: ModelVersion, actor: Any = None, note: str = "") -> ModelVersion:
    """Reject a pending version, with the reason. A rejected version can hold no alias."""
    if not note.strip():
        raise InvalidInput("Say why the version is rejected.", extra={"fields": {"note": ["This field is required."]}})
    with transaction.atomic():
        changed = ModelVersion.objects.filter(pk=version.pk, status=ModelVersion.Status.PENDING).update(
            status=ModelVersion.Status.REJECTED,
            decided_by=acting_user(actor),
            decided_at=timezone.now(),
            decision_note=note.strip(),
        )
        version.refresh_from_db()
        if not changed:
            raise Conflict(f"{version} is not pending approval (it is {version.get_status_display().lower()}).")
        audit_record(
            actor=actor,
            action="model_version.rejected",
            target=version,
            data={"model": version.registered_model.name, "version": version.version, "reason": note.strip()},
        )
        event_emit(kind="model_version.rejected", payload=_version_payload(version))
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
    promoted = kind == AliasChange.Kind.PROMOTE
    data = {
        "model": registered.name,
        "alias": alias,
        "version": target.version,
        "previous_version": previous.version if previous else None,
    }
    audit_record(actor=actor, action=f"model.{'promoted' if promoted else 'rolled_back'}", target=target, data=data)
    event_emit(kind=f"model_version.{'promoted' if promoted else 'rolled_back'}", payload=data)
    return current


def _alias_check(alias: str) -> None:
    try:
        alias_validator(alias)
    except ValidationError as exc:
        raise InvalidInput(f"{alias!r} is not a valid alias name.", extra={"fields": {"alias": exc.messages}}) from None


PROMOTE_ATTEMPTS = 3


def model_version_promote(
    *, version: ModelVersion, alias: str = ModelAlias.Name.CHAMPION, actor: Any = None
) -> ModelAlias:
    """Point `alias` at `version`. Champion needs an approved version whose gates passed against the current
    champion (or were overridden, with a reason, at approval); any other alias needs a version that is not
    rejected. Concurrent promotions are serialised on the registered model's row; when the champion changes
    while the gates are measured, they are measured again against the new one."""
    _alias_check(alias)
    for _ in range(PROMOTE_ATTEMPTS):
        version = ModelVersion.objects.select_related("registered_model").get(pk=version.pk)
        if version.status == ModelVersion.Status.REJECTED:
            raise Conflict(f"{version} was rejected; it cannot hold an alias.")
        if alias == ModelAlias.Name.CHAMPION:
            if version.status != ModelVersion.Status.APPROVED:
                raise Conflict(
                    f"{version} is {version.get_status_display().lower()}; only an approved version can be champion."
                )
            if not _gates_fresh(version):
                model_version_gates_evaluate(version=version)
                version.refresh_from_db()
            if not version.gate_report.get("passed") and not version.decision_note:
                failing = [gate["name"] for gate in version.gate_report.get("gates", []) if not gate["passed"]]
                raise Conflict(
                    f"{version} fails its release gates against the current champion ({', '.join(failing)}).",
                    extra={"failing_gates": failing},
                )
        with transaction.atomic():
            registered = RegisteredModel.objects.select_for_update().get(pk=version.registered_model_id)
            current = ModelAlias.objects.filter(registered_model=registered, name=alias).first()
            if current is not None and current.version_id == version.pk:
                return current
            recorded = (version.gate_report.get("champion") or {}).get("version_id")
            if alias == ModelAlias.Name.CHAMPION and current is not None and recorded != current.version_id:
                continue  # the champion moved while the gates were measured: measure against the new one
            return _move_alias(
                registered=registered, alias=alias, target=version, kind=AliasChange.Kind.PROMOTE, actor=actor
            )
    raise Conflict(f"The champion of {version.registered_model.name} kept changing; try the promotion again.")


def model_alias_rollback(
    *, registered_model: RegisteredModel, alias: str = ModelAlias.Name.CHAMPION, actor: Any = None
) -> ModelAlias:
    """Point `alias` back at the version it had before the current one was promoted."""
    _alias_check(alias)
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


# -- imported ONNX models -----------------------------------------------------------------------------------


def model_version_import_onnx(
    *,
    registered_model: RegisteredModel,
    data: bytes,
    inputs: list[dict[str, Any]],
    task_type: str,
    labels: list[Any] | None = None,
    dataset_version: DatasetVersion,
    actor: Any = None,
) -> ModelVersion:
    """Register an ONNX model made elsewhere as a pending version, with its declared signature.

    The file is refused if it is a pickle or joblib file, has external data, or does not match the
    signature. Serving scores it through onnxruntime, like a native version.
    """
    signature_inputs, pipeline_state = lineage.signature_from_declaration(inputs)
    info = lineage.onnx_check(data, n_inputs=len(signature_inputs), task_type=task_type, labels=labels or [])
    target = dataset_version.dataset.target_column
    relative, digest = artefact_write_bytes("models", ".onnx", data)
    outputs = _outputs(task_type, list(labels or []))
    with transaction.atomic():
        registered, number = _next_version(registered_model.pk)
        version = ModelVersion.objects.create(
            registered_model=registered,
            version=number,
            dataset_version=dataset_version,
            task_type=task_type,
            target_column=target,
            labels=list(labels or []),
            params={},
            metrics={},
            feature_state=pipeline_state,
            signature={"inputs": signature_inputs, "outputs": outputs},
            artefact_path=relative,
            artefact_sha256=digest,
            size_bytes=len(data),
            source=ModelVersion.Source.ONNX,
            onnx_path=relative,
            onnx_sha256=digest,
            lineage={"imported": info, "code_version": lineage.code_version()},
            created_by=acting_user(actor),
            maker=actor_principal(actor),
        )
        lineage.imported_evaluate(version)
        audit_record(
            actor=actor,
            action="model_version.imported",
            target=version,
            data={"model": registered.name, "version": number, "sha256": digest, "producer": info.get("producer")},
        )
        event_emit(kind="model_version.ready", payload=_version_payload(version))
    model_version_gates_evaluate(version=version)
    return version
