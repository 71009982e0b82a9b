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


def _validated(dataset: Dataset, definition: Any) -> list[dict[str, Any]]:
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
    _validated(dataset, definition)
    with transaction.atomic():
        feature_set.save()
        audit_record(
            actor=actor, action="feature_set.created", target=feature_set, data={"name": name, "dataset": dataset.name}
        )
        feature_set_version_create(feature_set=feature_set, definition=definition, actor=actor)
    return feature_set


def feature_set_version_create(*, feature_set: FeatureSet, definition: Any, actor: Any = None) -> FeatureSetVersion:
    """A new immutable version; the same definition as the latest one is refused as a no-op."""
    _validated(feature_set.dataset, definition)
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
