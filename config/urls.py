from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

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

# The API docs: Swagger UI with its start-up script served as a file (the split view) and no inline style
# (templates/drf_spectacular/swagger_ui.html), under the site's policy plus data: images (its CSS draws its icons
# with them).
api_docs = csp_override({**settings.SECURE_CSP, "img-src": [CSP.SELF, "data:"]})(
    SpectacularSwaggerSplitView.as_view(url_name="schema")
)

urlpatterns = [
    path("api/v1/", include((api_v1, "api"))),
    path("", include("apps.predictions.api.urls_v2")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("healthz", monitoring_views.healthz, name="healthz"),
    path("readyz", monitoring_views.readyz, name="readyz"),
    path("metrics", monitoring_views.metrics, name="prometheus-metrics"),
    path("", include("apps.predictions.urls")),
    path("", include("apps.registry.urls")),
    path("", include("apps.data.urls")),
    path("", include("apps.features.urls")),
    path("", include("apps.monitoring.urls")),
    path("", include("apps.governance.urls")),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
