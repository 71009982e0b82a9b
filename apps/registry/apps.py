from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"

    def ready(self) -> None:
        from apps.data.personal_data import rows_erased
        from apps.registry.erasure import on_rows_erased

        rows_erased.connect(on_rows_erased, dispatch_uid="faro.registry.on_rows_erased")
