from django.core.management.base import BaseCommand, CommandError

from apps.predictions.retention import retention_purge


class Command(BaseCommand):
    help = (
        "Purge what is past its retention: dataset versions older than their dataset's retention (their files "
        "leave storage, the records stay) and decisions older than FARO_DECISION_LOG_RETENTION_DAYS (except those "
        "with an open review). Beat runs it every FARO_RETENTION_INTERVAL_SECONDS."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="List what would go; change nothing.")

    def handle(self, *args, dry_run: bool, **options):
        result = retention_purge(dry_run=dry_run)
        for line in result.lines():
            self.stdout.write(line)
        if result.errors:
            raise CommandError(f"{len(result.errors)} part(s) of the purge failed; see above.")
