"""Reads for monitoring: the newest reports per model, alerts, and the series the dashboards chart."""

from __future__ import annotations

from django.db.models import Max, QuerySet

from apps.monitoring.models import Alert, DriftReport, QualityReport, SloReport
from apps.predictions.models import TrafficPolicy
from apps.registry.models import ModelVersion
from apps.registry.selectors import champion_versions


def _newest_per_version(model, versions) -> list:
    ids = (
        model.objects.filter(model_version__in=versions)
        .values("model_version")
        .annotate(newest=Max("pk"))
        .values_list("newest", flat=True)
    )
    return list(model.objects.filter(pk__in=list(ids)).select_related("model_version__registered_model"))


def newest_drift_reports() -> list[DriftReport]:
    """The newest drift report of each champion."""
    return _newest_per_version(DriftReport, champion_versions())


def served_versions() -> list[ModelVersion]:
    """The versions answering default traffic: every champion, and every canary while it runs."""
    champions = list(champion_versions())
    seen = {version.pk for version in champions}
    canaries = [
        policy.canary_version
        for policy in TrafficPolicy.objects.filter(canary_version__isnull=False).select_related(
            "canary_version__registered_model"
        )
        if policy.canary_version_id not in seen
    ]
    return champions + canaries


def newest_quality_reports() -> list[QualityReport]:
    """The newest quality report of each champion and running canary."""
    return _newest_per_version(QualityReport, served_versions())


def newest_slo_reports() -> list[SloReport]:
    """The newest SLO report of each registered model."""
    ids = SloReport.objects.values("registered_model").annotate(newest=Max("pk")).values_list("newest", flat=True)
    return list(SloReport.objects.filter(pk__in=list(ids)).select_related("registered_model"))


def alert_list(*, status: str | None = None, model_name: str | None = None) -> QuerySet[Alert]:
    alerts = Alert.objects.select_related("registered_model")
    if status == "unresolved":
        alerts = alerts.exclude(status=Alert.Status.RESOLVED)
    elif status:
        alerts = alerts.filter(status=status)
    if model_name:
        alerts = alerts.filter(registered_model__name=model_name)
    return alerts
