"""The records of processing activities (GDPR Art. 30) as a staff page, and as CSV or JSON to download.

Here rather than in data: the register names the models trained on each dataset (see `register.py`).
"""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.registry.register import register_csv, register_rows


@staff_member_required
@require_GET
def processing_register(request):
    """The page; `?format=csv` or `?format=json` downloads the same rows."""
    fmt = request.GET.get("format", "html")
    if fmt not in ("html", "csv", "json"):
        message = "Choose format csv or json, or none for the page."
        return render(request, "error.html", {"status": 400, "message": message}, status=400)
    rows = register_rows()
    filename = f"processing-register-{timezone.now():%Y-%m-%d}.{fmt}"
    if fmt == "csv":
        response = HttpResponse(register_csv(rows), content_type="text/csv; charset=utf-8")
    elif fmt == "json":
        response = JsonResponse(rows, safe=False, json_dumps_params={"indent": 2, "ensure_ascii": False})
    else:
        return render(request, "registry/register.html", {"rows": rows})
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
