from django.core.management.base import BaseCommand

from apps.registry.services import training_jobs_reap


class Command(BaseCommand):
    help = (
        "Take back training jobs whose worker died (lease lapsed): queue them again, or fail them after the "
        "last attempt. Beat runs this every FARO_JOB_REAP_INTERVAL_SECONDS."
    )

    def handle(self, *args, **options):
        reaped = training_jobs_reap()
        self.stdout.write(
            f"Reaped {len(reaped)} training job(s){': ' + ', '.join(map(str, reaped)) if reaped else ''}."
        )
