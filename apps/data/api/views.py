from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.core.api import LimitedMultiPartParser, error_responses
from apps.core.errors import InvalidInput
from apps.data import selectors, services
from apps.data.models import Dataset, DatasetVersion
from apps.governance.permissions import ReadWriteScopedApi


class DatasetSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Dataset
        fields = ["name", "description", "target_column", "subject_key_column", "created_at", "latest_version"]
        read_only_fields = ["created_at", "latest_version"]
        extra_kwargs = {"name": {"validators": []}}

    def get_latest_version(self, obj: Dataset) -> int | None:
        latest = obj.versions.order_by("-number").first()
        return latest.number if latest else None


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")

    class Meta:
        model = DatasetVersion
        fields = [
            "dataset",
            "number",
            "sha256",
            "original_name",
            "original_sha256",
            "row_count",
            "schema",
            "statistics",
            "created_at",
        ]


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="A CSV file with a header row.")


class DatasetListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: DatasetSerializer(many=True), **error_responses(401, 403)})
    def get(self, request):
        return Response(DatasetSerializer(selectors.dataset_list(), many=True).data)

    @extend_schema(
        request=DatasetSerializer, responses={201: DatasetSerializer, **error_responses(400, 401, 403, 409, 415)}
    )
    def post(self, request):
        serializer = DatasetSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        dataset = services.dataset_create(**serializer.validated_data, actor=request.user)
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)


class DatasetDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: DatasetSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        return Response(DatasetSerializer(selectors.dataset_get(name=name)).data)


class DatasetVersionListApi(ReadWriteScopedApi):
    parser_classes = [LimitedMultiPartParser]

    @extend_schema(responses={200: DatasetVersionSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        return Response(DatasetVersionSerializer(dataset.versions.select_related("dataset"), many=True).data)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={201: DatasetVersionSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput(
                "Attach the CSV as the multipart field 'file'.", extra={"fields": {"file": ["This field is required."]}}
            )
        version = services.dataset_version_create_from_upload(dataset=dataset, upload=upload, actor=request.user)
        return Response(DatasetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetVersionDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: DatasetVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, number: int):
        dataset = selectors.dataset_get(name=name)
        return Response(DatasetVersionSerializer(selectors.dataset_version_get(dataset=dataset, number=number)).data)
