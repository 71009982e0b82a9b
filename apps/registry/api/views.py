from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.errors import InvalidInput
from apps.data.selectors import dataset_get, dataset_version_get
from apps.features.selectors import feature_set_get, feature_set_version_get
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope, ReadWriteScopedApi
from apps.registry import selectors, services
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel, TaskType, TrainingJob


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
        ]

    def get_aliases(self, obj: ModelVersion) -> list[str]:
        return sorted(alias.name for alias in obj.aliases.all())


class RegisteredModelSerializer(serializers.ModelSerializer):
    aliases = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["name", "description", "task_type", "favourable_label", "created_at", "aliases"]

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
        ]


class TrainingJobCreateSerializer(serializers.Serializer):
    model = serializers.SlugField(help_text="Registered model name; created on first use.")
    dataset = serializers.SlugField()
    dataset_version = serializers.IntegerField(required=False, min_value=1, help_text="Default: the latest.")
    params = serializers.DictField(required=False, default=dict, help_text="XGBoost parameters; see the README.")
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


class RegisteredModelCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=63)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    task_type = serializers.ChoiceField(choices=TaskType.choices, required=False, default=TaskType.AUTO)
    favourable_label = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)


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


class ModelDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: RegisteredModelSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        model = selectors.registered_model_get(name=name)
        return Response(RegisteredModelSerializer(model).data)


class ModelVersionListApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: ModelVersionSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        model = selectors.registered_model_get(name=name)
        versions = selectors.model_version_list(registered_model=model).prefetch_related("aliases")
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelVersionDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: ModelVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, version: int):
        model = selectors.registered_model_get(name=name)
        return Response(
            ModelVersionSerializer(selectors.model_version_get(registered_model=model, version=version)).data
        )


class ModelAliasApi(APIView):
    """Point an alias (champion, challenger) at a version: a promotion."""

    required_scope = ApiToken.Scope.ADMIN
    permission_classes = [HasScope]

    @extend_schema(
        request=AliasSerializer, responses={200: AliasResponseSerializer, **error_responses(400, 401, 403, 404, 415)}
    )
    def put(self, request, name: str, alias: str):
        serializer = AliasSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        model = selectors.registered_model_get(name=name)
        version = selectors.model_version_get(registered_model=model, version=serializer.validated_data["version"])
        moved = services.model_version_promote(version=version, alias=alias, actor=request.user)
        return Response(_alias_payload(moved))


class ModelAliasRollbackApi(APIView):
    required_scope = ApiToken.Scope.ADMIN
    permission_classes = [HasScope]

    @extend_schema(request=None, responses={200: AliasResponseSerializer, **error_responses(401, 403, 404, 409)})
    def post(self, request, name: str, alias: str):
        if alias not in ModelAlias.Name.values:
            raise InvalidInput(f"Unknown alias {alias!r}.", extra={"fields": {"alias": ["Unknown alias."]}})
        model = selectors.registered_model_get(name=name)
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


class TrainingJobDetailApi(APIView):
    required_scope = ApiToken.Scope.READ
    permission_classes = [HasScope]

    @extend_schema(responses={200: TrainingJobSerializer, **error_responses(401, 403, 404)})
    def get(self, request, job_id: int):
        return Response(TrainingJobSerializer(selectors.training_job_get(job_id=job_id)).data)
