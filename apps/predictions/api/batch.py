"""Batch scoring jobs over the API: create (JSON naming a dataset version, or multipart with a file), follow,
cancel, download. Reads need the 'read' scope and writes 'write'; a browser session must be staff, since a
batch result holds a decision about every row of its input."""

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import LimitedMultiPartParser, OrjsonParser, error_responses
from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.predictions import batch_services
from apps.predictions.models import BatchScoringJob

CREATE_FIELDS = {"model", "version", "alias", "dataset", "dataset_version", "output_format", "explain", "file"}


class StaffSessionOrScopedToken(HasScope):
    """A token needs the view's scope; a session must be staff's (other sessions may read and predict only)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not isinstance(request.auth, ApiToken) and user is not None and user.is_authenticated and not user.is_staff:
            self.message = "Batch scoring jobs are for staff."
            return False
        return super().has_permission(request, view)


class BatchJobSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    model = serializers.CharField(source="registered_model.name")
    version = serializers.IntegerField(source="model_version.version")
    dataset = serializers.CharField(source="dataset_version.dataset.name", allow_null=True, default=None)
    dataset_version = serializers.IntegerField(source="dataset_version.number", allow_null=True, default=None)
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = BatchScoringJob
        fields = [
            "id",
            "url",
            "model",
            "version",
            "dataset",
            "dataset_version",
            "input_name",
            "output_format",
            "explain",
            "status",
            "progress",
            "rows_total",
            "rows_done",
            "problem_count",
            "problems",
            "error",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
            "output_sha256",
            "download_url",
        ]

    def get_url(self, obj: BatchScoringJob) -> str:
        return f"/api/v1/batch-jobs/{obj.pk}"

    def get_download_url(self, obj: BatchScoringJob) -> str | None:
        return f"/api/v1/batch-jobs/{obj.pk}/download" if obj.status == BatchScoringJob.Status.SUCCEEDED else None


class BatchJobCreateSerializer(serializers.Serializer):
    model = serializers.SlugField(help_text="The registered model.")
    version = serializers.IntegerField(required=False, min_value=1, help_text="A version number instead of an alias.")
    alias = serializers.SlugField(required=False, help_text="Default: champion.")
    dataset = serializers.SlugField(required=False, help_text="A dataset to score (or send a file instead).")
    dataset_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")
    output_format = serializers.ChoiceField(choices=BatchScoringJob.Format.choices, default="parquet")
    explain = serializers.BooleanField(
        required=False, default=False, help_text="Add the top reasons of each decision (slower)."
    )


class BatchJobUploadSerializer(BatchJobCreateSerializer):
    file = serializers.FileField(help_text="CSV, Parquet or JSON Lines with the model's input columns.")


class FileDownloadNegotiation(DefaultContentNegotiation):
    """The download is a file whatever the client accepts; errors stay JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class BatchJobListApi(APIView):
    permission_classes = [StaffSessionOrScopedToken]
    parser_classes = [OrjsonParser, LimitedMultiPartParser]

    def get_permissions(self):
        self.required_scope = ApiToken.Scope.READ if self.request.method == "GET" else ApiToken.Scope.WRITE
        return super().get_permissions()

    @extend_schema(responses={200: BatchJobSerializer(many=True), **error_responses(401, 403)})
    def get(self, request):
        """The latest 100 batch scoring jobs."""
        return Response(BatchJobSerializer(batch_services.batch_job_list()[:100], many=True).data)

    @extend_schema(
        request={"application/json": BatchJobCreateSerializer, "multipart/form-data": BatchJobUploadSerializer},
        responses={202: BatchJobSerializer, **error_responses(400, 401, 403, 413, 415)},
    )
    def post(self, request):
        """Queue a batch scoring job of a dataset version (JSON) or an uploaded file (multipart); follow its `url`
        until it succeeds, then fetch its `download_url`."""
        if not hasattr(request.data, "keys"):
            raise InvalidInput("The body must be a JSON object.", extra={"fields": {"body": ["Expected an object."]}})
        unknown = sorted(set(request.data.keys()) - CREATE_FIELDS - {"csrfmiddlewaretoken"})
        if unknown:
            raise InvalidInput(
                f"Unknown field(s): {', '.join(unknown)}.",
                extra={"fields": {name: ["Unknown field."] for name in unknown}},
            )
        serializer = BatchJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        upload = request.FILES.get("file")
        if "file" in request.data and upload is None:
            raise InvalidInput(
                "Send the file as a multipart upload.", extra={"fields": {"file": ["Expected a file upload."]}}
            )
        job = batch_services.batch_job_create_from_refs(
            model=data["model"],
            version=data.get("version"),
            alias=data.get("alias"),
            dataset=data.get("dataset"),
            dataset_version=data.get("dataset_version"),
            upload=upload,
            output_format=data["output_format"],
            explain=data["explain"],
            actor=request.user,
        )
        return Response(
            BatchJobSerializer(batch_services.batch_job_get(job_id=job.pk)).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/batch-jobs/{job.pk}"},
        )


class BatchJobDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [StaffSessionOrScopedToken]

    @extend_schema(responses={200: BatchJobSerializer, **error_responses(401, 403, 404)})
    def get(self, request, job_id: int):
        return Response(BatchJobSerializer(batch_services.batch_job_get(job_id=job_id)).data)


class BatchJobCancelApi(APIView):
    """Cancel a queued or running job: a running one stops after the chunk it is scoring."""

    required_scope = ApiToken.Scope.WRITE
    permission_classes = [StaffSessionOrScopedToken]

    @extend_schema(request=None, responses={202: BatchJobSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, job_id: int):
        job = batch_services.batch_job_cancel(job=batch_services.batch_job_get(job_id=job_id), actor=request.user)
        return Response(BatchJobSerializer(batch_services.batch_job_get(job_id=job.pk)).data, status=202)


class BatchJobDownloadApi(APIView):
    """The result of a succeeded job (Parquet or CSV, as asked), streamed; every download is audited."""

    required_scope = ApiToken.Scope.READ
    permission_classes = [StaffSessionOrScopedToken]
    content_negotiation_class = FileDownloadNegotiation

    @extend_schema(
        responses={
            200: OpenApiResponse(OpenApiTypes.BINARY, description="One row per input row: id, scores, reasons."),
            **error_responses(401, 403, 404, 409, 503),
        },
    )
    def get(self, request, job_id: int):
        job = batch_services.batch_job_get(job_id=job_id)
        path, filename, content_type = batch_services.batch_job_download(job=job, actor=request.user)
        handle = open(path, "rb")  # noqa: SIM115 -- FileResponse closes it once sent
        response = FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)
        response["X-Content-SHA256"] = job.output_sha256
        return response
