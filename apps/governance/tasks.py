"""Celery tasks of the governance app (Celery's autodiscovery imports this module)."""

from celery import shared_task

from apps.governance import services


@shared_task(name="governance.audit_anchor")
def audit_anchor() -> None:
    services.audit_anchor()


@shared_task(name="governance.erasure_run")
def erasure_run_task(request_id: int) -> None:
    from apps.governance import privacy

    privacy.erasure_run(request_id=request_id)


@shared_task(name="governance.erasures_resume")
def erasures_resume() -> None:
    from apps.governance import privacy

    privacy.erasures_resume()
