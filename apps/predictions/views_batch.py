"""Data scientists' pages for batch scoring: start a job on a dataset version or an uploaded file, follow it
live, cancel it, download its result. Staff only, like the other data scientists' pages; every action calls
the same service as the API and the console."""

from django import forms
from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import FaroError, NotFound
from apps.data.models import Dataset
from apps.predictions import batch_services
from apps.predictions.models import BatchScoringJob
from apps.registry.models import RegisteredModel

RECENT_JOBS = 50


class BatchJobForm(forms.Form):
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.order_by("name"), to_field_name="name")
    version = forms.IntegerField(required=False, min_value=1, help_text="Leave empty for the champion.")
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.order_by("name"),
        to_field_name="name",
        required=False,
        help_text="A dataset to score…",
    )
    dataset_version = forms.IntegerField(required=False, min_value=1, help_text="Leave empty for its latest version.")
    file = forms.FileField(
        required=False, help_text="…or a CSV, Parquet or JSON Lines file with the model's input columns."
    )
    output_format = forms.ChoiceField(choices=BatchScoringJob.Format.choices, initial=BatchScoringJob.Format.PARQUET)
    explain = forms.BooleanField(
        required=False, label="Explain each row", help_text="Add each row's top reasons (takes longer)."
    )

    def add_service_errors(self, exc: FaroError) -> None:
        """A refusal's field problems on their fields; the rest above the form."""
        fields = (exc.extra or {}).get("fields") or {}
        placed = False
        for key, problems in fields.items():
            field = "version" if key == "alias" else key
            for problem in problems if isinstance(problems, list) else [problems]:
                if field in self.fields:
                    self.add_error(field, problem)
                    placed = True
                else:
                    self.add_error(None, f"{key}: {problem}")
        if not placed and not fields:
            self.add_error(None, exc.message)


def _job_or_404(job_id: int) -> BatchScoringJob:
    try:
        return batch_services.batch_job_get(job_id=job_id)
    except NotFound:
        raise Http404(str(job_id)) from None


@staff_member_required
def batch_list(request):
    """Recent batch jobs, and the form that starts one (with the console's permission to add a batch job)."""
    if request.method == "POST" and not request.user.has_perm("predictions.add_batchscoringjob"):
        raise PermissionDenied
    initial = {key: request.GET[key] for key in ("model", "version", "dataset") if request.GET.get(key)}
    form = BatchJobForm(request.POST or None, request.FILES or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            job = batch_services.batch_job_create_from_refs(
                model=data["model"].name,
                version=data["version"],
                dataset=data["dataset"].name if data["dataset"] else None,
                dataset_version=data["dataset_version"],
                upload=data["file"],
                output_format=data["output_format"],
                explain=data["explain"],
                actor=request.user,
            )
        except FaroError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, f"Batch job #{job.pk} queued.")
            return redirect("batch-detail", job_id=job.pk)
    jobs = batch_services.batch_job_list().order_by("-created_at")[:RECENT_JOBS]
    return render(
        request, "predictions/batch_list.html", {"form": form, "jobs": jobs}, status=400 if form.errors else 200
    )


@staff_member_required
@require_GET
def batch_detail(request, job_id: int):
    job = _job_or_404(job_id)
    return render(
        request,
        "predictions/batch_detail.html",
        {
            "job": job,
            "percent": round(job.progress * 100),
            "status_url": reverse("api:predictions:batch-job-detail", args=[job.pk]),
            "can_cancel": job.status in (BatchScoringJob.Status.QUEUED, BatchScoringJob.Status.RUNNING)
            and job.cancel_requested_at is None,
            "can_download": job.status == BatchScoringJob.Status.SUCCEEDED,
            "unlisted": max(job.problem_count - len(job.problems), 0),
        },
    )


@staff_member_required
@require_POST
@permission_required("predictions.change_batchscoringjob", raise_exception=True)
def batch_cancel(request, job_id: int):
    job = _job_or_404(job_id)
    try:
        job = batch_services.batch_job_cancel(job=job, actor=request.user)
    except FaroError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Batch job #{job.pk} cancelled."
            if job.status == BatchScoringJob.Status.CANCELLED
            else f"Cancel requested: batch job #{job.pk} stops after the chunk it is scoring.",
        )
    return redirect("batch-detail", job_id=job.pk)


@staff_member_required
@require_GET
def batch_download(request, job_id: int):
    job = _job_or_404(job_id)
    try:
        path, filename, content_type = batch_services.batch_job_download(job=job, actor=request.user)
    except FaroError as exc:
        messages.error(request, exc.message)
        return redirect("batch-detail", job_id=job.pk)
    handle = open(path, "rb")  # noqa: SIM115 -- FileResponse closes it once sent
    response = FileResponse(handle, as_attachment=True, filename=filename, content_type=content_type)
    response["X-Content-SHA256"] = job.output_sha256
    return response
