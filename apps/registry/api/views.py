import orjson
from django.http import HttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import LimitedMultiPartParser, error_responses
from apps.core.artefacts import artefact_read_bytes
from apps.core.errors import InvalidInput, NotFound
from apps.data.selectors import dataset_get, dataset_version_get
from apps.features.selectors import feature_set_get, feature_set_version_get
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope, ReadWriteScopedApi, check_model_change
from apps.registry import selectors, services
from apps.registry.compare import versions_compare
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel, TaskType, TrainingJob
from apps.registry.training import PARAM_DOCS


class ModelVersionSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset_version.dataset.name")
    dataset_version = serializers.IntegerField(source="dataset_version.number")
    feature_set = serializers.CharField(source="feature_set_version", allow_null=True, default=None)
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "task_type",
            "target_column",
            "labels",
            "dataset",
            "dataset_version",
            "feature_set",
            "feature_definition_hash",
            "params",
            "metrics",
            "signature",
            "artefact_sha256",
            "size_bytes",
            "created_at",
            "aliases",
            "status",
            "source",
            "onnx_sha256",
            "onnx_parity",
            "evaluation",
            "lineage",
            "gate_report",
            "maker",
            "decided_at",
            "decision_note",
            "erased_data_at",
        ]

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in obj.aliases.all())


class ModelVersionSummarySerializer(ModelVersionSerializer):
    class Meta(ModelVersionSerializer.Meta):
        fields = [name for name in ModelVersionSerializer.Meta.fields if name != "evaluation"]


SLA_FIELDS = [
    name for name in services.MODEL_FIELDS if name not in ("description", "task_type", "favourable_label", "owner")
]


class RegisteredModelSerializer(serializers.ModelSerializer):
    aliases = serializers.SerializerMethodField()
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "task_type", "favourable_label", "owner", *SLA_FIELDS, "created_at", "aliases"]

    def get_aliases(self, obj: RegisteredModel) -> dict[str, int]:
        return {alias.name: alias.version.version for alias in obj.aliases.all()}


class TrainingJobSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(read_only=True)
    model = serializers.CharField(source="registered_model.name")
    dataset = serializers.CharField(source="dataset_version.dataset.name")
    dataset_version = serializers.IntegerField(source="dataset_version.number")
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True, default=None)
    feature_set = serializers.CharField(source="feature_set_version", allow_null=True, default=None)

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "model",
            "dataset",
            "dataset_version",
            "feature_set",
            "params",
            "status",
            "progress",
            "created_at",
            "started_at",
            "finished_at",
            "error",
            "model_version",
            "warnings",
            "warning_count",
            "attempts",
            "trials",
            "cancel_requested_at",
        ]


class TrainingJobCreateSerializer(serializers.Serializer):
    model = serializers.SlugField(help_text="Registered model name; created on first use.")
    dataset = serializers.SlugField()
    dataset_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Training parameters: " + "; ".join(f"{name}: {doc}" for name, doc in sorted(PARAM_DOCS.items())),
    )
    feature_set = serializers.SlugField(required=False, help_text="A feature set reading the dataset.")
    feature_set_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")


class AliasSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)


class AliasResponseSerializer(serializers.Serializer):
    model = serializers.CharField()
    alias = serializers.CharField()
    version = serializers.IntegerField()


def _alias_payload(alias: ModelAlias) -> dict:
    return {"model": alias.registered_model.name, "alias": alias.name, "version": alias.version.version}


class RegisteredModelUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True)
    task_type = serializers.ChoiceField(choices=TaskType.choices, required=False)
    favourable_label = serializers.CharField(required=False, allow_blank=True, max_length=200)
    latency_p95_ms_target = serializers.FloatField(required=False, allow_null=True, min_value=0.0)
    availability_target = serializers.FloatField(required=False, allow_null=True, min_value=0.0, max_value=100.0)
    quality_metric = serializers.CharField(required=False, allow_blank=True, max_length=16)
    quality_minimum = serializers.FloatField(required=False, allow_null=True)
    max_relative_drop = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)
    fairness_limits = serializers.DictField(child=serializers.FloatField(), required=False)


class RegisteredModelCreateSerializer(RegisteredModelUpdateSerializer):
    name = serializers.SlugField(max_length=63)


class ModelListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: RegisteredModelSerializer(many=True), **error_responses(401, 403)})
    def get(self, request):
        return Response(RegisteredModelSerializer(selectors.registered_model_list(), many=True).data)

    @extend_schema(
        request=RegisteredModelCreateSerializer,
        responses={201: RegisteredModelSerializer, **error_responses(400, 401, 403, 409, 415)},
    )
    def post(self, request):
        serializer = RegisteredModelCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.registered_model_create(**serializer.validated_data, actor=request.user)
        return Response(RegisteredModelSerializer(model).data, status=status.HTTP_201_CREATED)


class ModelDetailApi(ReadWriteScopedApi):
    write_scope = ApiToken.Scope.ADMIN

    @extend_schema(responses={200: RegisteredModelSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        model = selectors.registered_model_get(name=name)
        return Response(RegisteredModelSerializer(model).data)

    @extend_schema(
        request=RegisteredModelUpdateSerializer,
        responses={200: RegisteredModelSerializer, **error_responses(400, 401, 403, 404, 415)},
    )
    def patch(self, request, name: str):
        """Change the description, SLA or release-gate settings (admin scope; for a session, the owner rule)."""
        model = selectors.registered_model_get(name=name)
        check_model_change(request, model)
        serializer = RegisteredModelUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = services.registered_model_update(
            registered_model=model, actor=request.user, **serializer.validated_data
        )
        return Response(RegisteredModelSerializer(model).data)


class ModelVersionListApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: ModelVersionSummarySerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        model = selectors.registered_model_get(name=name)
        versions = selectors.model_version_list(registered_model=model).prefetch_related("aliases")
        return Response(ModelVersionSummarySerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: ModelVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, version: int):
        model = selectors.registered_model_get(name=name)
        return Response(
            ModelVersionSerializer(selectors.model_version_get(registered_model=model, version=version)).data
        )


class DecisionSerializer(serializers.Serializer):
    note = serializers.CharField(
        required=False,
        default="",
        allow_blank=True,
        max_length=2000,
        help_text="Required to reject, or to approve despite failing gates.",
    )


class _DecisionApi(APIView):
    """Approve or reject a pending version, with a note: an admin token, or a session with the approve permission
    under the owner rule."""

    required_scope = ApiToken.Scope.ADMIN
    permission_classes = [HasScope]
    decide = staticmethod(services.model_version_approve)

    @extend_schema(
        request=DecisionSerializer, responses={200: ModelVersionSerializer, **error_responses(400, 401, 403, 404, 409)}
    )
    def post(self, request, name: str, version: int):
        found = selectors.model_version_by_number(model_name=name, version=version)
        check_model_change(request, found.registered_model)
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decided = self.decide(version=found, actor=request.user, note=serializer.validated_data["note"])
        return Response(ModelVersionSerializer(decided).data)


class ModelVersionApproveApi(_DecisionApi):
    """Approve a pending version (admin scope). The maker of the version may not approve it; failing gates
    need a note saying why the version is approved anyway."""

    decide = staticmethod(services.model_version_approve)


class ModelVersionRejectApi(_DecisionApi):
    """Reject a pending version (admin scope), with the reason in the note."""

    decide = staticmethod(services.model_version_reject)


class ModelVersionGatesApi(APIView):
    """Measure the version against the release gates and the current champion again, and store the evidence."""

    required_scope = ApiToken.Scope.WRITE
    permission_classes = [HasScope]

    @extend_schema(request=None, responses={200: OpenApiTypes.OBJECT, **error_responses(401, 403, 404)})
    def post(self, request, name: str, version: int):
        found = selectors.model_version_by_number(model_name=name, version=version)
        return Response(services.model_version_gates_evaluate(version=found))


class ModelVersionOnnxApi(APIView):
    """The version's ONNX file (exported with verified parity, or imported)."""

    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={(200, "application/octet-stream"): bytes, **error_responses(401, 403, 404)})
    def get(self, request, name: str, version: int):
        found = selectors.model_version_by_number(model_name=name, version=version)
        if not found.onnx_path:
            raise NotFound(f"{found} has no ONNX file: {found.onnx_parity.get('error', 'not exported')}.")
        response = HttpResponse(
            artefact_read_bytes(found.onnx_path, found.onnx_sha256), content_type="application/octet-stream"
        )
        response["Content-Disposition"] = f'attachment; filename="{name}-v{version}.onnx"'
        response["X-Content-SHA256"] = found.onnx_sha256
        return response


class ModelVersionImportSerializer(serializers.Serializer):
    file = serializers.FileField(help_text="An ONNX model (.onnx). Pickle and joblib files are refused.")
    inputs = serializers.CharField(
        help_text='JSON list, in the model\'s column order: [{"name": "age", "type": "number"}, '
        '{"name": "purpose", "type": "category", "categories": ["car", "education"]}].'
    )
    task_type = serializers.ChoiceField(choices=[("classification", "classification"), ("regression", "regression")])
    labels = serializers.CharField(required=False, default="[]", help_text="JSON list of class labels in output order.")
    dataset = serializers.SlugField(help_text="The dataset it is evaluated on (its target column is the truth).")
    dataset_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")


def _json_field(raw: str, field: str) -> object:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"{field} is not valid JSON: {exc}", extra={"fields": {field: ["Not valid JSON."]}}
        ) from None


class ModelVersionImportApi(APIView):
    """Import an ONNX model made elsewhere as a new pending version (write scope)."""

    required_scope = ApiToken.Scope.WRITE
    permission_classes = [HasScope]
    parser_classes = [LimitedMultiPartParser]

    @extend_schema(
        request={"multipart/form-data": ModelVersionImportSerializer},
        responses={201: ModelVersionSerializer, **error_responses(400, 401, 403, 404, 413, 415)},
    )
    def post(self, request, name: str):
        serializer = ModelVersionImportSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        model = selectors.registered_model_get(name=name)
        dataset = dataset_get(name=data["dataset"])
        version = services.model_version_import_onnx(
            registered_model=model,
            data=data["file"].read(),
            inputs=_json_field(data["inputs"], "inputs"),
            task_type=data["task_type"],
            labels=_json_field(data["labels"], "labels"),
            dataset_version=dataset_version_get(dataset=dataset, number=data.get("dataset_version")),
            actor=request.user,
        )
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class ModelCompareApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(
        parameters=[OpenApiParameter("versions", str, required=True, description="Comma-separated, e.g. 1,2,3.")],
        responses={200: OpenApiTypes.OBJECT, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request, name: str):
        numbers = _version_numbers(request.query_params.get("versions", ""))
        model = selectors.registered_model_get(name=name)
        versions = selectors.model_versions_by_numbers(registered_model=model, numbers=numbers)
        return Response(versions_compare(versions))


def _version_numbers(raw: str) -> list[int]:
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if len(parts) < 2 or not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
        raise InvalidInput(
            "versions must list two or more distinct version numbers, e.g. versions=1,2.",
            extra={"fields": {"versions": ["Two or more distinct numbers, comma-separated."]}},
        )
    return [int(part) for part in parts]


class AliasAtSerializer(serializers.Serializer):
    model = serializers.CharField()
    alias = serializers.CharField()
    at = serializers.DateTimeField()
    version = serializers.IntegerField(allow_null=True)
    since = serializers.DateTimeField(allow_null=True)
    changed_by = serializers.CharField(allow_null=True)
    change = serializers.CharField(allow_null=True)


class ModelAliasAtApi(APIView):
    """Which version an alias pointed at, at a given time: "who was champion at T"."""

    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(
        parameters=[OpenApiParameter("at", str, required=True, description="ISO 8601 time with offset.")],
        responses={200: AliasAtSerializer, **error_responses(400, 401, 403, 404)},
    )
    def get(self, request, name: str, alias: str):
        raw = request.query_params.get("at", "")
        at = parse_datetime(raw) if raw else None
        if at is None or at.tzinfo is None:
            raise InvalidInput(
                "at must be an ISO 8601 time with an offset, e.g. 2026-11-25T12:00:00Z.",
                extra={"fields": {"at": ["An ISO 8601 time with an offset."]}},
            )
        model = selectors.registered_model_get(name=name)
        change = selectors.alias_at(registered_model=model, alias=alias, at=at)
        return Response(
            {
                "model": model.name,
                "alias": alias,
                "at": at,
                "version": change.to_version.version if change else None,
                "since": change.at if change else None,
                "changed_by": change.actor if change else None,
                "change": change.kind if change else None,
            }
        )


class ModelAliasApi(APIView):
    """Point an alias (champion, challenger or any other name) at a version: a promotion (admin scope; for a
    session, the alias permission under the owner rule).

    Champion takes only an approved version whose release gates passed; a rejected version takes no alias.
    """

    required_scope = ApiToken.Scope.ADMIN
    permission_classes = [HasScope]

    @extend_schema(
        request=AliasSerializer,
        responses={200: AliasResponseSerializer, **error_responses(400, 401, 403, 404, 409, 415)},
    )
    def put(self, request, name: str, alias: str):
        model = selectors.registered_model_get(name=name)
        check_model_change(request, model)
        serializer = AliasSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = selectors.model_version_get(registered_model=model, version=serializer.validated_data["version"])
        moved = services.model_version_promote(version=version, alias=alias, actor=request.user)
        return Response(_alias_payload(moved))


class ModelAliasRollbackApi(APIView):
    required_scope = ApiToken.Scope.ADMIN
    permission_classes = [HasScope]

    @extend_schema(request=None, responses={200: AliasResponseSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, name: str, alias: str):
        model = selectors.registered_model_get(name=name)
        check_model_change(request, model)
        moved = services.model_alias_rollback(registered_model=model, alias=alias, actor=request.user)
        return Response(_alias_payload(moved))


class TrainingJobListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: TrainingJobSerializer(many=True), **error_responses(401, 403)})
    def get(self, request):
        return Response(TrainingJobSerializer(selectors.training_job_list()[:100], many=True).data)

    @extend_schema(
        request=TrainingJobCreateSerializer,
        responses={202: TrainingJobSerializer, **error_responses(400, 401, 403, 404, 415)},
    )
    def post(self, request):
        serializer = TrainingJobCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        dataset = dataset_get(name=data["dataset"])
        dataset_version = dataset_version_get(dataset=dataset, number=data.get("dataset_version"))
        feature_set_version = None
        if "feature_set" in data:
            feature_set = feature_set_get(name=data["feature_set"])
            feature_set_version = feature_set_version_get(
                feature_set=feature_set, number=data.get("feature_set_version")
            )
        job = services.training_job_create_for_model_name(
            model_name=data["model"],
            dataset_version=dataset_version,
            params=data["params"],
            feature_set_version=feature_set_version,
            actor=request.user,
        )
        job = selectors.training_job_get(job_id=job.pk)
        return Response(
            TrainingJobSerializer(job).data,
            status=status.HTTP_202_ACCEPTED,
            headers={"Location": f"/api/v1/training-jobs/{job.pk}"},
        )


class TrainingJobCancelApi(APIView):
    """Cancel a queued or running job: a running one stops within seconds, at its next boosting round."""

    required_scope = ApiToken.Scope.WRITE
    permission_classes = [HasScope]

    @extend_schema(request=None, responses={202: TrainingJobSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, job_id: int):
        job = services.training_job_cancel(job=selectors.training_job_get(job_id=job_id), actor=request.user)
        return Response(TrainingJobSerializer(selectors.training_job_get(job_id=job.pk)).data, status=202)


class TrainingJobDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: TrainingJobSerializer, **error_responses(401, 403, 404)})
    def get(self, request, job_id: int):
        return Response(TrainingJobSerializer(selectors.training_job_get(job_id=job_id)).data)
