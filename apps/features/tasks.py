from celery import shared_task

from apps.features import services


@shared_task(name="features.materialisation_job_run")
def materialisation_job_run(job_id: int) -> None:
    services.materialisation_job_run(job_id=job_id)
