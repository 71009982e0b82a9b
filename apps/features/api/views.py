from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from apps.core.api import error_responses
from apps.data.selectors import dataset_get
from apps.features import selectors, services
from apps.features.models import FeatureSet, FeatureSetVersion
from apps.features.pipeline import TRANSFORMS
from apps.governance.permissions import ReadWriteScopedApi

DEFINITION_HELP = (
    "Ordered features: {name, transform, source | sources, params?, description?}; transforms: "
    + ", ".join(TRANSFORMS)
    + "."
)


class FeatureSetVersionSerializer(serializers.ModelSerializer):
    feature_set = serializers.CharField(source="feature_set.name")
    tags = serializers.SerializerMethodField()

    class Meta:
        model = FeatureSetVersion
        fields = ["feature_set", "number", "definition", "definition_hash", "tags", "created_at"]

    def get_tags(self, obj: FeatureSetVersion) -> dict[str, list[str]]:
        return services.feature_tags(obj)


class FeatureSetSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="dataset.name")
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = FeatureSet
        fields = ["name", "description", "dataset", "created_at", "latest_version"]

    def get_latest_version(self, obj: FeatureSet) -> int | None:
        latest = obj.versions.order_by("-number").first()
        return latest.number if latest else None


class FeatureSetCreateSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=63)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    dataset = serializers.SlugField()
    definition = serializers.ListField(child=serializers.DictField(), help_text=DEFINITION_HELP)


class DefinitionSerializer(serializers.Serializer):
    definition = serializers.ListField(child=serializers.DictField(), help_text=DEFINITION_HELP)


class FeatureSetListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: FeatureSetSerializer(many=True), **error_responses(401, 403)})
    def get(self, request):
        return Response(FeatureSetSerializer(selectors.feature_set_list(), many=True).data)

    @extend_schema(
        request=FeatureSetCreateSerializer,
        responses={201: FeatureSetSerializer, **error_responses(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request):
        serializer = FeatureSetCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        feature_set = services.feature_set_create(
            name=data["name"],
            description=data["description"],
            dataset=dataset_get(name=data["dataset"]),
            definition=data["definition"],
            actor=request.user,
        )
        return Response(FeatureSetSerializer(feature_set).data, status=status.HTTP_201_CREATED)


class FeatureSetDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: FeatureSetSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        return Response(FeatureSetSerializer(selectors.feature_set_get(name=name)).data)


class FeatureSetVersionListApi(ReadWriteScopedApi):
    @extend_schema(responses={200: FeatureSetVersionSerializer(many=True), **error_responses(401, 403, 404)})
    def get(self, request, name: str):
        feature_set = selectors.feature_set_get(name=name)
        versions = feature_set.versions.select_related("feature_set__dataset")
        return Response(FeatureSetVersionSerializer(versions, many=True).data)

    @extend_schema(
        request=DefinitionSerializer,
        responses={201: FeatureSetVersionSerializer, **error_responses(400, 401, 403, 404, 409, 415)},
    )
    def post(self, request, name: str):
        feature_set = selectors.feature_set_get(name=name)
        serializer = DefinitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = services.feature_set_version_create(
            feature_set=feature_set, definition=serializer.validated_data["definition"], actor=request.user
        )
        return Response(FeatureSetVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class FeatureSetVersionDetailApi(ReadWriteScopedApi):
    @extend_schema(responses={200: FeatureSetVersionSerializer, **error_responses(401, 403, 404)})
    def get(self, request, name: str, number: int):
        feature_set = selectors.feature_set_get(name=name)
        version = selectors.feature_set_version_get(feature_set=feature_set, number=number)
        return Response(FeatureSetVersionSerializer(version).data)
