"""The monitoring console: stored drift, quality and SLO reports (read-only), alerts to acknowledge or
resolve, and per model "run now" actions for drift, quality and SLOs."""

from django.conf import settings
from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.monitoring import alerts as alert_services
from apps.monitoring.models import Alert, DriftReport, MonitoredModel, QualityReport, SloReport
from apps.monitoring.services import drift_report_run, quality_report_run, slo_report_run


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    """Drift reports as the service stored them (run one from "Monitored models", the API or
    `manage.py drift_report`)."""

    list_display = [
        "model_version",
        "status",
        "reference",
        "rows",
        "window_start",
        "window_end",
        "requested_by",
        "created_at",
    ]
    list_filter = ["status", "reference", "model_version__registered_model"]
    list_select_related = ["model_version__registered_model"]
    date_hierarchy = "created_at"


@admin.register(QualityReport)
class QualityReportAdmin(ReadOnlyAdmin):
    list_display = [
        "model_version",
        "status",
        "metric",
        "value",
        "estimated_value",
        "rows",
        "labelled",
        "window_end",
        "created_at",
    ]
    list_filter = ["status", "model_version__registered_model"]
    list_select_related = ["model_version__registered_model"]
    date_hierarchy = "created_at"


@admin.register(SloReport)
class SloReportAdmin(ReadOnlyAdmin):
    list_display = ["registered_model", "requests", "window_start", "window_end", "created_at"]
    list_filter = ["registered_model"]
    list_select_related = ["registered_model"]
    date_hierarchy = "created_at"


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts are raised and resolved by the checks; people acknowledge them, or resolve them by hand."""

    list_display = ["title", "kind", "severity", "status", "registered_model", "occurrences", "opened_at"]
    list_filter = ["status", "kind", "severity", "registered_model"]
    list_select_related = ["registered_model"]
    search_fields = ["title", "key"]
    date_hierarchy = "opened_at"
    actions = ["acknowledge", "resolve"]

    def has_change_permission(self, request, obj=None):  # the actions need it; the form stays read-only
        return request.user.has_perm("monitoring.change_alert")

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in Alert._meta.fields]

    def _act(self, request, queryset, act, done: str) -> None:
        for alert in queryset:
            try:
                act(alert_id=alert.pk, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, messages.WARNING)
            else:
                self.message_user(request, f"Alert {alert.pk} {done}.")

    @admin.action(description="Acknowledge (someone is on it)", permissions=["change"])
    def acknowledge(self, request, queryset):
        self._act(request, queryset, alert_services.alert_acknowledge, "acknowledged")

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request, queryset):
        self._act(request, queryset, alert_services.alert_resolve, "resolved")


@admin.register(MonitoredModel)
class MonitoredModelAdmin(ReadOnlyAdmin):
    """Run monitoring now for the selected models' champions, instead of waiting for the schedule."""

    list_display = ["name", "latency_p95_ms_target", "availability_target", "quality_minimum"]
    search_fields = ["name"]
    actions = ["drift_now", "quality_now", "slo_now"]

    def _run(self, request, queryset, run, what: str) -> None:
        for model in queryset:
            try:
                report = run(model)
            except FaroError as exc:
                self.message_user(request, f"{model.name}: {exc.message}", messages.ERROR)
            else:
                self.message_user(
                    request, f"{model.name}: {what} {report.pk} stored ({getattr(report, 'status', 'ok')})."
                )

    @admin.action(description="Run a drift report now (the champion, the last FARO_DRIFT_WINDOW_HOURS)")
    def drift_now(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda model: drift_report_run(
                model_name=model.name, hours=settings.FARO_DRIFT_WINDOW_HOURS, actor=request.user
            ),
            "drift report",
        )

    @admin.action(description="Measure live quality now (the champion, the last FARO_QUALITY_WINDOW_HOURS)")
    def quality_now(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda model: quality_report_run(
                model_name=model.name, hours=settings.FARO_QUALITY_WINDOW_HOURS, actor=request.user
            ),
            "quality report",
        )

    @admin.action(description="Compute the SLOs now (the last FARO_SLO_WINDOW_DAYS)")
    def slo_now(self, request, queryset):
        self._run(
            request,
            queryset,
            lambda model: slo_report_run(registered_model=model, days=settings.FARO_SLO_WINDOW_DAYS),
            "SLO report",
        )
