"""Error handlers: JSON under /api/ and the machine endpoints, a plain page elsewhere. Never a traceback."""

from django.http import HttpResponse, JsonResponse
from django.template import loader

from apps.core.api import error_body

_JSON_PREFIXES = ("/api/", "/v2/", "/healthz", "/readyz", "/metrics")


def _respond(request, status: int, message: str):
    if request.path.startswith(_JSON_PREFIXES):
        return JsonResponse(error_body(message), status=status)
    try:
        body = loader.render_to_string("error.html", {"status": status, "message": message}, request)
    except Exception:
        body = f"<h1>{status}</h1><p>{message}</p>"
    return HttpResponse(body, status=status)


def bad_request(request, exception=None):
    return _respond(request, 400, "Bad request.")


def permission_denied(request, exception=None):
    return _respond(request, 403, "You do not have permission to do this.")


def page_not_found(request, exception=None):
    return _respond(request, 404, "Not found.")


def server_error(request):
    return _respond(request, 500, "Something went wrong on our side. It has been logged.")
