from django.core.management.base import BaseCommand, CommandError

from apps.governance.services import audit_verify


class Command(BaseCommand):
    help = "Walk the audit hash chain and name the first broken event."

    def handle(self, *args, **options):
        result = audit_verify()
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at event #{result.broken_seq}: {result.reason} "
                f"({result.checked} events verified before it)"
            )
        self.stdout.write(f"Audit chain intact: {result.checked} events verified.")
