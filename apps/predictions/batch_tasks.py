"""Celery wrappers of the batch scoring services: they take a job id and call the service of the same name."""

from celery import shared_task
from celery.signals import worker_init

from apps.predictions import batch_services

__all__ = ["batch_job_run", "batch_jobs_reap"]


@worker_init.connect
def _import_scoring_libraries(**_kwargs) -> None:
    """Import XGBoost and Arrow's readers as a worker starts (prefork children inherit them), not during the
    first job it runs: importing XGBoost takes seconds. Web processes never send this signal."""
    import pyarrow.compute
    import pyarrow.parquet  # noqa: F401
    import xgboost  # noqa: F401


@shared_task(name="predictions.batch_job_run")
def batch_job_run(job_id: int) -> None:
    batch_services.batch_job_run(job_id=job_id)


@shared_task(name="predictions.batch_jobs_reap")
def batch_jobs_reap() -> None:
    batch_services.batch_jobs_reap()
