"""Data scientists' pages: models and their versions (release evidence, decisions, aliases, model cards),
comparisons, and training jobs with live progress.

Every action posts to its own URL, calls the same service as the API and the console, and redirects back
to its page with the outcome as a message; a refusal (maker-checker, failing gates, a job that has already
ended) is shown there, never as an error page. Who may act is decided as in the console and the API: the
console's model permission for the same change, and for a model's settings and releases the owner rule
(`apps.governance.roles.may_change_model`); without them the answer is 403 and nothing changes.
"""

from typing import Any

from django.contrib import messages
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.charts import fmt_number, line_chart
from apps.core.errors import FaroError, NotFound
from apps.data.selectors import dataset_version_get
from apps.features.selectors import feature_set_version_get
from apps.governance.roles import may_change_model, model_change_refusal
from apps.governance.services import actor_principal
from apps.registry import selectors, services
from apps.registry.card import model_card
from apps.registry.charts import METRICS, evaluation_charts
from apps.registry.compare import versions_compare
from apps.registry.evaluation import FAIRNESS_DEFAULTS
from apps.registry.forms import AliasAtForm, DecisionForm, OnnxImportForm, PromoteForm, TrainingForm
from apps.registry.gates import quality_metric
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel, TrainingJob

APPROVE_PERMISSION = "registry.approve_modelversion"
ALIAS_PERMISSION = "registry.change_modelalias"
FAIRNESS_LIMIT_LABELS = {
    "disparate_impact_min": "Disparate impact ratio, at least",
    "statistical_parity_max": "Statistical parity difference, within ±",
    "equal_opportunity_max": "Equal opportunity difference, within ±",
}
# Versions on one compare chart: a colour and a dash each, so the lines stay apart when printed in grey.
SERIES_STYLES = [
    ("#0b6e99", ""),
    ("#c2571a", "6 3"),
    ("#1d7a46", "2 3"),
    ("#7b3fa0", "8 3 2 3"),
    ("#a8322d", "1 2"),
    ("#5b6b7c", "10 4"),
]
COMPARE_TOP_FEATURES = 5


# -- helpers -------------------------------------------------------------------------------------------


def _model_or_404(name: str) -> RegisteredModel:
    try:
        return selectors.registered_model_get(name=name)
    except NotFound:
        raise Http404(name) from None


def _version_or_404(name: str, number: int) -> ModelVersion:
    model = _model_or_404(name)
    try:
        found = selectors.model_version_get(registered_model=model, version=number)
    except NotFound:
        raise Http404(f"{name} v{number}") from None
    return (
        ModelVersion.objects.select_related(
            "registered_model__owner",
            "dataset_version__dataset",
            "feature_set_version__feature_set",
            "decided_by",
            "created_by",
        )
        .prefetch_related("aliases")
        .get(pk=found.pk)
    )


def _job_or_404(job_id: int) -> TrainingJob:
    try:
        return selectors.training_job_get(job_id=job_id)
    except NotFound:
        raise Http404(str(job_id)) from None


def _people(refs: list[str]) -> dict[str, str]:
    """Audit references ("user:7") by the username they stand for; other references as they are."""
    ids = {int(ref[5:]) for ref in refs if ref and ref.startswith("user:") and ref[5:].isdigit()}
    names = dict(get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")) if ids else {}
    shown = {}
    for ref in refs:
        number = ref[5:] if ref and ref.startswith("user:") else ""
        shown[ref] = names.get(int(number), ref) if number.isdigit() else ref
    return shown


def _require_model_change(request, model: RegisteredModel) -> None:
    """The owner rule: 403 for someone who may not change `model` or its releases."""
    if not may_change_model(request.user, model):
        raise PermissionDenied(model_change_refusal(model))


def _person(ref: str) -> str:
    return _people([ref]).get(ref, ref) if ref else ""


def _attempt(request, action, success: str) -> None:
    """Run a service call; its refusal becomes an error message, its success `success`."""
    try:
        action()
    except FaroError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)


def _main_metric(version: ModelVersion) -> tuple[str, Any]:
    metric = (version.gate_report or {}).get("metric") or quality_metric(version)
    return metric, version.metrics.get(metric)


def _version_url(version: ModelVersion) -> str:
    return reverse("registry:version-detail", args=[version.registered_model.name, version.version])


# -- models --------------------------------------------------------------------------------------------


@staff_member_required
@require_GET
def model_list(request):
    return render(
        request,
        "registry/model_list.html",
        {"models": selectors.registered_model_list(), "jobs": selectors.training_job_list()[:20]},
    )


def _model_settings(model: RegisteredModel) -> dict[str, Any]:
    limits = model.fairness_limits or {}
    return {
        "fairness": [
            {"label": label, "value": fmt_number(limits.get(key, FAIRNESS_DEFAULTS[key])), "default": key not in limits}
            for key, label in FAIRNESS_LIMIT_LABELS.items()
        ],
        "max_relative_drop": f"{model.max_relative_drop * 100:g} %",
    }


def _alias_at(request, model: RegisteredModel) -> tuple[AliasAtForm, dict[str, Any] | None]:
    if "at" not in request.GET:
        return AliasAtForm(initial={"alias_at": ModelAlias.Name.CHAMPION}), None
    form = AliasAtForm(request.GET)
    if not form.is_valid():
        return form, None
    alias, at = form.cleaned_data["alias_at"], form.cleaned_data["at"]
    change = selectors.alias_at(registered_model=model, alias=alias, at=at)
    return form, {"alias": alias, "at": at, "change": change, "actor": _person(change.actor) if change else ""}


@staff_member_required
@require_GET
def model_detail(request, name: str):
    model = _model_or_404(name)
    versions = selectors.model_version_list(registered_model=model).prefetch_related("aliases")
    rows = []
    for version in versions:
        version.registered_model = model  # the main metric's default depends on it
        metric, value = _main_metric(version)
        rows.append(
            {
                "version": version,
                "aliases": sorted(alias.name for alias in version.aliases.all()),
                "gates": (version.gate_report or {}).get("passed") if version.gate_report else None,
                "metric": metric,
                "value": fmt_number(value) if value is not None else "—",
            }
        )
    history = list(selectors.alias_history(registered_model=model)[:50])
    people = _people([change.actor for change in history])
    for change in history:
        change.actor_display = people.get(change.actor, change.actor)
    alias_form, alias_answer = _alias_at(request, model)
    champion = next((row["version"] for row in rows if ModelAlias.Name.CHAMPION in row["aliases"]), None)
    return render(
        request,
        "registry/model_detail.html",
        {
            "model": model,
            "model_settings": _model_settings(model),
            "rows": rows,
            "history": history,
            "alias_form": alias_form,
            "alias_answer": alias_answer,
            "champion": champion,
            "can_release": request.user.has_perm(ALIAS_PERMISSION) and may_change_model(request.user, model),
        },
        status=400 if alias_form.errors else 200,
    )


@staff_member_required
@require_POST
@permission_required(ALIAS_PERMISSION, raise_exception=True)
def alias_rollback(request, name: str, alias: str):
    model = _model_or_404(name)
    _require_model_change(request, model)
    try:
        moved = services.model_alias_rollback(registered_model=model, alias=alias, actor=request.user)
    except FaroError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{model.name}: {alias} is now v{moved.version.version}.")
    return redirect("registry:model-detail", name=model.name)


# -- versions ------------------------------------------------------------------------------------------


def _signature(version: ModelVersion) -> dict[str, Any]:
    signature = version.signature or {}
    inputs = []
    for position, item in enumerate(signature.get("inputs") or [], start=1):
        if item.get("categories") is not None:
            accepts = ", ".join(str(value) for value in item["categories"]) or "—"
        elif item.get("minimum") is not None or item.get("maximum") is not None:
            accepts = f"{fmt_number(item.get('minimum'))} to {fmt_number(item.get('maximum'))}"
        else:
            accepts = "—"
        inputs.append(
            {
                "position": position,
                "name": item.get("name"),
                "type": item.get("type"),
                "accepts": accepts,
                "nullable": item.get("nullable", False),
            }
        )
    outputs = []
    for name, spec in (signature.get("outputs") or {}).items():
        if isinstance(spec, list):
            outputs.append(
                {"name": name, "type": "probabilities", "detail": "one per label: " + ", ".join(map(str, spec))}
            )
        elif isinstance(spec, dict):
            categories = spec.get("categories")
            outputs.append(
                {
                    "name": name,
                    "type": spec.get("type", ""),
                    "detail": ", ".join(map(str, categories)) if categories else "",
                }
            )
        else:
            outputs.append({"name": name, "type": str(spec), "detail": ""})
    return {"inputs": inputs, "outputs": outputs}


def _lineage(version: ModelVersion) -> dict[str, Any]:
    lineage = version.lineage or {}
    job_id = lineage.get("training_job")
    if job_id is None:
        job_id = TrainingJob.objects.filter(model_version=version).values_list("pk", flat=True).first()
    parity = version.onnx_parity or {}
    return {
        "code_version": lineage.get("code_version") or "",
        "libraries": sorted((lineage.get("libraries") or {}).items()),
        "rows": lineage.get("rows") or version.metrics.get("rows") or {},
        "search": lineage.get("search"),
        "imported": lineage.get("imported"),
        "training_job": job_id,
        "attempt": lineage.get("attempt"),
        "params": sorted((version.params or {}).items()),
        "parity": parity,
        "onnx_url": reverse("api:registry:onnx", args=[version.registered_model.name, version.version])
        if version.onnx_sha256
        else "",
    }


def _latency(version: ModelVersion) -> dict[str, Any] | None:
    latency = (version.evaluation or {}).get("latency")
    if not latency:
        return None
    target = version.registered_model.latency_p95_ms_target
    p95_ms = latency.get("p95_us", 0) / 1000
    return {
        "median_us": fmt_number(latency.get("median_us")),
        "p95_us": fmt_number(latency.get("p95_us")),
        "target_ms": fmt_number(target) if target is not None else None,
        "within_target": None if target is None else p95_ms <= target,
    }


@staff_member_required
@require_GET
def version_detail(request, name: str, version: int):
    found = _version_or_404(name, version)
    may_change = may_change_model(request.user, found.registered_model)
    evaluation = found.evaluation or {}
    metric, value = _main_metric(found)
    report = found.gate_report or {}
    return render(
        request,
        "registry/version_detail.html",
        {
            "model": found.registered_model,
            "version": found,
            "aliases": sorted(alias.name for alias in found.aliases.all()),
            "maker": _person(found.maker),
            "metric": metric,
            "metric_value": fmt_number(value) if value is not None else "—",
            "report": report,
            "report_score": fmt_number(report.get("score")),
            "champion_score": fmt_number((report.get("champion") or {}).get("score")),
            "evaluation": evaluation,
            "charts": evaluation_charts(evaluation) if evaluation else None,
            "latency": _latency(found),
            "signature": _signature(found),
            "lineage": _lineage(found),
            "can_decide": request.user.has_perm(APPROVE_PERMISSION) and may_change,
            "can_promote": request.user.has_perm(ALIAS_PERMISSION) and may_change,
            "is_maker": bool(found.maker) and found.maker == actor_principal(request.user),
            "is_pending": found.status == ModelVersion.Status.PENDING,
            "approve_form": DecisionForm(auto_id="approve-%s"),
            "reject_form": DecisionForm(auto_id="reject-%s"),
            "promote_form": PromoteForm(auto_id="promote-%s", initial={"alias": ""}),
        },
    )


def _decide(request, name: str, number: int, verb: str):
    found = _version_or_404(name, number)
    _require_model_change(request, found.registered_model)
    form = DecisionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Note: " + " ".join(form.errors["note"]))
        return redirect(_version_url(found))
    note = form.cleaned_data["note"]
    service = services.model_version_approve if verb == "approve" else services.model_version_reject
    _attempt(
        request,
        lambda: service(version=found, actor=request.user, note=note),
        f"{found} {'approved' if verb == 'approve' else 'rejected'}.",
    )
    return redirect(_version_url(found))


@staff_member_required
@require_POST
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def version_approve(request, name: str, version: int):
    return _decide(request, name, version, "approve")


@staff_member_required
@require_POST
@permission_required(APPROVE_PERMISSION, raise_exception=True)
def version_reject(request, name: str, version: int):
    return _decide(request, name, version, "reject")


@staff_member_required
@require_POST
@permission_required(ALIAS_PERMISSION, raise_exception=True)
def version_promote(request, name: str, version: int):
    found = _version_or_404(name, version)
    _require_model_change(request, found.registered_model)
    form = PromoteForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Alias: " + " ".join(form.errors["alias"]))
        return redirect(_version_url(found))
    alias = form.cleaned_data["alias"]
    _attempt(
        request,
        lambda: services.model_version_promote(version=found, alias=alias, actor=request.user),
        f"{found} is now {alias}.",
    )
    return redirect(_version_url(found))


@staff_member_required
@require_POST
@permission_required("registry.change_modelversion", raise_exception=True)
def version_gates(request, name: str, version: int):
    found = _version_or_404(name, version)
    try:
        report = services.model_version_gates_evaluate(version=found)
    except FaroError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Release gates evaluated again: {'passed' if report['passed'] else 'failed'}.")
    return redirect(_version_url(found))


# -- the model card ------------------------------------------------------------------------------------


@staff_member_required
@require_GET
def version_card(request, name: str, version: int):
    found = _version_or_404(name, version)
    return render(request, "registry/version_card.html", {**model_card(found), "maker": _person(found.maker)})


# -- comparison ----------------------------------------------------------------------------------------


def _version_numbers(request) -> list[int] | None:
    """`?versions=1&versions=2` or `?versions=1,2`, in order, without repeats; None if any is not a number."""
    numbers: list[int] = []
    for raw in request.GET.getlist("versions"):
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit():
                return None
            if int(part) not in numbers:
                numbers.append(int(part))
    return numbers


def _roc_overlay(versions: list[dict[str, Any]]) -> dict[str, Any] | None:
    curves = [(item, item["roc_curve"]) for item in versions if item.get("roc_curve")]
    if not curves:
        return None
    chart = line_chart(
        [{"name": f"v{item['version']}", "x": curve["x"], "y": curve["y"]} for item, curve in curves]
        + [{"name": "Chance", "x": [0, 1], "y": [0, 1], "tone": "reference"}],
        caption="ROC curves, " + ", ".join(f"v{item['version']}" for item, _ in curves),
        summary=(
            "ROC curves of "
            + ", ".join(f"v{item['version']}" for item, _ in curves)
            + ": true-positive rate against false-positive rate; the dashed diagonal is chance."
        ),
        x_label="False-positive rate",
        y_label="True-positive rate",
    )
    if chart is None:
        return None
    for index, line in enumerate(chart["lines"]):
        colour, dash = ("#5b6b7c", "5 4") if line["tone"] == "reference" else SERIES_STYLES[index % len(SERIES_STYLES)]
        line.update(colour=colour, dash=dash)
    return chart


@staff_member_required
@require_GET
def compare(request, name: str):
    model = _model_or_404(name)
    numbers = _version_numbers(request)
    if numbers is None or len(numbers) < 2:
        return render(
            request,
            "registry/compare.html",
            {
                "model": model,
                "problem": "Choose at least two versions to compare, e.g. ?versions=1&versions=2.",
                "versions": [],
            },
            status=400,
        )
    try:
        versions = selectors.model_versions_by_numbers(registered_model=model, numbers=numbers)
    except NotFound as exc:
        raise Http404(exc.message) from None
    comparison = versions_compare(versions)
    metrics = []
    for row in comparison["metrics"]:
        label = METRICS.get(row["name"], (row["name"], ""))[0]
        metrics.append(
            {
                "name": row["name"],
                "label": label,
                "cells": [
                    {
                        "value": fmt_number(value) if value is not None else "—",
                        "best": row["best"] is not None and value == row["best"],
                    }
                    for value in row["values"]
                ],
            }
        )
    columns = comparison["versions"]
    ranks = max((len(item["importance"][:COMPARE_TOP_FEATURES]) for item in columns), default=0)
    importance = [
        [item["importance"][rank]["feature"] if rank < len(item["importance"]) else "" for item in columns]
        for rank in range(ranks)
    ]
    return render(
        request,
        "registry/compare.html",
        {
            "model": model,
            "versions": versions,
            "columns": columns,
            "metrics": metrics,
            "roc": _roc_overlay(columns),
            "importance": importance,
            "differences": [
                {"field": row["field"], "values": ["—" if value is None else value for value in row["values"]]}
                for row in comparison["lineage_differences"]
            ],
        },
    )


# -- training ------------------------------------------------------------------------------------------


@staff_member_required
@permission_required("registry.add_modelversion", raise_exception=True)
def version_import(request, name: str):
    """Import an ONNX model made elsewhere as a new pending version of this model."""
    model = _model_or_404(name)
    form = OnnxImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            version = services.model_version_import_onnx(
                registered_model=model,
                data=data["file"].read(),
                inputs=data["inputs"],
                task_type=data["task_type"],
                labels=data["labels"] or [],
                dataset_version=dataset_version_get(dataset=data["dataset"]),
                actor=request.user,
            )
        except FaroError as exc:
            form.add_error(None, exc.message)
            for key, problems in ((exc.extra or {}).get("fields") or {}).items():
                form.add_error(None, f"{key}: {' '.join(problems)}")
        else:
            messages.success(request, f"Imported {version}; it is pending approval.")
            return redirect(_version_url(version))
    return render(
        request, "registry/version_import.html", {"model": model, "form": form}, status=400 if form.errors else 200
    )


@staff_member_required
@permission_required("registry.add_trainingjob", raise_exception=True)
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
                params=form.params(),
            )
        except FaroError as exc:
            form.add_error(None, exc.message)
            fields = (exc.extra or {}).get("fields") or {}
            for key, problems in fields.items():
                field = key.removeprefix("params.")
                for problem in problems if isinstance(problems, list) else [problems]:
                    if field in form.fields:
                        form.add_error(field, problem)
        else:
            return redirect("registry:training-detail", job_id=job.pk)
    return render(request, "registry/training_new.html", {"form": form}, status=400 if form.errors else 200)


@staff_member_required
@require_GET
def training_detail(request, job_id: int):
    job = _job_or_404(job_id)
    return render(
        request,
        "registry/training_detail.html",
        {
            "job": job,
            "percent": round(job.progress * 100),
            "status_url": reverse("api:registry:training-job-detail", args=[job.pk]),
            "can_cancel": job.status in (TrainingJob.Status.QUEUED, TrainingJob.Status.RUNNING)
            and job.cancel_requested_at is None,
            "trials": [
                {
                    **trial,
                    "score": fmt_number(trial.get("score")),
                    "params": sorted((trial.get("params") or {}).items()),
                }
                for trial in job.trials or []
            ],
        },
    )


@staff_member_required
@require_POST
@permission_required("registry.change_trainingjob", raise_exception=True)
def training_cancel(request, job_id: int):
    job = _job_or_404(job_id)
    try:
        job = services.training_job_cancel(job=job, actor=request.user)
    except FaroError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Training job #{job.pk} cancelled."
            if job.status == TrainingJob.Status.CANCELLED
            else f"Cancel requested: training job #{job.pk} stops at its next boosting round.",
        )
    return redirect("registry:training-detail", job_id=job.pk)
