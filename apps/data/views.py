"""Data scientists' pages: datasets and their governance, uploads with live progress, version reports.

Uploads go to a page endpoint that queues an ingest job and answers JSON for the page's script, or
redirects to the job's page for a browser without JavaScript. The job's page refreshes itself until the
job ends; the script polls the job's JSON status instead. Charts are inline SVG drawn here, no script.
"""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.charts import _percent, bar_chart, fmt_number, histogram_chart
from apps.core.errors import FaroError, InvalidInput, NotFound
from apps.data import selectors, services
from apps.data.forms import DatasetCreateForm, DatasetEditForm, UploadForm
from apps.data.models import Dataset, DatasetVersion, IngestJob

RECENT_JOBS = 10


# -- helpers -------------------------------------------------------------------------------------------


MULTIPART_OVERHEAD_BYTES = 64 * 1024


def _dataset_or_404(name: str) -> Dataset:
    try:
        return selectors.dataset_get(name=name)
    except NotFound:
        raise Http404(name) from None


def _version_or_404(name: str, number: int) -> DatasetVersion:
    dataset = _dataset_or_404(name)
    try:
        return selectors.dataset_version_get(dataset=dataset, number=number)
    except NotFound:
        raise Http404(f"{name} v{number}") from None


def _job_or_404(job_id: int) -> IngestJob:
    try:
        return selectors.ingest_job_get(job_id=job_id)
    except NotFound:
        raise Http404(str(job_id)) from None


def _wants_html(request) -> bool:
    """A browser's own form post prefers HTML; the page's script asks for JSON."""
    return request.get_preferred_type(["application/json", "text/html"]) == "text/html"


def _param_text(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


def _delimiter_label(delimiter: str | None) -> str:
    names = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe", " ": "space"}
    return names.get(delimiter or "", delimiter or "")


def _job_json(job: IngestJob) -> dict[str, Any]:
    version = job.dataset_version
    return {
        "id": job.pk,
        "dataset": job.dataset.name,
        "status": job.status,
        "status_display": job.get_status_display(),
        "finished": job.is_finished,
        "progress": job.progress,
        "error": job.error,
        "problems": job.problems,
        "original_name": job.original_name,
        "size_bytes": job.size_bytes,
        "version": version.number if version else None,
        "version_url": reverse("data:version-detail", args=[job.dataset.name, version.number]) if version else None,
        "status_url": reverse("data:job-status", args=[job.pk]),
        "page_url": reverse("data:job-detail", args=[job.pk]),
    }


# -- charts --------------------------------------------------------------------------------------------


def _column_report(index: int, column: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    kind = stats.get("type", column.get("type"))
    count = stats.get("count") or 0
    report = {
        "anchor": f"column-{index}",
        "name": column["name"],
        "type": kind,
        "count": count,
        "missing": stats.get("missing", 0),
        "missing_percent": _percent(stats.get("missing", 0), count),
        "distinct": stats.get("distinct"),
        "summary": [],
        "quantiles": [],
        "chart": None,
        "note": "",
        "top": stats.get("top") or [],
    }
    if kind in ("integer", "float"):
        report["summary"] = [(key, fmt_number(stats.get(key))) for key in ("min", "mean", "max", "std")]
        report["quantiles"] = [(key, fmt_number(value)) for key, value in (stats.get("quantiles") or {}).items()]
        report["chart"] = histogram_chart(stats.get("histogram"), column["name"])
    elif kind == "string":
        report["summary"] = [
            ("shortest", f"{stats['min_length']} chars" if "min_length" in stats else "—"),
            ("longest", f"{stats['max_length']} chars" if "max_length" in stats else "—"),
        ]
        if report["distinct"] and report["distinct"] == count - report["missing"] and count > 1:
            report["note"] = f"Every one of the {count - report['missing']} values is distinct."
        else:
            report["chart"] = bar_chart(report["top"], column["name"], count)
    elif kind == "boolean":
        if "true" in stats:
            items = [{"value": "true", "count": stats["true"]}, {"value": "false", "count": stats["false"]}]
            report["chart"] = bar_chart(items, column["name"], count, caption="True and false")
    elif kind == "datetime":
        report["summary"] = [("min", stats.get("min") or "—"), ("max", stats.get("max") or "—")]
    return report


# -- datasets ------------------------------------------------------------------------------------------


def _require(request, permission: str) -> None:
    """A page's change needs the console's permission for the same change (403 otherwise); reading needs staff."""
    if not request.user.has_perm(permission):
        raise PermissionDenied


@staff_member_required
def dataset_list(request):
    if request.method == "POST":
        _require(request, "data.add_dataset")
    form = DatasetCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = services.dataset_create(
                name=form.cleaned_data["name"], **form.service_fields(), actor=request.user
            )
        except FaroError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Dataset {dataset.name} created. Upload its first version below.")
            return redirect("data:dataset-detail", name=dataset.name)
    datasets = selectors.dataset_list().select_related("owner").prefetch_related("versions")
    rows = [
        {
            "dataset": dataset,
            "versions": len(dataset.versions.all()),
            "latest": max((version.number for version in dataset.versions.all()), default=None),
        }
        for dataset in datasets
    ]
    return render(
        request,
        "data/dataset_list.html",
        {"rows": rows, "form": form},
        status=400 if form.errors else 200,
    )


def _detail_page(request, dataset: Dataset, *, edit_form=None, upload_form=None, status: int = 200):
    if edit_form is None:
        edit_form = DatasetEditForm(initial={name: getattr(dataset, name) for name in DatasetEditForm.base_fields})
    return render(
        request,
        "data/dataset_detail.html",
        {
            "dataset": dataset,
            "edit_form": edit_form,
            "upload_form": upload_form or UploadForm(),
            "versions": dataset.versions.select_related("parent", "created_by"),
            "jobs": dataset.ingest_jobs.select_related("dataset_version")[:RECENT_JOBS],
            "checks": [
                {"check": check, "params": [(key, _param_text(value)) for key, value in (check.params or {}).items()]}
                for check in dataset.checks.all()
            ],
            "tags": sorted((dataset.column_tags or {}).items()),
            "max_upload_bytes": settings.FARO_UPLOAD_MAX_BYTES,
        },
        status=status,
    )


@staff_member_required
def dataset_detail(request, name: str):
    dataset = _dataset_or_404(name)
    if request.method != "POST":
        return _detail_page(request, dataset)
    _require(request, "data.change_dataset")
    form = DatasetEditForm(request.POST)
    if form.is_valid():
        try:
            services.dataset_update(dataset=dataset, **form.service_fields(), actor=request.user)
        except FaroError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, "Dataset description saved.")
            return redirect("data:dataset-detail", name=dataset.name)
    return _detail_page(request, dataset, edit_form=form, status=400)


# -- uploads and ingest jobs -----------------------------------------------------------------------------


@staff_member_required
@require_POST
def dataset_upload(request, name: str):
    """Queue an upload: 202 with the job's URLs as JSON, or a redirect to the job's page for a plain form."""
    html = _wants_html(request)
    if not request.user.has_perm("data.add_datasetversion"):
        if html:
            raise PermissionDenied
        return JsonResponse({"message": "You may not upload dataset versions.", "extra": {}}, status=403)
    try:
        dataset = selectors.dataset_get(name=name)
    except NotFound as exc:
        if html:
            raise Http404(name) from None
        return JsonResponse({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > settings.FARO_UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD_BYTES:
        # Refused before the body is read, so nothing of it is stored.
        message = f"The upload of {int(declared)} bytes exceeds the limit of {settings.FARO_UPLOAD_MAX_BYTES} bytes."
        return JsonResponse({"message": message, "extra": {}}, status=413)
    form = UploadForm(request.POST, request.FILES)
    try:
        if not form.is_valid():
            raise InvalidInput(
                "Choose a file to upload." if "file" in form.errors else "The upload options are not valid.",
                extra={"fields": {key: list(value) for key, value in form.errors.items()}},
            )
        job = services.ingest_job_create(
            dataset=dataset, upload=form.cleaned_data["file"], options=form.options(), actor=request.user
        )
    except FaroError as exc:
        if html:
            if exc.message not in form.non_field_errors():
                form.add_error(None, exc.message)
            for key, problems in (exc.extra.get("fields") or {}).items():
                for problem in problems:
                    if key in form.fields and problem not in form.errors.get(key, []):
                        form.add_error(key, problem)
            return _detail_page(request, dataset, upload_form=form, status=exc.status_code)
        return JsonResponse({"message": exc.message, "extra": exc.extra}, status=exc.status_code)
    page_url = reverse("data:job-detail", args=[job.pk])
    if html:
        return redirect(page_url)
    return JsonResponse(
        {"job": job.pk, "status_url": reverse("data:job-status", args=[job.pk]), "page_url": page_url},
        status=202,
        headers={"Location": page_url},
    )


@staff_member_required
@require_GET
def job_detail(request, job_id: int):
    job = _job_or_404(job_id)
    return render(request, "data/job_detail.html", {"job": job, "status": _job_json(job)})


@staff_member_required
@require_GET
def job_status(request, job_id: int):
    response = JsonResponse(_job_json(_job_or_404(job_id)))
    response["Cache-Control"] = "no-store"
    return response


# -- versions ------------------------------------------------------------------------------------------


@staff_member_required
def version_detail(request, name: str, number: int):
    version = _version_or_404(name, number)
    version = DatasetVersion.objects.select_related("dataset", "parent", "created_by").get(pk=version.pk)
    statistics = version.statistics or {}
    columns = [
        _column_report(index, column, statistics.get(column["name"], {}))
        for index, column in enumerate(version.schema, start=1)
    ]
    validation = version.validation or {}
    source = dict(validation.get("source") or {})
    if "delimiter" in source:
        source["delimiter"] = _delimiter_label(source["delimiter"])
    checks = validation.get("checks") or []
    return render(
        request,
        "data/version_detail.html",
        {
            "dataset": version.dataset,
            "version": version,
            "columns": columns,
            "changes": validation.get("schema_changes"),
            "checks": checks,
            "checks_failed": sum(1 for check in checks if not check.get("passed")),
            "source": source,
        },
    )


@staff_member_required
@require_GET
def version_download(request, name: str, number: str, fmt: str):
    version = _version_or_404(name, int(number))
    try:
        content, content_type = services.dataset_version_export(version=version, fmt=fmt, actor=request.user)
    except FaroError as exc:
        context = {"status": exc.status_code, "message": exc.message}
        return render(request, "error.html", context, status=exc.status_code)
    filename = f"{version.dataset.name}-v{version.number}.{fmt}"
    if fmt == "parquet":
        return FileResponse(open(content, "rb"), as_attachment=True, filename=filename, content_type=content_type)
    response = StreamingHttpResponse(content, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
