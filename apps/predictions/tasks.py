"""Celery tasks of the predictions app (Celery's autodiscovery imports this module)."""

from celery import shared_task

from apps.predictions import services
from apps.predictions.batch_tasks import *  # noqa: F403


@shared_task(name="predictions.canaries_check")
def canaries_check() -> None:
    services.canaries_check()


@shared_task(name="predictions.retention_purge")
def retention_purge() -> None:
    from apps.predictions.retention import retention_purge as purge

    purge()
