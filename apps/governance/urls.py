from django.urls import path

from apps.governance import views

app_name = "governance"

urlpatterns = [
    path("review/<str:token>/", views.review_status, name="review-status"),
    path("privacy/", views.privacy, name="privacy"),
    path("privacy/requests/<str:token>/", views.subject_request_status, name="subject-request-status"),
    path("privacy/requests/<str:token>/data.zip", views.subject_request_data, name="subject-request-data"),
]
