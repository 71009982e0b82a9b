from django.urls import path

from apps.monitoring.api.views import DriftReportsApi

app_name = "monitoring"

urlpatterns = [
    path("models/<str:name>/drift-reports", DriftReportsApi.as_view(), name="drift-reports"),
]
