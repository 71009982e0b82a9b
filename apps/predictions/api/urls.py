from django.urls import path

from apps.predictions.api.views import PredictApi

app_name = "predictions"

urlpatterns = [
    path("models/<str:name>/predict", PredictApi.as_view(), name="predict"),
]
