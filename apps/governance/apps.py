from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "apps.governance"
    label = "governance"

    def ready(self) -> None:
        from apps.governance import lockout

        lockout.connect()

        from apps.governance import roles  # the persona groups, synced after every migrate

        roles.connect()
