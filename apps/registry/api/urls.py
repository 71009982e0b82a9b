from django.urls import path

from apps.registry.api import views

app_name = "registry"

urlpatterns = [
    path("models", views.ModelListApi.as_view(), name="model-list"),
    path("models/<slug:name>", views.ModelDetailApi.as_view(), name="model-detail"),
    path("models/<slug:name>/versions", views.ModelVersionListApi.as_view(), name="version-list"),
    path("models/<slug:name>/versions/<int:version>", views.ModelVersionDetailApi.as_view(), name="version-detail"),
    path("models/<slug:name>/versions/<int:version>/approve", views.ModelVersionApproveApi.as_view(), name="approve"),
    path("models/<slug:name>/versions/<int:version>/reject", views.ModelVersionRejectApi.as_view(), name="reject"),
    path("models/<slug:name>/versions/<int:version>/gates", views.ModelVersionGatesApi.as_view(), name="gates"),
    path("models/<slug:name>/versions/<int:version>/onnx", views.ModelVersionOnnxApi.as_view(), name="onnx"),
    path("models/<slug:name>/versions/import", views.ModelVersionImportApi.as_view(), name="version-import"),
    path("models/<slug:name>/compare", views.ModelCompareApi.as_view(), name="compare"),
    path("models/<slug:name>/aliases/<slug:alias>", views.ModelAliasApi.as_view(), name="alias"),
    path("models/<slug:name>/aliases/<slug:alias>/at", views.ModelAliasAtApi.as_view(), name="alias-at"),
    path(
        "models/<slug:name>/aliases/<slug:alias>/rollback", views.ModelAliasRollbackApi.as_view(), name="alias-rollback"
    ),
    path("training-jobs", views.TrainingJobListApi.as_view(), name="training-job-list"),
    path("training-jobs/<int:job_id>", views.TrainingJobDetailApi.as_view(), name="training-job-detail"),
    path("training-jobs/<int:job_id>/cancel", views.TrainingJobCancelApi.as_view(), name="training-job-cancel"),
]
