"""POST /api/v1/models/<name>/invocations: MLflow's scoring protocol, so that a client written for
`mlflow models serve` scores with Faro by changing its URL (and sending a token).

The bodies are MLflow's (see `apps.predictions.mlflow_protocol`); the answer is `{"predictions": [...]}`.
Errors are Faro's one body with MLflow's `error_code` added, so both kinds of client read them.
"""

import time
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api import OrjsonParser, error_responses, exception_handler, read_body
from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken
from apps.governance.permissions import HasScope
from apps.governance.services import actor_ref
from apps.governance.throttling import ClientRateThrottle
from apps.predictions.mlflow_protocol import (
    EMPTY_CSV,
    CsvError,
    Inputs,
    ProtocolError,
    predictions,
    read_csv_body,
    read_json_body,
    read_query,
    wants_probabilities,
)
from apps.predictions.services import prediction_make_from_inputs

CSV = "text/csv"
# MLflow's names (databricks_pb2.ErrorCode) for the statuses this endpoint answers.
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    413: "RESOURCE_LIMIT_EXCEEDED",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}


class UnsupportedCharset(exceptions.APIException):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE


class CsvParser(BaseParser):
    """`text/csv` bodies (UTF-8; a header row), read into rows of text cells within the view's size limit."""

    media_type = CSV

    def parse(self, stream, media_type=None, parser_context=None) -> Inputs:
        charset = _charset(media_type or "")
        if charset not in (None, "utf-8", "utf8"):
            raise UnsupportedCharset(f"CSV bodies must be UTF-8, not charset={charset}.")
        raw = read_body(stream, parser_context)
        try:
            return read_csv_body(raw)
        except CsvError as exc:
            extra = {key: value for key, value in (("line", exc.line), ("row", exc.row)) if value is not None}
            raise InvalidInput(exc.message, extra=extra) from None


def _charset(media_type: str) -> str | None:
    for parameter in media_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


def with_error_code(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The API's exception handler, plus MLflow's `error_code` (which MLflow's REST client reads)."""
    if type(exc) is exceptions.UnsupportedMediaType:
        given = context["request"].content_type
        exc = exceptions.UnsupportedMediaType(
            given,
            detail=(
                f'Unsupported media type "{given}": send application/json or text/csv.'
                if given
                else "The request has no Content-Type: send application/json or text/csv."
            ),
        )
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        code = response.status_code
        response.data["error_code"] = ERROR_CODES.get(code, "INTERNAL_ERROR" if code >= 500 else "BAD_REQUEST")
    return response


def _naming_the_first_problem(exc: InvalidInput) -> InvalidInput:
    """Row problems with the first of them in the message: MLflow clients often show only the message."""
    errors = exc.extra.get("errors")
    if not errors:
        return exc
    first = errors[0]
    row, field = first.get("row"), first.get("field")
    where = " ".join(part for part in (f"row {row}:" if row is not None else "", repr(field) if field else "") if part)
    return InvalidInput(
        f"{len(errors)} problem(s) with the inputs; first, {where} {first['message']}.", extra=exc.extra
    )


# -- documentation ----------------------------------------------------------------------------------------


class DataframeSplitSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField(), help_text="Input names, in row order.")
    data = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField()), help_text="Rows, each a list of values."
    )
    index = serializers.ListField(child=serializers.JSONField(), required=False, help_text="Ignored.")


class InvocationsParamsSerializer(serializers.Serializer):
    predict_proba = serializers.BooleanField(
        required=False, help_text="Classification: per row, the probability of each label instead of the label."
    )


class InvocationsSerializer(serializers.Serializer):
    dataframe_split = DataframeSplitSerializer(required=False, help_text="pandas `to_dict(orient='split')`.")
    dataframe_records = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="pandas `to_dict(orient='records')`."
    )
    instances = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text="Row objects; bare values only for a model with one input.",
    )
    inputs = serializers.JSONField(
        required=False, help_text="Columns (name -> list of values) or, like `instances`, a list of rows."
    )
    params = InvocationsParamsSerializer(required=False)


class InvocationsResponseSerializer(serializers.Serializer):
    predictions = serializers.ListField(
        child=serializers.JSONField(),
        help_text="Per row, in order: the label (classification), {label: probability} (predict_proba), or the "
        "value (regression).",
    )


DESCRIPTION = """MLflow's scoring-server protocol (`mlflow models serve`, `/invocations`).

A JSON body has exactly one of `dataframe_split`, `dataframe_records`, `instances` or `inputs`, and
optionally `params`; a `text/csv` body has a header row (pandas `to_csv(index=False)`), empty cells being
missing values. The answer is `{"predictions": [...]}`: the labels of a classifier, its class probabilities
with `predict_proba`, or a regressor's values. The version is the champion unless `alias` or `version` is
in the query string; `X-Model-Version` and `X-Request-ID` name what scored, and every row is in the
decision log (channel `mlflow`) before the answer.

Errors are Faro's body (`message`, `extra`) with MLflow's `error_code` added (`BAD_REQUEST`,
`UNAUTHENTICATED`, `PERMISSION_DENIED`, `RESOURCE_DOES_NOT_EXIST`, `RESOURCE_LIMIT_EXCEEDED`,
`REQUEST_LIMIT_EXCEEDED`, `TEMPORARILY_UNAVAILABLE`)."""


# -- the endpoint -----------------------------------------------------------------------------------------


class InvocationsApi(APIView):
    """Score rows sent in MLflow's scoring protocol, with the same validation, scoring and decision log as
    the predict endpoint."""

    required_scope = ApiToken.Scope.PREDICT
    permission_classes = [HasScope]
    throttle_classes = [ClientRateThrottle]
    parser_classes = [OrjsonParser, CsvParser]
    max_body_setting = "FARO_PREDICT_MAX_BODY_BYTES"

    def get_exception_handler(self):
        return with_error_code

    @extend_schema(
        summary="Score rows (MLflow scoring protocol)",
        description=DESCRIPTION,
        request={"application/json": InvocationsSerializer, CSV: OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("alias", str, description="Score with this alias's version (default: champion)."),
            OpenApiParameter("version", int, description="Score with this version number instead of an alias."),
            OpenApiParameter(
                "predict_proba", bool, description="Answer class probabilities (also `params.predict_proba`)."
            ),
        ],
        responses={
            200: InvocationsResponseSerializer,
            **error_responses(400, 401, 403, 404, 413, 415, 429, 503),
        },
        examples=[
            OpenApiExample(
                "dataframe_split",
                value={"dataframe_split": {"columns": ["income", "age", "city"], "data": [[5200.5, 41, "north"]]}},
                request_only=True,
                media_type="application/json",
            ),
            OpenApiExample("CSV", value="income,age,city\n5200.5,41,north\n", request_only=True, media_type=CSV),
            OpenApiExample("labels", value={"predictions": ["yes"]}, response_only=True),
        ],
    )
    def post(self, request, name: str):
        reading = time.perf_counter()
        try:
            query = read_query(dict(request.query_params.lists()))
            body = request.data
            if isinstance(body, Inputs):
                inputs, params = body, {}
            elif request.content_type.split(";")[0].strip().lower() == CSV:
                raise InvalidInput(EMPTY_CSV)
            else:
                inputs, params = read_json_body(body)
            probabilities = wants_probabilities(query, params)
        except ProtocolError as exc:
            raise InvalidInput(exc.message, extra={"fields": exc.fields}) from None
        try:
            result = prediction_make_from_inputs(
                model_name=name,
                inputs=inputs,
                probabilities=probabilities,
                alias=query.alias,
                version=query.version,
                client=actor_ref(request.user),
                parse_seconds=time.perf_counter() - reading,
            )
        except InvalidInput as exc:
            raise _naming_the_first_problem(exc) from None
        return Response(
            {"predictions": predictions(result.outputs, probabilities=probabilities)},
            headers={
                "X-Request-ID": result.request_id,
                "X-Model-Version": f"{result.model.model_name}/{result.model.version}",
            },
        )
