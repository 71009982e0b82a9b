from django.core.management.base import BaseCommand, CommandError

from apps.governance.chain import anchors_parse
from apps.governance.services import audit_verify


class Command(BaseCommand):
    help = (
        "Walk the audit hash chain and name the first broken event; with --anchors, also check that every "
        "anchored (seq, hash) still matches the chain."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--anchors",
            metavar="FILE",
            help="an anchor file written by the audit_anchor task (FARO_AUDIT_ANCHOR_FILE), one JSON line each",
        )

    def handle(self, *args, **options):
        anchors = None
        if options["anchors"]:
            try:
                with open(options["anchors"], "rb") as handle:
                    anchors = anchors_parse(handle)
            except OSError as exc:
                raise CommandError(f"Cannot read the anchor file: {exc}") from None
            except ValueError as exc:
                raise CommandError(f"The anchor file {options['anchors']}: {exc}") from None
        result = audit_verify(anchors=anchors)
        if not result.ok:
            raise CommandError(
                f"Audit chain broken at event #{result.broken_seq}: {result.reason} "
                f"({result.checked} events verified before it)"
            )
        matched = f", {len(anchors)} anchor{'' if len(anchors) == 1 else 's'} matched" if anchors is not None else ""
        self.stdout.write(f"Audit chain intact: {result.checked} events verified{matched}.")
