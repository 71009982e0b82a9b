from django.core.management.base import BaseCommand, CommandError

from apps.data.services import dataset_storage_verify


class Command(BaseCommand):
    help = (
        "Recompute the SHA-256 of every dataset version's file, list missing files and files no version "
        "refers to, and (with --rematerialise) check each version rewrites to the same bytes."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rematerialise", action="store_true", help="Also rewrite each version and compare.")

    def handle(self, *args, rematerialise: bool, **options):
        report = dataset_storage_verify(rematerialise=rematerialise)
        for line in report.lines():
            self.stdout.write(line)
        if not report.ok:
            raise CommandError(f"{report.problem_count} problem(s) in dataset storage.")
        purged = f"; {report.purged} purged version(s) have no file" if report.purged else ""
        self.stdout.write(f"Dataset storage intact: {report.checked} version(s) verified{purged}.")
