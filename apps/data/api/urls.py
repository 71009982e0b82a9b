from django.urls import path

from apps.data.api import views

app_name = "data"

urlpatterns = [
    path("datasets", views.DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<slug:name>", views.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<slug:name>/versions", views.DatasetVersionListApi.as_view(), name="version-list"),
    path("datasets/<slug:name>/versions/<int:number>", views.DatasetVersionDetailApi.as_view(), name="version-detail"),
]
