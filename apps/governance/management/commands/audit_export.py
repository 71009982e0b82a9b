import sys
from contextlib import nullcontext
from datetime import datetime, time

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from apps.governance.chain import write_csv, write_jsonl
from apps.governance.services import audit_event_rows


def _moment(value: str, option: str) -> datetime:
    """A date (midnight, in TIME_ZONE) or an ISO 8601 date and time (in TIME_ZONE unless it says otherwise)."""
    try:
        moment = parse_datetime(value)
        if moment is None:
            day = parse_date(value)
            moment = datetime.combine(day, time.min) if day is not None else None
    except ValueError:
        moment = None
    if moment is None:
        raise CommandError(f"{option} {value!r} is not a date (2026-01-31) or a date and time (2026-01-31T12:00Z).")
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


class Command(BaseCommand):
    help = (
        "Export audit events for an auditor: every field of the hash chain, so the chain can be re-verified "
        "offline (python -m apps.governance.chain FILE). --since is inclusive, --until exclusive."
    )

    def add_arguments(self, parser):
        parser.add_argument("--since", help="the first day (or moment) to include, e.g. 2026-01-01")
        parser.add_argument("--until", help="the day (or moment) the export stops before, e.g. 2026-02-01")
        parser.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
        parser.add_argument("--output", metavar="FILE", help="where to write (default: standard output)")

    def handle(self, *args, **options):
        since = _moment(options["since"], "--since") if options["since"] else None
        until = _moment(options["until"], "--until") if options["until"] else None
        if since is not None and until is not None and until <= since:
            raise CommandError("--until must be later than --since.")
        rows = audit_event_rows(since=since, until=until).iterator(chunk_size=2000)
        output = options["output"]
        try:
            if options["format"] == "csv":
                with open(output, "w", newline="", encoding="utf-8") if output else nullcontext(sys.stdout) as handle:
                    count = write_csv(rows, handle)
            else:
                with open(output, "wb") if output else nullcontext(sys.stdout.buffer) as handle:
                    count = write_jsonl(rows, handle)
        except OSError as exc:
            raise CommandError(f"Cannot write the export: {exc}") from None
        summary = f"Exported {count} audit event{'' if count == 1 else 's'}" + (f" to {output}." if output else ".")
        (self.stdout if output else self.stderr).write(summary)
