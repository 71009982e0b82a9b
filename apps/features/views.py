"""Data scientists' pages for feature sets: definitions, versions, and the training statistics of each feature."""

import json

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render

from apps.core.charts import histogram_chart
from apps.core.errors import FaroError
from apps.features import selectors, services
from apps.features.forms import FeatureSetForm, FeatureSetVersionForm
from apps.features.pipeline import FittedPipeline
from apps.features.services import feature_tags


def _add_errors(form, exc: FaroError) -> None:
    problems = exc.extra.get("problems") or []
    for problem in problems:
        form.add_error("definition", f"{problem['feature']}: {problem['field']} {problem['message']}")
    if not problems:
        form.add_error(None, exc.message)


def _require(request, permission: str) -> None:
    """A page's change needs the console's permission for the same change (403 otherwise); reading needs staff."""
    if request.method == "POST" and not request.user.has_perm(permission):
        raise PermissionDenied


@staff_member_required
def feature_set_list(request):
    _require(request, "features.add_featureset")
    form = FeatureSetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            feature_set = services.feature_set_create(
                name=data["name"],
                description=data["description"],
                dataset=data["dataset"],
                definition=data["definition"],
                actor=request.user,
            )
        except FaroError as exc:
            _add_errors(form, exc)
        else:
            return redirect("features:feature-set-detail", name=feature_set.name)
    context = {"feature_sets": selectors.feature_set_list(), "form": form}
    return render(request, "features/feature_set_list.html", context, status=400 if form.errors else 200)


@staff_member_required
def feature_set_detail(request, name: str):
    try:
        feature_set = selectors.feature_set_get(name=name)
        version = selectors.feature_set_version_get(feature_set=feature_set)
    except FaroError:
        raise Http404(name) from None
    _require(request, "features.add_featuresetversion")
    form = FeatureSetVersionForm(request.POST or None, initial={"definition": json.dumps(version.definition, indent=2)})
    if request.method == "POST" and form.is_valid():
        try:
            created = services.feature_set_version_create(
                feature_set=feature_set, definition=form.cleaned_data["definition"], actor=request.user
            )
        except FaroError as exc:
            _add_errors(form, exc)
        else:
            messages.success(request, f"Saved as version {created.number}.")
            return redirect("features:feature-set-detail", name=feature_set.name)
    fitted = version.model_versions.select_related("registered_model").order_by("-created_at").first()
    statistics = (fitted.feature_state.get("statistics") or {}) if fitted else {}
    tags = feature_tags(version)
    features = [
        {**feature, "tags": tags.get(feature["name"], []), "sources": feature.get("sources") or [feature["source"]]}
        for feature in version.definition
    ]
    # In output order: a JSON column (PostgreSQL jsonb) does not keep the keys' order.
    outputs = FittedPipeline.from_state(fitted.feature_state).output_names if fitted else []
    columns = [
        {"name": output, **statistics[output], "chart": histogram_chart(statistics[output].get("histogram"), output)}
        for output in outputs
        if output in statistics
    ]
    return render(
        request,
        "features/feature_set_detail.html",
        {
            "feature_set": feature_set,
            "version": version,
            "versions": feature_set.versions.all(),
            "features": features,
            "fitted": fitted,
            "columns": columns,
            "form": form,
        },
        status=400 if form.errors else 200,
    )
