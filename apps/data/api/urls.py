from django.urls import path

from apps.data.api import views

app_name = "data"

urlpatterns = [
    path("datasets", views.DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<slug:name>", views.DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<slug:name>/versions", views.DatasetVersionListApi.as_view(), name="version-list"),
    path("datasets/<slug:name>/versions/<int:number>", views.DatasetVersionDetailApi.as_view(), name="version-detail"),
    path(
        "datasets/<slug:name>/versions/<int:number>/download",
        views.DatasetVersionDownloadApi.as_view(),
        name="version-download",
    ),
    path("datasets/<slug:name>/checks", views.DatasetCheckListApi.as_view(), name="check-list"),
    path("datasets/<slug:name>/checks/<int:check_id>", views.DatasetCheckDetailApi.as_view(), name="check-detail"),
    path("ingest-jobs/<int:job_id>", views.IngestJobDetailApi.as_view(), name="ingest-job-detail"),
]
