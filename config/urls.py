from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.monitoring import views as monitoring_views

# URLs are tried in order and no two patterns match the same path, so the scoring endpoints (the busiest)
# come first: each request resolves after fewer tries.
api_v1 = [
    path("", include("apps.predictions.api.urls")),
    path("", include("apps.data.api.urls")),
    path("", include("apps.features.api.urls")),
    path("", include("apps.features.api.urls_online")),
    path("", include("apps.registry.api.urls")),
    path("", include("apps.monitoring.api.urls")),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"))),
    path("", include("apps.predictions.api.urls_v2")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="prometheus-metrics"),
    path("", include("apps.predictions.urls")),
    path("", include("apps.registry.urls")),
    path("", include("apps.data.urls")),
    path("", include("apps.features.urls")),
    path("", include("apps.monitoring.urls")),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
