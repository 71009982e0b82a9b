from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import FaroError
from apps.monitoring.services import drift_report_run


class Command(BaseCommand):
    help = "Compare the inputs a model version served in a recent window with its training data, and store the report."

    def add_arguments(self, parser):
        parser.add_argument("model", help="registered model name")
        parser.add_argument(
            "--model-version", type=int, dest="model_version", help="a version number (default: the champion)"
        )
        parser.add_argument("--hours", type=float, default=24.0, help="the window: the last N hours (default 24)")

    def handle(self, *args, model, model_version, hours, **options):
        try:
            report = drift_report_run(model_name=model, version=model_version, hours=hours, actor="system")
        except FaroError as exc:
            raise CommandError(exc.message) from None
        verdict = report.verdict
        self.stdout.write(
            f"Drift report {report.pk} for {model} v{report.model_version.version}: {report.status} "
            f"({report.rows} decisions). {verdict['reason']}"
        )
        for feature in report.features:
            self.stdout.write(f"  {feature['feature']}: {feature['status']} - {feature['reason']}")
        for name, why in report.excluded.items():
            self.stdout.write(f"  {name}: not monitored ({why})")
