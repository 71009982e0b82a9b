from django.apps import AppConfig


class DataConfig(AppConfig):
    name = "apps.data"
    label = "data"
