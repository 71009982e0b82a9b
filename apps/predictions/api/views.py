import time

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import error_responses
from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.governance.services import actor_ref
from apps.governance.throttling import ClientRateThrottle
from apps.predictions.services import prediction_make


class PredictRequestSerializer(serializers.Serializer):
    inputs = serializers.ListField(child=serializers.DictField(), help_text="One object of feature values per row.")
    alias = serializers.CharField(required=False, help_text="Default: champion.")
    version = serializers.IntegerField(required=False, help_text="A version number instead of an alias.")
    explain = serializers.BooleanField(required=False, default=False)


class PredictResponseSerializer(serializers.Serializer):
    request_id = serializers.UUIDField()
    model = serializers.CharField()
    version = serializers.IntegerField()
    outputs = serializers.ListField(
        child=serializers.DictField(), help_text="Per row: `label` and `probabilities`, or `value` for regression."
    )
    explanations = serializers.ListField(child=serializers.DictField(), required=False)


class PredictApi(APIView):
    """Score rows with a registered model. Rows are validated against the version's signature with plain
    code rather than a field-by-field serializer: this is the hot path."""

    required_scope = ApiToken.Scope.PREDICT
    permission_classes = [HasScope]
    throttle_classes = [ClientRateThrottle]
    max_body_setting = "FARO_PREDICT_MAX_BODY_BYTES"

    @extend_schema(
        request=PredictRequestSerializer,
        responses={200: PredictResponseSerializer, **error_responses(400, 401, 403, 404, 413, 415, 429)},
    )
    def post(self, request, name: str):
        reading = time.perf_counter()
        body = request.data
        parse_seconds = time.perf_counter() - reading
        if not isinstance(body, dict):
            raise InvalidInput(
                "The body must be a JSON object with an 'inputs' list.",
                extra={"fields": {"body": ["Expected a JSON object."]}},
            )
        problems = {}
        unknown = body.keys() - {"inputs", "alias", "version", "explain"}
        for key in sorted(unknown):
            problems[key] = ["Unknown field."]
        if "inputs" not in body:
            problems["inputs"] = ["This field is required."]
        alias, version, explain = body.get("alias"), body.get("version"), body.get("explain", False)
        if alias is not None and not isinstance(alias, str):
            problems["alias"] = ["Must be a string."]
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            problems["version"] = ["Must be an integer."]
        if alias is not None and version is not None:
            problems["version"] = ["Give an alias or a version, not both."]
        if not isinstance(explain, bool):
            problems["explain"] = ["Must be true or false."]
        if problems:
            raise InvalidInput("Invalid request body.", extra={"fields": problems})
        result = prediction_make(
            model_name=name,
            rows=body["inputs"],
            alias=alias,
            version=version,
            explain=explain,
            client=actor_ref(request.user),
            parse_seconds=parse_seconds,
        )
        payload = {
            "request_id": result.request_id,
            "model": result.model.model_name,
            "version": result.model.version,
            "outputs": result.outputs,
        }
        if result.explanations is not None:
            payload["explanations"] = result.explanations
        return Response(
            payload,
            headers={
                "X-Request-ID": result.request_id,
                "X-Model-Version": f"{result.model.model_name}/{result.model.version}",
            },
        )
