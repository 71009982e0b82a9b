"""End users' pages: ask for a decision and see it explained."""

from django.http import Http404
from django.shortcuts import render

from apps.core.errors import FaroError, NotFound
from apps.governance.services import actor_ref
from apps.predictions.forms import decision_form_class, input_descriptions
from apps.predictions.loader import model_cache
from apps.predictions.models import PredictionRecord
from apps.predictions.services import prediction_make
from apps.registry.selectors import champion_versions


def home(request):
    versions = champion_versions().order_by("registered_model__name")
    return render(request, "predictions/home.html", {"versions": versions})


def decision(request, name: str):
    try:
        loaded = model_cache.get(name)
    except NotFound:
        raise Http404(f"No model named {name} is being served.") from None
    except FaroError as exc:  # e.g. a damaged artefact: say so, never a traceback
        return render(
            request,
            "error.html",
            {"status": exc.status_code, "message": "Decisions are unavailable right now. Please try again later."},
            status=exc.status_code,
        )
    form_class = decision_form_class(loaded.pipeline.signature(), input_descriptions(loaded.pipeline))
    form = form_class(request.POST if request.method == "POST" else None)
    context = {"model_name": name, "form": form, "version": loaded.version}
    if request.method == "POST" and form.is_valid():
        row = dict(form.cleaned_data)
        try:
            result = prediction_make(
                model_name=name,
                rows=[row],
                explain=True,
                channel=PredictionRecord.Channel.PAGE,
                client=actor_ref(request.user),
            )
        except FaroError as exc:
            for problem in exc.extra.get("errors", []):
                if problem.get("field") in form.fields:
                    form.add_error(problem["field"], problem["message"])
            if not exc.extra.get("errors"):
                form.add_error(None, exc.message)
        else:
            output = result.outputs[0]
            favourable = result.model.favourable_label
            probability = output.get("probabilities", {}).get(favourable) if favourable else None
            explanation = result.explanations[0]
            reasons = (
                [
                    {
                        "feature": reason["label"],
                        "value": reason["value"],
                        "helps": (reason["contribution"] > 0) == (explanation["toward"] == str(favourable)),
                    }
                    for reason in explanation["reasons"]
                ]
                if favourable
                else None
            )
            context.update(
                result=result,
                output=output,
                explanation=explanation,
                reasons=reasons,
                approved=(output.get("label") == favourable) if favourable else None,
                probability=probability,
                probability_percent=round(probability * 100) if probability is not None else None,
                version=result.model.version,
            )
            return render(request, "predictions/decision_result.html", context)
    return render(request, "predictions/decision_form.html", context, status=400 if form.is_bound else 200)
