"""Metrics read from Faro's state at scrape time: they are facts about the database and the broker, not
counts a process keeps, so every web worker would report the same value (and a multiprocess sum would
multiply it). Each scrape reads the newest report per model: a handful of small queries.

- faro_training_jobs{status}: training jobs by status.
- faro_celery_queue_depth{queue}, faro_celery_queue_oldest_age_seconds{queue}: what waits for a worker.
- faro_drift_status{model,version}: 1 when the champion's newest drift report says drifted, else 0;
  faro_drift_score{model,version,feature,measure}: its PSI and Jensen-Shannon distance per input.
- faro_live_quality{model,version,metric,source}: the newest quality report of each champion and running
  canary, measured from labels and estimated without them.
- faro_slo_error_budget_remaining{model,slo}: the newest SLO report's budget left per objective.
- faro_alerts_open{kind,severity}: unresolved alerts.
- faro_cpu_price_per_hour: the configured price, for cost per inference in PromQL (absent when unset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
DRIFT_MEASURES = {"psi": "psi", "js": "js_distance"}  # the label value, the report's key
QUALITY_METRICS = ("auc", "accuracy", "precision", "recall", "f1", "rmse", "mae")


class FaroStateCollector:
    """A prometheus_client collector (registered per scrape by the /metrics view)."""

    def collect(self) -> Iterator[Metric]:
        for part in (self._jobs, self._queues, self._drift, self._quality, self._slo, self._alerts, self._price):
            try:
                yield from part()
            except Exception as exc:  # one source down (the database, the broker) leaves the others
                logger.warning("Metrics: %s failed: %s", part.__name__.lstrip("_"), exc)

    def _jobs(self) -> Iterator[Metric]:
        from apps.registry.models import TrainingJob

        counts = dict.fromkeys(JOB_STATUSES, 0)
        for row in TrainingJob.objects.values("status").annotate(n=Count("pk")).order_by():
            counts[row["status"]] = row["n"]
        family = GaugeMetricFamily("faro_training_jobs", "Training jobs by status.", labels=["status"])
        for status, count in counts.items():
            family.add_metric([status], count)
        yield family

    def _queues(self) -> Iterator[Metric]:
        from apps.monitoring.queues import queue_stats

        depth = GaugeMetricFamily(
            "faro_celery_queue_depth", "Task messages waiting in each Celery queue.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "faro_celery_queue_oldest_age_seconds",
            "Age of the oldest waiting message in each Celery queue (absent when empty or unknown).",
            labels=["queue"],
        )
        for stat in queue_stats():
            depth.add_metric([stat.name], stat.depth)
            if stat.oldest_age_seconds is not None:
                age.add_metric([stat.name], stat.oldest_age_seconds)
        yield depth
        yield age

    def _drift(self) -> Iterator[Metric]:
        from apps.monitoring.selectors import newest_drift_reports

        status = GaugeMetricFamily(
            "faro_drift_status",
            "1 when the champion's newest drift report says drifted, else 0.",
            labels=["model", "version"],
        )
        score = GaugeMetricFamily(
            "faro_drift_score",
            "Distance between the served and the reference distribution of each input, from the newest report.",
            labels=["model", "version", "feature", "measure"],
        )
        for report in newest_drift_reports():
            model, version = report.model_version.registered_model.name, str(report.model_version.version)
            status.add_metric([model, version], 1.0 if report.status == "drifted" else 0.0)
            for feature in report.features:
                for measure, key in DRIFT_MEASURES.items():
                    value = feature.get(key)
                    if isinstance(value, int | float):
                        score.add_metric([model, version, str(feature.get("feature")), measure], float(value))
        yield status
        yield score

    def _quality(self) -> Iterator[Metric]:
        from apps.monitoring.selectors import newest_quality_reports

        family = GaugeMetricFamily(
            "faro_live_quality",
            "Quality of each champion and running canary in its newest report: measured from feedback labels, "
            "or estimated without them.",
            labels=["model", "version", "metric", "source"],
        )
        for report in newest_quality_reports():
            model, version = report.model_version.registered_model.name, str(report.model_version.version)
            for source, figures in (("labels", report.measured), ("estimate", report.estimated)):
                for metric in QUALITY_METRICS:
                    value = (figures or {}).get(metric)
                    if isinstance(value, int | float) and not isinstance(value, bool):
                        family.add_metric([model, version, metric, source], float(value))
        yield family

    def _slo(self) -> Iterator[Metric]:
        from apps.monitoring.selectors import newest_slo_reports

        family = GaugeMetricFamily(
            "faro_slo_error_budget_remaining",
            "Share of each SLO's error budget left in the newest SLO report (1 untouched, 0 or less spent; "
            "quality: 1 met, 0 not met).",
            labels=["model", "slo"],
        )
        for report in newest_slo_reports():
            for objective in report.objectives:
                if objective.get("budget_remaining") is not None:
                    family.add_metric(
                        [report.registered_model.name, objective["objective"]], float(objective["budget_remaining"])
                    )
        yield family

    def _alerts(self) -> Iterator[Metric]:
        from apps.monitoring.models import Alert

        family = GaugeMetricFamily(
            "faro_alerts_open", "Unresolved alerts by kind and severity.", labels=["kind", "severity"]
        )
        counts = {(kind, severity): 0 for kind in Alert.Kind.values for severity in Alert.Severity.values}
        rows = Alert.objects.exclude(status=Alert.Status.RESOLVED).values("kind", "severity").annotate(n=Count("pk"))
        for row in rows.order_by():
            counts[(row["kind"], row["severity"])] = row["n"]
        for (kind, severity), count in counts.items():
            family.add_metric([kind, severity], count)
        yield family

    def _price(self) -> Iterator[Metric]:
        if settings.FARO_CPU_PRICE_PER_HOUR is None:
            return
        yield GaugeMetricFamily(
            "faro_cpu_price_per_hour",
            f"The configured price of one CPU-hour, in {settings.FARO_COST_CURRENCY}.",
            value=settings.FARO_CPU_PRICE_PER_HOUR,
        )
