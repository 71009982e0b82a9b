"""Data scientists' pages: models and their versions, training jobs."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import redirect, render

from apps.core.errors import FaroError
from apps.data.selectors import dataset_version_get
from apps.features.selectors import feature_set_version_get
from apps.registry import selectors, services
from apps.registry.forms import TrainingForm


@staff_member_required
def model_list(request):
    return render(
        request,
        "registry/model_list.html",
        {"models": selectors.registered_model_list(), "jobs": selectors.training_job_list()[:20]},
    )


@staff_member_required
def model_detail(request, name: str):
    try:
        model = selectors.registered_model_get(name=name)
    except FaroError:
        raise Http404(name) from None
    versions = selectors.model_version_list(registered_model=model).prefetch_related("aliases")
    return render(
        request,
        "registry/model_detail.html",
        {"model": model, "versions": versions, "history": selectors.alias_history(registered_model=model)[:50]},
    )


@staff_member_required
def training_new(request):
    form = TrainingForm(request.POST or None, initial={"dataset": request.GET.get("dataset")})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            dataset_version = dataset_version_get(dataset=data["dataset"], number=data["dataset_version"])
            feature_set = data.get("feature_set")
            job = services.training_job_create_for_model_name(
                model_name=data["model"],
                dataset_version=dataset_version,
                feature_set_version=feature_set_version_get(feature_set=feature_set) if feature_set else None,
                actor=request.user,
                params={key: data[key] for key in ("n_estimators", "max_depth", "learning_rate")},
            )
        except FaroError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("registry:training-detail", job_id=job.pk)
    return render(request, "registry/training_new.html", {"form": form}, status=400 if form.errors else 200)


@staff_member_required
def training_detail(request, job_id: int):
    try:
        job = selectors.training_job_get(job_id=job_id)
    except FaroError:
        raise Http404(str(job_id)) from None
    return render(request, "registry/training_detail.html", {"job": job})
