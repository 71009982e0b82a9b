"""The online store over the API: queue a materialisation, follow it, read one entity's latest values."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.core.api import error_responses
from apps.data.selectors import dataset_get, dataset_version_get
from apps.features import online, services
from apps.features.models import MaterialisationJob
from apps.governance.permissions import ReadWriteScopedApi


class MaterialisationRequestSerializer(serializers.Serializer):
    dataset = serializers.CharField(help_text="The dataset's name; it must declare a subject key.")
    dataset_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")
    timestamp_column = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        help_text="A datetime column: each entity's latest row by it is kept. Empty: each entity's last row.",
    )


class MaterialisationJobSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    url = serializers.SerializerMethodField()
    dataset = serializers.CharField(source="dataset_version.dataset.name")
    dataset_version = serializers.IntegerField(source="dataset_version.number")

    class Meta:
        model = MaterialisationJob
        fields = [
            "id",
            "url",
            "dataset",
            "dataset_version",
            "timestamp_column",
            "store",
            "status",
            "progress",
            "rows_read",
            "rows_written",
            "created_at",
            "started_at",
            "finished_at",
            "error",
        ]

    def get_url(self, obj: MaterialisationJob) -> str:
        return f"/api/v1/online-store/materialisations/{obj.pk}"


class OnlineEntitySerializer(serializers.Serializer):
    dataset = serializers.CharField()
    entity_id = serializers.CharField()
    values = serializers.DictField(help_text="The entity's source column values (dates as ISO 8601 text).")
    event_time = serializers.DateTimeField(
        allow_null=True, help_text="The values' time in the materialisation's timestamp column, if it had one."
    )
    materialised_at = serializers.DateTimeField(help_text="When the values were written to the online store.")


class MaterialisationListApi(ReadWriteScopedApi):
    @extend_schema(
        request=MaterialisationRequestSerializer,
        responses={202: MaterialisationJobSerializer, **error_responses(400, 401, 403, 404, 503)},
    )
    def post(self, request):
        """Queue writing a dataset version's latest row per entity to the online store; follow the job's `url`."""
        serializer = MaterialisationRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        version = dataset_version_get(dataset=dataset_get(name=data["dataset"]), number=data.get("dataset_version"))
        job = services.materialisation_job_create(
            dataset_version=version, timestamp_column=data["timestamp_column"], actor=request.user
        )
        return Response(
            MaterialisationJobSerializer(online.materialisation_job_get(job_id=job.pk)).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/online-store/materialisations/{job.pk}"},
        )


class MaterialisationDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: MaterialisationJobSerializer, **error_responses(401, 403, 404)})
    def get(self, request, job_id: int):
        return Response(MaterialisationJobSerializer(online.materialisation_job_get(job_id=job_id)).data)


class OnlineEntityApi(ReadWriteScopedApi):
    @extend_schema(responses={200: OnlineEntitySerializer, **error_responses(401, 403, 404, 503)})
    def get(self, request, name: str, entity_id: str):
        """One entity's latest values in the online store, with their event time and materialisation time."""
        dataset = dataset_get(name=name)
        values, event_time, materialised_at = online.entity_get(dataset=dataset, entity_id=entity_id)
        return Response(
            OnlineEntitySerializer(
                {
                    "dataset": dataset.name,
                    "entity_id": entity_id,
                    "values": values,
                    "event_time": event_time,
                    "materialised_at": materialised_at,
                }
            ).data
        )
