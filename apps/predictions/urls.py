from django.urls import path

from apps.predictions import views, views_review
from apps.predictions.views_batch import batch_cancel, batch_detail, batch_download, batch_list

urlpatterns = [
    path("", views.home, name="home"),
    path("decide/<slug:name>/", views.decision, name="decision"),
    path("decide/<slug:name>/review/<uuid:request_id>/", views_review.decision_review, name="decision-review"),
]
urlpatterns += [
    path("batch/", batch_list, name="batch-list"),
    path("batch/<int:job_id>/", batch_detail, name="batch-detail"),
    path("batch/<int:job_id>/cancel/", batch_cancel, name="batch-cancel"),
    path("batch/<int:job_id>/download/", batch_download, name="batch-download"),
]
