"""Celery tasks of the governance app (Celery's autodiscovery imports this module)."""

from celery import shared_task

from apps.governance import services


@shared_task(name="governance.audit_anchor")
def audit_anchor() -> None:
    services.audit_anchor()
