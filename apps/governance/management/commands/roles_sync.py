from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS, transaction

from apps.governance.roles import PERSONAS, roles_sync


class Command(BaseCommand):
    help = (
        "Create or update the persona groups (Product manager, Data scientist, ...) with exactly the permissions "
        "of the persona table, and print what changed. `migrate` runs it too."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="The database to sync.")

    def handle(self, *args, database: str, **options):
        with transaction.atomic(using=database):
            changes = roles_sync(using=database)
        for line in changes:
            self.stdout.write(line)
        if changes:
            self.stdout.write(f"{len(changes)} change(s) to {len(PERSONAS)} persona group(s).")
        else:
            self.stdout.write(f"The {len(PERSONAS)} persona groups already match the table; nothing changed.")
