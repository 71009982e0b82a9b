"""Replay a model's training rows as live traffic, optionally shifted, then run the monitoring checks: the
way to watch a model drift, get an alert and see it on the dashboards.

    manage.py traffic_replay credit-risk --rows 2000 --scale credit_amount=2.5 --scale age=0.6

Rows are scored through the ordinary prediction service (validated, logged, counted), in requests of
--batch rows, as client "replay". Numeric inputs named by --scale are multiplied by the factor (integers are
rounded); --set replaces a categorical input's value (--set purpose=business).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import FaroError
from apps.data.selectors import dataset_version_table
from apps.monitoring.models import Alert
from apps.monitoring.services import drift_report_run, quality_report_run
from apps.predictions.services import prediction_make
from apps.registry.scoring import version_pipeline
from apps.registry.selectors import model_version_for_alias


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise CommandError(f"{option} {item!r}: expected NAME=VALUE")
        pairs[name] = value
    return pairs


class Command(BaseCommand):
    help = "Score the champion's training rows again as live traffic (optionally shifted), then check drift."

    def add_arguments(self, parser):
        parser.add_argument("model")
        parser.add_argument("--rows", type=int, default=1000, help="How many rows to send (default 1000).")
        parser.add_argument("--batch", type=int, default=50, help="Rows per request (default 50).")
        parser.add_argument("--scale", action="append", default=[], help="NAME=FACTOR for a numeric input.")
        parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for a categorical input.")
        parser.add_argument("--no-check", action="store_true", help="Only send the traffic.")

    def handle(self, *args, model: str, rows: int, batch: int, scale: list, set: list, no_check: bool, **options):
        if rows < 1 or not 1 <= batch <= 1000:
            raise CommandError("--rows must be at least 1 and --batch between 1 and 1000.")
        try:
            champion = model_version_for_alias(model_name=model, alias="champion")
        except FaroError as exc:
            raise CommandError(exc.message) from None
        signature = {item["name"]: item for item in version_pipeline(champion).signature()}
        factors, values = _pairs(scale, "--scale"), _pairs(set, "--set")
        for name in [*factors, *values]:
            if name not in signature:
                raise CommandError(f"{name!r} is not an input of {model}; inputs: {', '.join(signature)}")
        for name, factor in factors.items():
            if signature[name]["type"] not in ("integer", "number"):
                raise CommandError(f"--scale {name}: {name} is {signature[name]['type']}, not a number")
            try:
                factors[name] = float(factor)
            except ValueError:
                raise CommandError(f"--scale {name}={factor}: the factor is not a number") from None
        table = dataset_version_table(version=champion.dataset_version, columns=list(signature)).to_pylist()
        if not table:
            raise CommandError(f"The training data of {model} v{champion.version} has no rows.")
        sent = [self._shifted(table[index % len(table)], signature, factors, values) for index in range(rows)]
        for start in range(0, rows, batch):
            try:
                prediction_make(model_name=model, rows=sent[start : start + batch], client="replay")
            except FaroError as exc:
                raise CommandError(f"Rows {start} to {start + batch - 1}: {exc.message}") from None
        self.stdout.write(f"Sent {rows} rows to {model} in {(rows + batch - 1) // batch} requests.")
        if no_check:
            return
        drift = drift_report_run(model_name=model, hours=1, actor="system")
        drifted = ", ".join(drift.verdict.get("drifted") or []) or "none"
        self.stdout.write(f"Drift report {drift.pk}: {drift.status} (drifted inputs: {drifted}).")
        quality = quality_report_run(model_name=model, hours=1, actor="system")
        self.stdout.write(f"Quality report {quality.pk}: {quality.status}.")
        for alert in Alert.objects.filter(registered_model=champion.registered_model).exclude(status="resolved"):
            self.stdout.write(f"Open alert {alert.pk} ({alert.severity}): {alert.title}")

    @staticmethod
    def _shifted(row: dict[str, Any], signature: dict, factors: dict, values: dict) -> dict[str, Any]:
        out = dict(row)
        for name, factor in factors.items():
            if isinstance(out.get(name), int | float) and not isinstance(out.get(name), bool):
                shifted = out[name] * factor
                out[name] = round(shifted) if signature[name]["type"] == "integer" else shifted
        out.update(values)
        return {name: value for name, value in out.items() if value is not None}
