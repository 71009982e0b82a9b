from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response

from apps.core.api import LimitedMultiPartParser, error_responses
from apps.core.errors import InvalidInput, NotFound
from apps.data import selectors, services
from apps.data.models import ColumnTag, Dataset, DatasetCheck, DatasetVersion, IngestJob, LegalBasis
from apps.governance.permissions import ReadWriteScopedApi


class DatasetSerializer(serializers.ModelSerializer):
    latest_version = serializers.SerializerMethodField()
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    legal_basis = serializers.ChoiceField(choices=LegalBasis.choices, required=False, allow_blank=True)
    column_tags = serializers.DictField(
        child=serializers.ListField(child=serializers.ChoiceField(choices=ColumnTag.choices)),
        required=False,
        help_text="Column -> tags (personal, special_category, protected, target).",
    )

    class Meta:
        model = Dataset
        fields = [
            "name",
            "description",
            "target_column",
            "subject_key_column",
            "purpose",
            "legal_basis",
            "retention_days",
            "column_tags",
            "subject_categories",
            "recipients",
            "owner",
            "created_at",
            "latest_version",
        ]
        read_only_fields = ["created_at", "latest_version", "owner"]
        extra_kwargs = {"name": {"validators": []}}

    def get_latest_version(self, obj: Dataset) -> int | None:
        latest = obj.versions.order_by("-number").first()
        return latest.number if latest else None


class DatasetUpdateSerializer(DatasetSerializer):
    class Meta(DatasetSerializer.Meta):
        read_only_fields = [*DatasetSerializer.Meta.read_only_fields, "name"]


class DatasetVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")
    parent = serializers.IntegerField(source="parent.number", allow_null=True, default=None)

    class Meta:
        model = DatasetVersion
        fields = [
            "dataset",
            "number",
            "parent",
            "mode",
            "source_format",
            "sha256",
            "original_name",
            "original_sha256",
            "row_count",
            "schema",
            "statistics",
            "validation",
            "created_at",
            "purged_at",
            "purge_reason",
        ]


class IngestJobSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    dataset = serializers.CharField(source="dataset.name")
    dataset_version = serializers.IntegerField(source="dataset_version.number", allow_null=True, default=None)
    url = serializers.SerializerMethodField()

    class Meta:
        model = IngestJob
        fields = [
            "id",
            "url",
            "dataset",
            "status",
            "progress",
            "original_name",
            "original_sha256",
            "size_bytes",
            "options",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "problems",
            "details",
            "dataset_version",
        ]

    def get_url(self, obj: IngestJob) -> str:
        return f"/api/v1/ingest-jobs/{obj.pk}"


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="CSV, Parquet or JSON Lines.")
    mode = serializers.ChoiceField(choices=DatasetVersion.Mode.choices, required=False)
    format = serializers.ChoiceField(choices=["csv", "parquet", "jsonl"], required=False)
    delimiter = serializers.CharField(required=False, help_text="CSV only; detected when absent. 'tab' for tabs.")
    encoding = serializers.CharField(required=False, help_text="CSV only; UTF-8 (with or without BOM) by default.")
    accept_schema_change = serializers.BooleanField(required=False)
    sha256 = serializers.CharField(required=False, help_text="The file's SHA-256: a truncated upload is refused.")


class DatasetCheckSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=DatasetCheck.Kind.choices)
    severity = serializers.ChoiceField(choices=DatasetCheck.Severity.choices, required=False)
    column = serializers.CharField(required=False, allow_blank=True)
    params = serializers.DictField(required=False)

    class Meta:
        model = DatasetCheck
        fields = ["id", "kind", "column", "params", "severity", "enabled", "created_at"]
        read_only_fields = ["created_at"]


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

    @extend_schema(
        request=DatasetUpdateSerializer, responses={200: DatasetSerializer, **error_responses(400, 401, 403, 404, 415)}
    )
    def patch(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        serializer = DatasetUpdateSerializer(dataset, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        dataset = services.dataset_update(dataset=dataset, **serializer.validated_data, actor=request.user)
        return Response(DatasetSerializer(dataset).data)


class DatasetVersionListApi(ReadWriteScopedApi):
    parser_classes = [LimitedMultiPartParser]

    @extend_schema(responses={200: DatasetVersionSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        versions = dataset.versions.select_related("dataset", "parent")
        return Response(DatasetVersionSerializer(versions, many=True).data)

    @extend_schema(
        request={"multipart/form-data": UploadSerializer},
        responses={202: IngestJobSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request, name: str):
        """Queue an upload for ingestion; follow the job's `url` until it succeeds or fails."""
        dataset = selectors.dataset_get(name=name)
        upload = request.FILES.get("file")
        if upload is None:
            raise InvalidInput(
                "Attach the file as the multipart field 'file'.",
                extra={"fields": {"file": ["This field is required."]}},
            )
        options = {
            key: request.data.get(key) for key in ("mode", "format", "delimiter", "encoding", "accept_schema_change")
        }
        job = services.ingest_job_create(
            dataset=dataset,
            upload=upload,
            options=options,
            expected_sha256=request.data.get("sha256") or "",
            actor=request.user,
        )
        return Response(
            IngestJobSerializer(selectors.ingest_job_get(job_id=job.pk)).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/ingest-jobs/{job.pk}"},
        )


class DatasetVersionDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: DatasetVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, number: int):
        dataset = selectors.dataset_get(name=name)
        return Response(DatasetVersionSerializer(selectors.dataset_version_get(dataset=dataset, number=number)).data)


class FileFormatNegotiation(DefaultContentNegotiation):
    """Here `?format=` names the file to download, not a DRF renderer: answers and errors stay JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class DatasetVersionDownloadApi(ReadWriteScopedApi):
    content_negotiation_class = FileFormatNegotiation

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=["csv", "parquet"], description="Default: csv.")],
        responses={
            200: OpenApiResponse(OpenApiTypes.BINARY, description="The version's rows."),
            **error_responses(400, 401, 403, 404, 409, 503),
        },
    )
    def get(self, request, name: str, number: int):
        """The version's rows; 409 for a version purged under its dataset's retention."""
        dataset = selectors.dataset_get(name=name)
        version = selectors.dataset_version_get(dataset=dataset, number=number)
        fmt = request.query_params.get("format", "csv")
        content, content_type = services.dataset_version_export(version=version, fmt=fmt, actor=request.user)
        filename = f"{dataset.name}-v{version.number}.{fmt}"
        if fmt == "parquet":
            return FileResponse(open(content, "rb"), as_attachment=True, filename=filename, content_type=content_type)
        response = StreamingHttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response


class IngestJobDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: IngestJobSerializer, **error_responses(401, 403, 404)})
    def get(self, request, job_id: int):
        return Response(IngestJobSerializer(selectors.ingest_job_get(job_id=job_id)).data)


class DatasetCheckListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: DatasetCheckSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        return Response(DatasetCheckSerializer(dataset.checks.all(), many=True).data)

    @extend_schema(
        request=DatasetCheckSerializer,
        responses={201: DatasetCheckSerializer, **error_responses(400, 401, 403, 404, 415)},
    )
    def post(self, request, name: str):
        dataset = selectors.dataset_get(name=name)
        serializer = DatasetCheckSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        check = services.dataset_check_create(dataset=dataset, **serializer.validated_data, actor=request.user)
        return Response(DatasetCheckSerializer(check).data, status=status.HTTP_201_CREATED)


class DatasetCheckDetailApi(ReadWriteScopedApi):
    def _check(self, name: str, check_id: int) -> DatasetCheck:
        check = selectors.dataset_get(name=name).checks.filter(pk=check_id).first()
        if check is None:
            raise NotFound(f"Dataset {name!r} has no check {check_id}.")
        return check

    @extend_schema(responses={200: DatasetCheckSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, check_id: int):
        return Response(DatasetCheckSerializer(self._check(name, check_id)).data)

    @extend_schema(
        request=DatasetCheckSerializer,
        responses={200: DatasetCheckSerializer, **error_responses(400, 401, 403, 404, 415)},
    )
    def patch(self, request, name: str, check_id: int):
        check = self._check(name, check_id)
        serializer = DatasetCheckSerializer(check, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        check = services.dataset_check_update(check=check, **serializer.validated_data, actor=request.user)
        return Response(DatasetCheckSerializer(check).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)})
    def delete(self, request, name: str, check_id: int):
        services.dataset_check_delete(check=self._check(name, check_id), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
