"""The product managers' console for the registry. Actions call the same services as the API and pages, under
the same permissions; changing a model or its releases also follows the owner rule (`may_change_model`): the
console shows another owner's model read-only and its actions refuse it."""

from django import forms
from django.contrib import admin, messages
from django.shortcuts import render
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.governance.roles import may_change_model, model_change_refusal
from apps.registry import services
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob

EDITABLE_MODEL_FIELDS = list(services.MODEL_FIELDS)
ALIAS_PERMISSION = "registry.change_modelalias"
APPROVE_PERMISSION = "registry.approve_modelversion"


def _may_change(admin_view: admin.ModelAdmin, request, registered_model: RegisteredModel) -> bool:
    """The owner rule, with the refusal shown as the action's message."""
    if may_change_model(request.user, registered_model):
        return True
    admin_view.message_user(request, model_change_refusal(registered_model), messages.ERROR)
    return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "owner", "champion", "quality_metric", "quality_minimum", "created_at"]
    search_fields = ["name"]
    actions = ["rollback_champion", "train_again"]
    fields = ["name", *EDITABLE_MODEL_FIELDS]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        """Another owner's model is shown read-only (the owner rule)."""
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or may_change_model(request.user, obj))

    def has_rollback_permission(self, request) -> bool:
        return request.user.has_perm(ALIAS_PERMISSION)

    def has_train_permission(self, request) -> bool:
        return request.user.has_perm("registry.add_trainingjob")

    def save_model(self, request, obj, form, change):
        """Through the services, so the change is validated and audited."""
        values = {name: form.cleaned_data[name] for name in EDITABLE_MODEL_FIELDS if name in form.cleaned_data}
        if change:
            changed = {name: values[name] for name in form.changed_data if name in values}
            saved = services.registered_model_update(registered_model=obj, actor=request.user, **changed)
        else:
            saved = services.registered_model_create(name=form.cleaned_data["name"], actor=request.user, **values)
        obj.pk = saved.pk

    @admin.display(description="Champion")
    def champion(self, obj: RegisteredModel) -> str:
        alias = obj.aliases.filter(name=ModelAlias.Name.CHAMPION).select_related("version").first()
        return f"v{alias.version.version}" if alias else "—"

    @admin.action(
        description="Train again on the latest data, with the last job's parameters and feature set",
        permissions=["train"],
    )
    def train_again(self, request, queryset):
        for model in queryset:
            try:
                job = services.training_job_repeat(registered_model=model, actor=request.user)
            except FaroError as exc:
                self.message_user(request, f"{model.name}: {exc.message}", messages.ERROR)
            else:
                url = reverse("registry:training-detail", args=[job.pk])
                self.message_user(
                    request, format_html('{}: <a href="{}">training job {}</a> queued.', model.name, url, job.pk)
                )

    @admin.action(description="Roll back the champion to the previous version", permissions=["rollback"])
    def rollback_champion(self, request, queryset):
        for model in queryset:
            if not _may_change(self, request, model):
                continue
            try:
                alias = services.model_alias_rollback(registered_model=model, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"{model.name}: champion is now v{alias.version.version}.")


class DecisionForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
        required=False,
        help_text="Required to reject, and to approve a version whose gates failed.",
    )


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "status",
        "aliases_display",
        "gates",
        "task_type",
        "auc_or_rmse",
        "source",
        "dataset_version",
        "maker",
        "created_at",
    ]
    list_filter = ["registered_model", "status", "source", "task_type", ("erased_data_at", admin.EmptyFieldListFilter)]
    actions = ["approve", "reject", "promote_champion", "promote_challenger", "evaluate_gates"]
    readonly_fields = ["page_link"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model", "dataset_version__dataset")
            .prefetch_related("aliases")
        )

    @admin.display(description="Page")
    def page_link(self, obj: ModelVersion) -> str:
        url = reverse("registry:version-detail", args=[obj.registered_model.name, obj.version])
        return format_html('<a href="{}">Evaluation, gates and model card</a>', url)

    @admin.display(description="Aliases")
    def aliases_display(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all())) or "—"

    @admin.display(description="Gates")
    def gates(self, obj: ModelVersion) -> str:
        if not obj.gate_report:
            return "—"
        return "passed" if obj.gate_report.get("passed") else "failed"

    @admin.display(description="AUC / RMSE")
    def auc_or_rmse(self, obj: ModelVersion) -> str:
        value = obj.metrics.get("auc", obj.metrics.get("rmse"))
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    def _one(self, request, queryset) -> ModelVersion | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version.", messages.ERROR)
            return None
        return queryset.get()

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)

    def has_promote_permission(self, request) -> bool:
        return request.user.has_perm(ALIAS_PERMISSION)

    def has_gates_permission(self, request) -> bool:
        return request.user.has_perm("registry.change_modelversion")

    def _decide(self, request, queryset, verb: str):
        """An intermediate page asks for the note; submitting it calls the service."""
        version = self._one(request, queryset)
        if version is None or not _may_change(self, request, version.registered_model):
            return None
        form = DecisionForm(request.POST if "confirm" in request.POST else None)
        if form.is_valid():
            service = services.model_version_approve if verb == "approve" else services.model_version_reject
            try:
                service(version=version, actor=request.user, note=form.cleaned_data["note"])
            except FaroError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"{version} {'approved' if verb == 'approve' else 'rejected'}.")
            return None
        return render(
            request,
            "admin/registry/decision.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{verb.capitalize()} {version}",
                "version": version,
                "verb": verb,
                "action": request.POST.get("action"),
                "form": form,
                "opts": self.model._meta,
            },
        )

    @admin.action(description="Approve (maker-checker; gates' evidence shown)", permissions=["approve"])
    def approve(self, request, queryset):
        return self._decide(request, queryset, "approve")

    @admin.action(description="Reject, with the reason", permissions=["approve"])
    def reject(self, request, queryset):
        return self._decide(request, queryset, "reject")

    def _promote(self, request, queryset, alias: str) -> None:
        version = self._one(request, queryset)
        if version is None or not _may_change(self, request, version.registered_model):
            return
        try:
            services.model_version_promote(version=version, alias=alias, actor=request.user)
        except FaroError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"{version} is now {alias}.")

    @admin.action(description="Promote to champion", permissions=["promote"])
    def promote_champion(self, request, queryset):
        self._promote(request, queryset, ModelAlias.Name.CHAMPION)

    @admin.action(description="Promote to challenger", permissions=["promote"])
    def promote_challenger(self, request, queryset):
        self._promote(request, queryset, ModelAlias.Name.CHALLENGER)

    @admin.action(description="Evaluate the release gates again", permissions=["gates"])
    def evaluate_gates(self, request, queryset):
        for version in queryset:
            try:
                report = services.model_version_gates_evaluate(version=version)
            except FaroError as exc:
                self.message_user(request, f"{version}: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"{version}: gates {'passed' if report['passed'] else 'failed'}.")

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff


@admin.register(AliasChange)
class AliasChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "registered_model", "alias", "kind", "from_version", "to_version", "actor"]
    list_filter = ["registered_model", "alias", "kind"]


@admin.register(TrainingJob)
class TrainingJobAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "registered_model",
        "dataset_version",
        "status",
        "progress",
        "attempts",
        "created_at",
        "finished_at",
        "model_version",
    ]
    list_filter = ["status", "registered_model"]
    actions = ["cancel"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("registry.change_trainingjob")

    @admin.action(description="Cancel", permissions=["cancel"])
    def cancel(self, request, queryset):
        for job in queryset:
            try:
                services.training_job_cancel(job=job, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"Training job {job.pk}: cancel requested.")
