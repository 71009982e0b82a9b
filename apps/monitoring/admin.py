from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.monitoring.models import DriftReport


@admin.register(DriftReport)
class DriftReportAdmin(ReadOnlyAdmin):
    """Drift reports as the service stored them (run one with the API or `manage.py drift_report`)."""

    list_display = ["model_version", "status", "rows", "window_start", "window_end", "requested_by", "created_at"]
    list_filter = ["status", "model_version__registered_model"]
    list_select_related = ["model_version__registered_model"]
    date_hierarchy = "created_at"
