from django.urls import path

from apps.registry import views

app_name = "registry"

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("training/new/", views.training_new, name="training-new"),
    path("training/<int:job_id>/", views.training_detail, name="training-detail"),
]
