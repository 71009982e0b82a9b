from django.apps import AppConfig


class FeaturesConfig(AppConfig):
    name = "apps.features"
    label = "features"

    def ready(self) -> None:
        from apps.core import personal_data
        from apps.features.personal_data import OnlineFeatures

        personal_data.register(OnlineFeatures())
