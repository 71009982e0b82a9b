from django.urls import path, re_path

from apps.data import views

app_name = "data"

urlpatterns = [
    path("datasets/", views.dataset_list, name="dataset-list"),
    path("datasets/jobs/<int:job_id>/", views.job_detail, name="job-detail"),
    path("datasets/jobs/<int:job_id>/status/", views.job_status, name="job-status"),
    path("datasets/<slug:name>/", views.dataset_detail, name="dataset-detail"),
    path("datasets/<slug:name>/upload/", views.dataset_upload, name="dataset-upload"),
    path("datasets/<slug:name>/v<int:number>/", views.version_detail, name="version-detail"),
    re_path(
        r"^datasets/(?P<name>[-a-zA-Z0-9_]+)/v(?P<number>[0-9]+)/download\.(?P<fmt>csv|parquet)$",
        views.version_download,
        name="version-download",
    ),
]
