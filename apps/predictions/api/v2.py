"""The Open Inference Protocol V2 (KServe, Triton) over REST: health, server and model metadata, readiness and
inference for Faro's registered models. Inference goes through the same prediction service as
/api/v1/models/<name>/predict: the same validation, decision log, metrics and limits.

Health and server metadata need no credentials (like /healthz); the model endpoints need a token with the
'predict' scope. Errors answer the API's one error body.
"""

import json
import logging
import time
from typing import Any

import orjson
from django.conf import settings
from django.db import connection
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import ErrorSerializer, OrjsonParser, error_body, error_responses
from apps.core.errors import FaroError, InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.governance.services import actor_ref
from apps.governance.throttling import ClientRateThrottle
from apps.predictions import open_inference
from apps.predictions.loader import LoadedModel, model_cache
from apps.predictions.services import prediction_make_from_tensors
from apps.registry.models import ModelVersion
from apps.registry.scoring import OnnxVersionScorer
from apps.registry.selectors import champion_versions, model_version_list, registered_model_get

logger = logging.getLogger(__name__)


class _RecordedStream:
    """A request stream that keeps what was read, so that a second parser can try the same bytes."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.raw = b""

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self.raw += chunk
        return chunk


class V2JsonParser(OrjsonParser):
    """V2 bodies are JSON whatever their Content-Type says (clients often send none), within the view's size
    limit. NaN and Infinity, which strict JSON lacks but V2 clients send for float tensors, are read so that
    validation can name their tensor. Binary tensor data and compressed bodies are refused."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        meta = request.META if request is not None else {}
        if "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" in meta:
            raise InvalidInput("Binary tensor data is not supported: send every tensor's data in the JSON body.")
        encoding = meta.get("HTTP_CONTENT_ENCODING", "")
        if encoding not in ("", "identity"):
            raise exceptions.UnsupportedMediaType(
                encoding, detail=f"Content-Encoding {encoding} is not supported: send the body uncompressed."
            )
        recorded = _RecordedStream(stream)
        try:
            return super().parse(recorded, media_type, parser_context)
        except exceptions.ParseError:
            try:
                return json.loads(recorded.raw)
            except (ValueError, RecursionError):
                raise exceptions.ParseError(f"Malformed JSON: {_orjson_message(recorded.raw)}") from None


def _orjson_message(raw: bytes) -> str:
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return "unreadable body"


def _platform(loaded: LoadedModel) -> str:
    return ModelVersion.Source.ONNX if isinstance(loaded.scorer, OnnxVersionScorer) else ModelVersion.Source.XGBOOST


def _readiness_problems() -> list[str]:
    """What stops this process from serving: the database, then every champion model loading from storage."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        return [f"database unreachable: {type(exc).__name__}"]
    problems = []
    for version in champion_versions():
        name = version.registered_model.name
        try:
            model_cache.load(version)
        except FaroError as exc:
            problems.append(f"{name}: {exc.message}")
        except Exception as exc:
            logger.exception("Champion %s failed to load", version)
            problems.append(f"{name}: failed to load: {type(exc).__name__}")
    return problems


# -- documentation ----------------------------------------------------------------------------------------


class V2LiveSerializer(serializers.Serializer):
    live = serializers.BooleanField()


class V2ReadySerializer(serializers.Serializer):
    ready = serializers.BooleanField()


class V2ServerMetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    extensions = serializers.ListField(child=serializers.CharField(), help_text="None: tensors travel as JSON.")


class V2MetadataTensorSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.ChoiceField(choices=open_inference.DATATYPES)
    shape = serializers.ListField(child=serializers.IntegerField(), help_text="-1: any size.")


class V2ModelMetadataSerializer(serializers.Serializer):
    name = serializers.CharField()
    versions = serializers.ListField(child=serializers.CharField(), help_text="Every version of the model.")
    platform = serializers.ChoiceField(choices=ModelVersion.Source.choices)
    inputs = V2MetadataTensorSerializer(many=True, help_text="One tensor per signature input, in order.")
    outputs = V2MetadataTensorSerializer(
        many=True, help_text="Classification: `label` and `probabilities` (one column per label); else `value`."
    )


class V2ModelReadySerializer(serializers.Serializer):
    name = serializers.CharField()
    ready = serializers.BooleanField()


class V2InputTensorSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="A signature input, or the model's subject key (optional).")
    shape = serializers.ListField(child=serializers.IntegerField(min_value=0), help_text="[n] or [n, 1].")
    datatype = serializers.ChoiceField(choices=open_inference.DATATYPES)
    data = serializers.ListField(child=serializers.JSONField(), help_text="Flat, or nested row-major.")
    parameters = serializers.DictField(required=False)


class V2RequestedOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    parameters = serializers.DictField(required=False, help_text="Ignored: outputs are always JSON.")


class V2InferSerializer(serializers.Serializer):
    id = serializers.CharField(required=False, help_text="Echoed in the response.")
    inputs = V2InputTensorSerializer(many=True, help_text="One tensor per input; each is a column of the batch.")
    outputs = V2RequestedOutputSerializer(many=True, required=False, help_text="Default: every output.")
    parameters = serializers.DictField(required=False, help_text="Ignored.")


class V2OutputTensorSerializer(serializers.Serializer):
    name = serializers.CharField()
    datatype = serializers.ChoiceField(choices=open_inference.DATATYPES)
    shape = serializers.ListField(child=serializers.IntegerField())
    data = serializers.ListField(child=serializers.JSONField(), help_text="Flat, row-major.")


class V2InferResponseSerializer(serializers.Serializer):
    model_name = serializers.CharField()
    model_version = serializers.CharField()
    id = serializers.CharField(help_text="The request's `id`, else the decision log's request id.")
    outputs = V2OutputTensorSerializer(many=True)


NOT_READY = OpenApiResponse(
    ErrorSerializer, description="Not ready: the error body with `ready: false`; `extra.problems` says why."
)


# -- views ------------------------------------------------------------------------------------------------


class V2Api(APIView):
    """Health and server metadata: open to anyone, like /healthz."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]


class V2ServerMetadataApi(V2Api):
    """The server's name, API version and protocol extensions (none: tensors travel as JSON)."""

    @extend_schema(responses={200: V2ServerMetadataSerializer})
    def get(self, request):
        return Response({"name": "faro", "version": settings.SPECTACULAR_SETTINGS["VERSION"], "extensions": []})


class V2LiveApi(V2Api):
    """Live: the process answers."""

    @extend_schema(responses={200: V2LiveSerializer})
    def get(self, request):
        return Response({"live": True})


class V2ReadyApi(V2Api):
    """Ready when the database answers and every champion model loads: this process can score."""

    @extend_schema(responses={200: V2ReadySerializer, 503: NOT_READY})
    def get(self, request):
        problems = _readiness_problems()
        if problems:
            return Response({"ready": False, **error_body("Not ready to serve.", {"problems": problems})}, status=503)
        return Response({"ready": True})


class V2ModelApi(APIView):
    """A model's endpoints: the champion, or a version by number; a token with the 'predict' scope."""

    required_scope = ApiToken.Scope.PREDICT
    permission_classes = [HasScope]


class V2ModelMetadataApi(V2ModelApi):
    """The version's input and output tensors (the champion unless a version is named) and every version."""

    @extend_schema(responses={200: V2ModelMetadataSerializer, **error_responses(401, 403, 404, 503)})
    def get(self, request, name: str, version: int | None = None):
        loaded = model_cache.get(name, version=version)
        versions = model_version_list(registered_model=registered_model_get(name=name)).values_list(
            "version", flat=True
        )
        return Response(
            open_inference.model_metadata(
                name=loaded.model_name,
                versions=sorted(versions),
                platform=_platform(loaded),
                signature=loaded.pipeline.signature(),
                task_type=loaded.task_type,
                labels=loaded.labels,
            )
        )


class V2ModelReadyApi(V2ModelApi):
    """Ready when the version (the champion unless one is named) is loaded and can score."""

    @extend_schema(responses={200: V2ModelReadySerializer, **error_responses(401, 403, 404, 503)})
    def get(self, request, name: str, version: int | None = None):
        loaded = model_cache.get(name, version=version)
        return Response({"name": loaded.model_name, "ready": True})


class V2InferApi(V2ModelApi):
    """Score a batch sent as V2 tensors. Rows are validated and logged exactly as by the predict endpoint."""

    throttle_classes = [ClientRateThrottle]
    parser_classes = [V2JsonParser]
    max_body_setting = "FARO_PREDICT_MAX_BODY_BYTES"

    @extend_schema(
        request={"application/json": V2InferSerializer},
        responses={200: V2InferResponseSerializer, **error_responses(400, 401, 403, 404, 413, 415, 429, 503)},
    )
    def post(self, request, name: str, version: int | None = None):
        reading = time.perf_counter()
        body = request.data
        result, decoded = prediction_make_from_tensors(
            model_name=name,
            body=body,
            version=version,
            client=actor_ref(request.user),
            parse_seconds=time.perf_counter() - reading,
        )
        loaded = result.model
        outputs = open_inference.output_tensors(
            outputs=result.outputs, labels=loaded.labels, task_type=loaded.task_type, names=decoded.outputs
        )
        return Response(
            {
                "model_name": loaded.model_name,
                "model_version": str(loaded.version),
                "id": decoded.id if decoded.id is not None else result.request_id,
                "outputs": outputs,
            },
            headers={
                "X-Request-ID": result.request_id,
                "X-Model-Version": f"{loaded.model_name}/{loaded.version}",
            },
        )
