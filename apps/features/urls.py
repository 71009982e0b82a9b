from django.urls import path

from apps.features import views

app_name = "features"

urlpatterns = [
    path("feature-sets/", views.feature_set_list, name="feature-set-list"),
    path("feature-sets/<slug:name>/", views.feature_set_detail, name="feature-set-detail"),
]
