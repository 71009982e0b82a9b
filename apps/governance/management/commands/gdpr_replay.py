from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import FaroError
from apps.governance.privacy import gdpr_replay, journal_path


class Command(BaseCommand):
    help = (
        "After restoring a backup: erase again every data subject whose erasure the database or the erasure "
        "journal (FARO_ERASURE_JOURNAL) records, matching them by digest in every store. Safe to run any time."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be erased; change nothing.")

    def handle(self, *args, dry_run: bool, **options):
        try:
            replay = gdpr_replay(dry_run=dry_run)
        except FaroError as exc:
            raise CommandError(exc.message) from None
        verb = "Would erase" if dry_run else "Erased"
        self.stdout.write(f"{replay.subjects} erased subject(s) in the database and {journal_path()}.")
        for store, count in sorted(replay.removed.items()):
            self.stdout.write(f"  {store}: {count}")
        self.stdout.write(f"{verb} {replay.total} item(s) that had come back.")
