from django.urls import path

from apps.predictions import views

urlpatterns = [
    path("", views.home, name="home"),
    path("decide/<slug:name>/", views.decision, name="decision"),
]
