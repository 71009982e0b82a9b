from django.urls import path

from apps.registry import views, views_register

app_name = "registry"

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/<slug:name>/", views.model_detail, name="model-detail"),
    path("models/<slug:name>/compare/", views.compare, name="compare"),
    path("models/<slug:name>/import/", views.version_import, name="version-import"),
    path("models/<slug:name>/aliases/<slug:alias>/rollback/", views.alias_rollback, name="alias-rollback"),
    path("models/<slug:name>/versions/<int:version>/", views.version_detail, name="version-detail"),
    path("models/<slug:name>/versions/<int:version>/card/", views.version_card, name="version-card"),
    path("models/<slug:name>/versions/<int:version>/approve/", views.version_approve, name="version-approve"),
    path("models/<slug:name>/versions/<int:version>/reject/", views.version_reject, name="version-reject"),
    path("models/<slug:name>/versions/<int:version>/promote/", views.version_promote, name="version-promote"),
    path("models/<slug:name>/versions/<int:version>/gates/", views.version_gates, name="version-gates"),
    path("training/new/", views.training_new, name="training-new"),
    path("training/<int:job_id>/", views.training_detail, name="training-detail"),
    path("training/<int:job_id>/cancel/", views.training_cancel, name="training-cancel"),
    path("governance/register/", views_register.processing_register, name="processing-register"),
]
