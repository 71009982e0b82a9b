"""Data scientists' pages: datasets, uploads, versions."""

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import redirect, render

from apps.core.errors import FaroError
from apps.data import selectors, services
from apps.data.forms import DatasetForm, UploadForm


def _problems_text(exc: FaroError) -> str:
    problems = exc.extra.get("problems") or []
    details = "; ".join(
        " ".join(
            str(part)
            for part in (
                f"row {p['row']}" if p.get("row") else "",
                f"column {p['column']}" if p.get("column") else "",
                p["message"],
            )
            if part
        )
        for p in problems[:20]
    )
    return f"{exc.message} {details}".strip()


@staff_member_required
def dataset_list(request):
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = services.dataset_create(**form.cleaned_data, actor=request.user)
        except FaroError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("data:dataset-detail", name=dataset.name)
    return render(request, "data/dataset_list.html", {"datasets": selectors.dataset_list(), "form": form})


@staff_member_required
def dataset_detail(request, name: str):
    try:
        dataset = selectors.dataset_get(name=name)
    except FaroError:
        raise Http404(name) from None
    form = UploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        try:
            version = services.dataset_version_create_from_upload(
                dataset=dataset, upload=form.cleaned_data["file"], actor=request.user
            )
        except FaroError as exc:
            form.add_error("file", _problems_text(exc))
        else:
            messages.success(request, f"Version {version.number} created: {version.row_count} rows.")
            return redirect("data:version-detail", name=dataset.name, number=version.number)
    return render(
        request,
        "data/dataset_detail.html",
        {"dataset": dataset, "form": form, "versions": dataset.versions.all()},
        status=400 if form.errors else 200,
    )


@staff_member_required
def version_detail(request, name: str, number: int):
    try:
        dataset = selectors.dataset_get(name=name)
        version = selectors.dataset_version_get(dataset=dataset, number=number)
    except FaroError:
        raise Http404(name) from None
    columns = [{**column, **version.statistics.get(column["name"], {})} for column in version.schema]
    return render(request, "data/version_detail.html", {"dataset": dataset, "version": version, "columns": columns})
