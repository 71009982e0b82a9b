"""The Open Inference Protocol V2 routes, at the root of the site (/v2/...) as V2 clients expect them."""

from django.urls import path

from apps.predictions.api import v2

app_name = "v2"

urlpatterns = [
    path("v2", v2.V2ServerMetadataApi.as_view(), name="server-metadata"),
    path("v2/health/live", v2.V2LiveApi.as_view(), name="live"),
    path("v2/health/ready", v2.V2ReadyApi.as_view(), name="ready"),
    path("v2/models/<str:name>", v2.V2ModelMetadataApi.as_view(), name="model-metadata"),
    path("v2/models/<str:name>/versions/<int:version>", v2.V2ModelMetadataApi.as_view(), name="version-metadata"),
    path("v2/models/<str:name>/ready", v2.V2ModelReadyApi.as_view(), name="model-ready"),
    path("v2/models/<str:name>/versions/<int:version>/ready", v2.V2ModelReadyApi.as_view(), name="version-ready"),
    path("v2/models/<str:name>/infer", v2.V2InferApi.as_view(), name="infer"),
    path("v2/models/<str:name>/versions/<int:version>/infer", v2.V2InferApi.as_view(), name="version-infer"),
]
