import logging

from celery import shared_task

from apps.core.errors import FaroError
from apps.registry.selectors import champion_versions

logger = logging.getLogger(__name__)


@shared_task(name="monitoring.drift_reports_run")
def drift_reports_run() -> None:
    """A drift report for every champion over the last FARO_DRIFT_WINDOW_HOURS (scheduled by beat)."""
    from django.conf import settings

    from apps.monitoring.services import drift_report_run

    for version in champion_versions():
        try:
            drift_report_run(
                model_name=version.registered_model.name,
                version=version.version,
                hours=settings.FARO_DRIFT_WINDOW_HOURS,
                actor="system",
            )
        except FaroError as exc:  # one model's problem (its feature set changed, say) does not stop the rest
            logger.warning("No drift report for %s: %s", version.registered_model.name, exc.message)


@shared_task(name="monitoring.checks_run")
def checks_run() -> None:
    """Live quality of every champion, SLOs of every model, failed jobs; alerts from them (beat)."""
    from apps.monitoring.services import checks_run as run

    run()
