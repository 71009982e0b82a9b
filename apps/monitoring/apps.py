from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "apps.monitoring"
    label = "monitoring"

    def ready(self):
        from celery.signals import before_task_publish

        from apps.monitoring.queues import record_published_at

        # Every process that publishes tasks (web, worker, beat) sets Django up, so each stamps its messages.
        before_task_publish.connect(record_published_at, dispatch_uid="faro.monitoring.record_published_at")
