from django.core.management.base import BaseCommand

from apps.governance.privacy import erasures_resume


class Command(BaseCommand):
    help = "Queue again every erasure left in progress by a stopped worker (beat does this every lease period)."

    def handle(self, *args, **options):
        resumed = erasures_resume()
        self.stdout.write(f"Queued {len(resumed)} erasure(s) again" + (f": {resumed}" if resumed else "."))
