from django.urls import path

from apps.predictions.api.batch import BatchJobCancelApi, BatchJobDetailApi, BatchJobDownloadApi, BatchJobListApi
from apps.predictions.api.invocations import InvocationsApi
from apps.predictions.api.traffic import FeedbackApi, TrafficPolicyApi
from apps.predictions.api.views import PredictApi

app_name = "predictions"

urlpatterns = [
    path("models/<str:name>/predict", PredictApi.as_view(), name="predict"),
    path("models/<str:name>/invocations", InvocationsApi.as_view(), name="invocations"),
]
urlpatterns += [
    path("batch-jobs", BatchJobListApi.as_view(), name="batch-job-list"),
    path("batch-jobs/<int:job_id>", BatchJobDetailApi.as_view(), name="batch-job-detail"),
    path("batch-jobs/<int:job_id>/cancel", BatchJobCancelApi.as_view(), name="batch-job-cancel"),
    path("batch-jobs/<int:job_id>/download", BatchJobDownloadApi.as_view(), name="batch-job-download"),
]
urlpatterns += [
    path("models/<str:name>/traffic", TrafficPolicyApi.as_view(), name="traffic-policy"),
    path("predictions/<uuid:request_id>/feedback", FeedbackApi.as_view(), name="feedback"),
]
