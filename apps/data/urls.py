from django.urls import path

from apps.data import views

app_name = "data"

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/<slug:name>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:name>/v<int:number>/", views.version_detail, name="version-detail"),
]
