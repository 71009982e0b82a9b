"""Reads for the registry."""

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob


def registered_model_list() -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.prefetch_related("aliases__version")


def registered_model_get(*, name: str) -> RegisteredModel:
    model = RegisteredModel.objects.filter(name=name).first()
    if model is None:
        raise NotFound(f"No registered model named {name!r}.")
    return model


def model_version_list(*, registered_model: RegisteredModel) -> QuerySet[ModelVersion]:
    return registered_model.versions.select_related("dataset_version__dataset").order_by("-version")


def model_version_get(*, registered_model: RegisteredModel, version: int) -> ModelVersion:
    found = registered_model.versions.filter(version=version).first()
    if found is None:
        raise NotFound(f"{registered_model.name} has no version {version}.")
    return found


def model_version_for_alias(*, model_name: str, alias: str) -> ModelVersion:
    found = (
        ModelAlias.objects.filter(registered_model__name=model_name, name=alias)
        .select_related("version__registered_model")
        .first()
    )
    if found is None:
        if not RegisteredModel.objects.filter(name=model_name).exists():
            raise NotFound(f"No registered model named {model_name!r}.")
        raise NotFound(f"{model_name} has no version with the alias {alias!r}.")
    return found.version


def model_version_by_number(*, model_name: str, version: int) -> ModelVersion:
    found = (
        ModelVersion.objects.filter(registered_model__name=model_name, version=version)
        .select_related("registered_model")
        .first()
    )
    if found is None:
        if not RegisteredModel.objects.filter(name=model_name).exists():
            raise NotFound(f"No registered model named {model_name!r}.")
        raise NotFound(f"{model_name} has no version {version}.")
    return found


def champion_versions() -> QuerySet[ModelVersion]:
    return ModelVersion.objects.filter(aliases__name=ModelAlias.Name.CHAMPION).select_related("registered_model")


def alias_history(*, registered_model: RegisteredModel) -> QuerySet[AliasChange]:
    return registered_model.alias_changes.select_related("from_version", "to_version")


def training_job_get(*, job_id: int) -> TrainingJob:
    job = (
        TrainingJob.objects.filter(pk=job_id)
        .select_related("registered_model", "dataset_version__dataset", "model_version")
        .first()
    )
    if job is None:
        raise NotFound(f"No training job {job_id}.")
    return job


def training_job_list() -> QuerySet[TrainingJob]:
    return TrainingJob.objects.select_related("registered_model", "dataset_version__dataset", "model_version")


def alias_at(*, registered_model: RegisteredModel, alias: str, at) -> AliasChange | None:
    """The alias move in force at time `at`: its `to_version` is the version the alias pointed at then."""
    return (
        registered_model.alias_changes.filter(alias=alias, at__lte=at)
        .select_related("to_version", "from_version")
        .order_by("-at", "-id")
        .first()
    )


def model_versions_by_numbers(*, registered_model: RegisteredModel, numbers: list[int]) -> list[ModelVersion]:
    found = {
        version.version: version
        for version in registered_model.versions.filter(version__in=numbers).select_related(
            "dataset_version__dataset", "feature_set_version__feature_set"
        )
    }
    missing = [number for number in numbers if number not in found]
    if missing:
        raise NotFound(f"{registered_model.name} has no version {', '.join(map(str, missing))}.")
    return [found[number] for number in numbers]
