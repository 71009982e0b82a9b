from django.urls import path

from apps.features.api import online

app_name = "online_store"

urlpatterns = [
    path("online-store/materialisations", online.MaterialisationListApi.as_view(), name="materialisation-list"),
    path(
        "online-store/materialisations/<int:job_id>",
        online.MaterialisationDetailApi.as_view(),
        name="materialisation-detail",
    ),
    path("online-store/<slug:name>/entities/<str:entity_id>", online.OnlineEntityApi.as_view(), name="entity-detail"),
]
