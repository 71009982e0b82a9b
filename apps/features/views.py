"""Data scientists' pages for feature sets: definitions, versions, and the training statistics of each feature."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404
from django.shortcuts import render

from apps.core.charts import histogram_chart
from apps.core.errors import FaroError
from apps.features import selectors
from apps.features.pipeline import FittedPipeline
from apps.features.services import feature_tags


@staff_member_required
def feature_set_list(request):
    return render(request, "features/feature_set_list.html", {"feature_sets": selectors.feature_set_list()})


@staff_member_required
def feature_set_detail(request, name: str):
    try:
        feature_set = selectors.feature_set_get(name=name)
        version = selectors.feature_set_version_get(feature_set=feature_set)
    except FaroError:
        raise Http404(name) from None
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
        },
    )
