from django.apps import AppConfig


class DataConfig(AppConfig):
    name = "apps.data"
    label = "data"

    def ready(self) -> None:
        from apps.core import personal_data
        from apps.data.personal_data import DatasetVersionRows, IngestJobProblems

        personal_data.register(DatasetVersionRows())
        personal_data.register(IngestJobProblems())
