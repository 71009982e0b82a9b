from celery import shared_task

from apps.data import services


@shared_task(name="data.ingest_job_run")
def ingest_job_run(job_id: int) -> None:
    services.ingest_job_run(job_id=job_id)
