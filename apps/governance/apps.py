from django.apps import AppConfig


class GovernanceConfig(AppConfig):
    name = "apps.governance"
    label = "governance"

    def ready(self) -> None:
        from apps.governance import lockout

        lockout.connect()

        from apps.governance import roles  # the persona groups, synced after every migrate

        roles.connect()

        from apps.core import personal_data
        from apps.governance.personal_data import ReviewCases, SubjectRequests

        personal_data.register(ReviewCases())
        personal_data.register(SubjectRequests())
