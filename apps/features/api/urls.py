from django.urls import path

from apps.features.api import views

app_name = "features"

urlpatterns = [
    path("feature-sets", views.FeatureSetListApi.as_view(), name="feature-set-list"),
    path("feature-sets/<slug:name>", views.FeatureSetDetailApi.as_view(), name="feature-set-detail"),
    path("feature-sets/<slug:name>/versions", views.FeatureSetVersionListApi.as_view(), name="version-list"),
    path(
        "feature-sets/<slug:name>/versions/<int:number>",
        views.FeatureSetVersionDetailApi.as_view(),
        name="version-detail",
    ),
]
