from django.urls import path

from apps.predictions.api.invocations import InvocationsApi
from apps.predictions.api.views import PredictApi

app_name = "predictions"

urlpatterns = [
    path("models/<str:name>/predict", PredictApi.as_view(), name="predict"),
    path("models/<str:name>/invocations", InvocationsApi.as_view(), name="invocations"),
]
