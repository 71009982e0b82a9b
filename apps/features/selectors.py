"""Reads for feature sets."""

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.features.models import FeatureSet, FeatureSetVersion


def feature_set_list() -> QuerySet[FeatureSet]:
    return FeatureSet.objects.select_related("dataset")


def feature_set_get(*, name: str) -> FeatureSet:
    found = FeatureSet.objects.filter(name=name).select_related("dataset").first()
    if found is None:
        raise NotFound(f"No feature set named {name!r}.")
    return found


def feature_set_version_get(*, feature_set: FeatureSet, number: int | None = None) -> FeatureSetVersion:
    versions = feature_set.versions.select_related("feature_set__dataset")
    found = versions.filter(number=number).first() if number is not None else versions.order_by("-number").first()
    if found is None:
        raise NotFound(
            f"{feature_set.name} has no version {number}." if number else f"{feature_set.name} has no versions."
        )
    return found
