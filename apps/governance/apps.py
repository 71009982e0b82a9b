from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "apps.governance"
    label = "governance"

    def ready(self) -> None:
        from apps.governance import lockout

        lockout.connect()
