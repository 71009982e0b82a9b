from django.contrib import admin

from apps.predictions.models import PredictionRecord


@admin.register(PredictionRecord)
class PredictionRecordAdmin(admin.ModelAdmin):
    list_display = ["request_id", "row", "model_version", "channel", "created_at"]
    list_filter = ["channel"]
    search_fields = ["=request_id", "=subject_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
