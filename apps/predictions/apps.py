from django.apps import AppConfig


class PredictionsConfig(AppConfig):
    name = "apps.predictions"
    label = "predictions"

    def ready(self) -> None:
        from apps.core import personal_data
        from apps.predictions.personal_data import BatchOutputs, DecisionLog

        personal_data.register(DecisionLog())
        personal_data.register(BatchOutputs())
