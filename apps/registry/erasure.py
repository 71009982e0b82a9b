"""Model versions trained on rows a data subject's erasure has since removed: flagged when the dataset version is
rewritten (`apps.data.personal_data.rows_erased`, in the rewrite's transaction), and their registered model's
erasure policy applied — allow (serve, flagged, until a retrained version replaces it), retrain (queue a training
job with the champion's recipe on the rewritten data), block (the loader refuses to serve flagged versions)."""

from typing import Any

from django.utils import timezone

from apps.governance.services import audit_record
from apps.registry.models import ErasurePolicy, ModelAlias, ModelVersion, TrainingJob


def on_rows_erased(sender: Any, *, version: Any, positions: list[int], before: str, after: str, **kwargs: Any) -> None:
    now = timezone.now()
    flagged = list(
        ModelVersion.objects.filter(dataset_version=version, erased_data_at=None).select_related("registered_model")
    )
    ModelVersion.objects.filter(pk__in=[found.pk for found in flagged]).update(erased_data_at=now)
    retrain: dict[int, ModelVersion] = {}
    for found in flagged:
        registered = found.registered_model
        audit_record(
            actor="system",
            action="model_version.erased_data_flagged",
            target=found,
            data={
                "model": registered.name,
                "version": found.version,
                "policy": registered.erasure_policy,
                "dataset_version": version.pk,
                "rows": len(positions),
            },
        )
        live = ModelAlias.objects.filter(version=found, name=ModelAlias.Name.CHAMPION).exists()
        if registered.erasure_policy == ErasurePolicy.RETRAIN and live:
            retrain[registered.pk] = found
    for found in retrain.values():
        retrain_queue(found)


def retrain_queue(flagged: ModelVersion) -> TrainingJob | None:
    """Queue a training job with the recipe that made `flagged` (its parameters and feature set) on its dataset
    version as it now is; it is released like any other version (gates, approval)."""
    from apps.registry.services import training_job_create

    made_by = TrainingJob.objects.filter(model_version=flagged).first()
    if made_by is None:  # an imported version has no recipe to repeat
        return None
    job = training_job_create(
        registered_model=flagged.registered_model,
        dataset_version=flagged.dataset_version,
        params=made_by.params,
        feature_set_version=flagged.feature_set_version,
        actor="system",
    )
    audit_record(
        actor="system",
        action="model_version.retrain_queued",
        target=flagged,
        data={"model": flagged.registered_model.name, "version": flagged.version, "job": job.pk},
    )
    return job


def blocked_message(*, model_name: str, version: int) -> str:
    return (
        f"{model_name} v{version} is blocked: rows it was trained on were erased at a data subject's request, and "
        "the model's erasure policy refuses to serve it. Promote a version trained since."
    )
