from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import FaroError
from apps.data.selectors import dataset_get, dataset_version_get
from apps.features.services import training_table_build


def _version(reference: str):
    name, _, number = reference.partition(":")
    dataset = dataset_get(name=name)
    return dataset_version_get(dataset=dataset, number=int(number) if number else None)


class Command(BaseCommand):
    help = (
        "Build a point-in-time correct training table: each label row gets the feature values known at its "
        "event time, never later ones; the table becomes the next version of another dataset."
    )

    def add_arguments(self, parser):
        parser.add_argument("--labels", required=True, help="dataset[:version] of label events")
        parser.add_argument("--features", required=True, help="dataset[:version] of timestamped feature rows")
        parser.add_argument("--entity", required=True, help="the entity column, in both")
        parser.add_argument("--label-time", required=True, help="the event time column of the labels")
        parser.add_argument("--feature-time", required=True, help="the timestamp column of the features")
        parser.add_argument("--into", required=True, help="the dataset that receives the table")
        parser.add_argument("--ttl-seconds", type=float, help="ignore feature values older than this")

    def handle(self, *args, **options):
        try:
            version = training_table_build(
                labels=_version(options["labels"]),
                features=_version(options["features"]),
                entity=options["entity"],
                label_time=options["label_time"],
                feature_time=options["feature_time"],
                into=dataset_get(name=options["into"]),
                ttl_seconds=options["ttl_seconds"],
            )
        except FaroError as exc:
            problems = "; ".join(p.get("message", "") for p in exc.extra.get("problems", [])[:10])
            raise CommandError(f"{exc.message} {problems}".strip()) from None
        self.stdout.write(
            f"{version.dataset.name} v{version.number}: {version.row_count} rows, SHA-256 {version.sha256}"
        )
