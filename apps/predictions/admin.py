from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.predictions.models import PredictionRecord


@admin.register(PredictionRecord)
class PredictionRecordAdmin(ReadOnlyAdmin):
    list_display = ["request_id", "row", "model_version", "channel", "created_at"]
    list_filter = ["channel"]
    search_fields = ["=request_id", "=subject_id"]
