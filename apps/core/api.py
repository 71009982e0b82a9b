"""The API's edges shared by every app: orjson parsing and rendering, and one error body.

Every error answers `{"message": str, "extra": {...}}`; field problems are listed in `extra`.
"""

import logging
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import DatabaseError
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiResponse
from rest_framework import exceptions, serializers, status
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response

from apps.core.errors import FaroError

logger = logging.getLogger(__name__)


class RequestTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."


def body_limit(view: Any) -> int:
    """The view's body limit: the setting named by its `max_body_setting`, else Django's own limit."""
    return getattr(settings, getattr(view, "max_body_setting", "DATA_UPLOAD_MAX_MEMORY_SIZE"))


def read_body(stream: Any, parser_context: dict[str, Any] | None) -> bytes:
    """A parser's body, refused with 413 past the view's size limit: by its declared length before anything
    is read, else as soon as one byte too many has arrived."""
    context = parser_context or {}
    limit = body_limit(context.get("view"))
    request = context.get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"Request body of {int(declared)} bytes exceeds the limit of {limit} bytes.")
    raw = stream.read(limit + 1) if stream is not None else b""
    if len(raw) > limit:
        raise RequestTooLarge(f"Request body exceeds the limit of {limit} bytes.")
    return raw


class OrjsonParser(BaseParser):
    """JSON bodies parsed with orjson, refused with 413 past the view's size limit before parsing."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = read_body(stream, parser_context)
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise exceptions.ParseError(f"Malformed JSON: {exc}") from None


class OrjsonRenderer(BaseRenderer):
    media_type = "application/json"
    format = "json"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def error_body(message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"message": message, "extra": extra or {}}


def _flatten_detail(detail: Any) -> Any:
    if isinstance(detail, dict):
        return {key: _flatten_detail(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten_detail(item) for item in detail]
    return str(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler for the whole API."""
    headers: dict[str, str] = {}
    if isinstance(exc, FaroError):
        return Response(error_body(exc.message, exc.extra), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response(error_body(str(exc) or "Not found."), status=404)
    if isinstance(exc, DatabaseError):  # e.g. the database is down: nothing was decided or recorded
        logger.error("Database error answering %s: %s", getattr(context.get("request"), "path", "?"), exc)
        return Response(
            error_body("The database is unavailable; nothing was recorded. Retry later."),
            status=503,
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, DjangoPermissionDenied):
        return Response(error_body("You do not have permission to perform this action."), status=403)
    if isinstance(exc, exceptions.ValidationError):
        return Response(error_body("Invalid input.", {"fields": _flatten_detail(exc.detail)}), status=400)
    if isinstance(exc, exceptions.APIException):
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            request = context.get("request")
            authenticators = getattr(request, "authenticators", None) or []
            if authenticators:
                header = authenticators[0].authenticate_header(request)
                if header:
                    headers["WWW-Authenticate"] = header
            if not headers:
                exc.status_code = status.HTTP_403_FORBIDDEN
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait))
        return Response(error_body(str(exc.detail)), status=exc.status_code, headers=headers)
    return None


def json_error(request, message: str, status_code: int) -> JsonResponse:
    return JsonResponse(error_body(message), status=status_code)


class ErrorSerializer(serializers.Serializer):
    """The one error body of the API."""

    message = serializers.CharField()
    extra = serializers.DictField(help_text="Details: `fields` (field -> problems), `errors` or `problems` lists.")


def error_responses(*codes: int) -> dict[int, Any]:
    """drf-spectacular `responses` entries for the error codes an operation can answer."""
    descriptions = {
        400: "Invalid input; `extra` names every problem.",
        401: "Missing or invalid token.",
        403: "The credentials lack the required scope.",
        404: "Not found.",
        409: "Conflicts with the current state.",
        413: "Request body or batch too large.",
        415: "Unsupported content type.",
        429: "Over the client's request budget; retry after Retry-After seconds.",
        503: "A dependency is unavailable.",
    }
    return {code: OpenApiResponse(ErrorSerializer, description=descriptions[code]) for code in codes}


class LimitedMultiPartParser(MultiPartParser):
    """Multipart uploads, refused with 413 before anything is stored when over FARO_UPLOAD_MAX_BYTES."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH") if request is not None else None
        limit = settings.FARO_UPLOAD_MAX_BYTES
        if declared and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"Upload of {int(declared)} bytes exceeds the limit of {limit} bytes.")
        return super().parse(stream, media_type, parser_context)
