from django.urls import path

from apps.monitoring import views

app_name = "monitoring"

urlpatterns = [
    path("monitoring/", views.fleet, name="fleet"),
    path("monitoring/models/<slug:name>/", views.model_dashboard, name="model"),
]
