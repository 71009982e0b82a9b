from celery import shared_task

from apps.registry import services


@shared_task(name="registry.training_job_run")
def training_job_run(job_id: int) -> None:
    services.training_job_run(job_id=job_id)


@shared_task(name="registry.training_jobs_reap")
def training_jobs_reap() -> None:
    services.training_jobs_reap()
