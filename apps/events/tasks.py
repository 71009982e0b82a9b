import logging

from celery import shared_task

from apps.core.errors import NotFound
from apps.events import services

logger = logging.getLogger(__name__)


@shared_task(name="events.delivery_attempt")
def delivery_attempt(delivery_id: int) -> None:
    try:
        services.delivery_attempt(delivery_id=delivery_id)
    except NotFound:
        # Its webhook was deleted after the event was emitted: nothing left to deliver.
        logger.info("webhook delivery %s no longer exists", delivery_id)


@shared_task(name="events.deliveries_retry")
def deliveries_retry() -> int:
    return services.deliveries_due()
