from django.urls import path

from apps.governance import views

app_name = "governance"

urlpatterns = [
    path("review/<str:token>/", views.review_status, name="review-status"),
]
