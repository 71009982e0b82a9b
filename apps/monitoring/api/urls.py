from django.urls import path

from apps.monitoring.api.views import AlertApi, AlertsApi, DriftReportsApi, QualityReportsApi, SloApi

app_name = "monitoring"

urlpatterns = [
    path("models/<str:name>/drift-reports", DriftReportsApi.as_view(), name="drift-reports"),
    path("models/<str:name>/quality-reports", QualityReportsApi.as_view(), name="quality-reports"),
    path("models/<str:name>/slo", SloApi.as_view(), name="slo"),
    path("alerts", AlertsApi.as_view(), name="alerts"),
    path("alerts/<int:alert_id>", AlertApi.as_view(), name="alert"),
]
