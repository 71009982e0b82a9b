from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.governance.roles import may_change_model, model_change_refusal
from apps.predictions import batch_services, services
from apps.predictions.models import BatchScoringJob, PredictionRecord, TrafficPolicy


@admin.register(PredictionRecord)
class PredictionRecordAdmin(ReadOnlyAdmin):
    list_display = ["request_id", "row", "model_version", "route", "channel", "client", "latency_ms", "created_at"]
    list_filter = ["route", "channel"]
    list_select_related = ["model_version__registered_model"]
    search_fields = ["=request_id", "=subject_id"]


class TrafficPolicyForm(forms.ModelForm):
    """The policy is changed by the service as the form is cleaned, so a refusal shows on its field and every
    change is validated, audited and versioned alike from the console and the API."""

    actor = None

    class Meta:
        model = TrafficPolicy
        fields = [
            "registered_model",
            "canary_version",
            "canary_percent",
            "shadow_versions",
            "sticky_by",
            "max_error_rate_increase",
            "max_p95_latency_increase",
            "min_requests",
            "window_minutes",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.saved = None
        model_id = self.instance.registered_model_id
        for name in ("canary_version", "shadow_versions"):
            field = self.fields.get(name)
            if field is None:  # shown read-only, to someone who may view the policy but not change it
                continue
            versions = field.queryset.select_related("registered_model").order_by("registered_model__name", "-version")
            field.queryset = versions.filter(registered_model_id=model_id) if model_id else versions
        if model_id and "registered_model" in self.fields:
            self.fields["registered_model"].disabled = True

    def validate_unique(self):
        """One policy per model: the service updates the model's policy or creates it."""

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        registered = data["registered_model"]
        if not may_change_model(self.actor, registered):  # the owner rule, as in the API
            self.add_error("registered_model", model_change_refusal(registered))
            return data
        changes = {name: data.get(name) for name in services.POLICY_FIELDS}
        wrong = [
            str(version)
            for version in [changes["canary_version"], *changes["shadow_versions"]]
            if version is not None and version.registered_model_id != registered.pk
        ]
        if wrong:
            self.add_error(None, f"Not versions of {registered}: {', '.join(wrong)}.")
            return data
        changes["canary_version"] = changes["canary_version"].version if changes["canary_version"] else None
        changes["shadow_versions"] = [version.version for version in changes["shadow_versions"]]
        try:
            self.saved = services.traffic_policy_set(registered_model=registered, changes=changes, actor=self.actor)
        except FaroError as exc:
            fields = (exc.extra or {}).get("fields") or {}
            for key, problems in fields.items():
                for problem in problems:
                    self.add_error(key if key in self.fields else None, problem)
            if not fields:
                self.add_error(None, exc.message)
        return data


@admin.register(TrafficPolicy)
class TrafficPolicyAdmin(admin.ModelAdmin):
    form = TrafficPolicyForm
    list_display = ["registered_model", "canary_version", "canary_percent", "sticky_by", "revision", "rolled_back_at"]
    readonly_fields = ["revision", "updated_at", "updated_by", "rolled_back_at", "rollback_reason"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = type("TrafficPolicyFormFor", (TrafficPolicyForm,), {"actor": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        """Saved by the service as the form was cleaned; the console shows that row."""
        obj.pk = form.saved.pk
        obj.refresh_from_db()

    def save_related(self, request, form, formsets, change):
        """The service set the shadow versions."""

    def has_change_permission(self, request, obj=None):
        """Another owner's model's policy is shown read-only (the owner rule)."""
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or may_change_model(request.user, obj.registered_model))

    def has_delete_permission(self, request, obj=None):
        return False  # stop a canary by setting it to none: that is audited


class BatchScoringJobAddForm(forms.ModelForm):
    """Start a batch job from the console: the service is called as the form is cleaned, so a refusal shows
    on its field (the console's add view runs in one transaction: the job is queued when it commits)."""

    file = forms.FileField(
        required=False, help_text="Or a CSV, Parquet or JSON Lines file with the model's input columns."
    )
    actor = None

    class Meta:
        model = BatchScoringJob
        fields = ["model_version", "dataset_version", "output_format", "explain"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.job = None
        self.fields["model_version"].queryset = (
            self.fields["model_version"]
            .queryset.exclude(status="rejected")
            .select_related("registered_model")
            .order_by("registered_model__name", "-version")
        )
        self.fields["dataset_version"].queryset = (
            self.fields["dataset_version"].queryset.select_related("dataset").order_by("dataset__name", "-number")
        )
        self.fields["dataset_version"].help_text = "A dataset version to score, or a file below."

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.job = batch_services.batch_job_create(
                model_version=data["model_version"],
                dataset_version=data.get("dataset_version"),
                upload=data.get("file"),
                output_format=data["output_format"],
                explain=bool(data.get("explain")),
                actor=self.actor,
            )
        except FaroError as exc:
            places = {"version": "model_version", "dataset": "dataset_version"}
            fields = (exc.extra or {}).get("fields") or {}
            for key, problems in fields.items():
                field = places.get(key, key)
                for problem in problems:
                    self.add_error(field if field in self.fields else None, problem)
            if not fields:
                self.add_error(None, exc.message)
        return data


@admin.register(BatchScoringJob)
class BatchScoringJobAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "model_version",
        "input",
        "output_format",
        "status",
        "progress",
        "rows_done",
        "rows_total",
        "problem_count",
        "attempts",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "output_format", "registered_model"]
    list_select_related = ["model_version__registered_model", "dataset_version__dataset"]
    actions = ["cancel"]
    add_fields = ["model_version", "dataset_version", "file", "output_format", "explain"]

    def has_cancel_permission(self, request) -> bool:
        return request.user.has_perm("predictions.change_batchscoringjob")

    def has_view_permission(self, request, obj=None):
        return request.user.is_staff

    def has_add_permission(self, request, obj=None):
        return request.user.has_perm("predictions.add_batchscoringjob")

    def get_fields(self, request, obj=None):
        if obj is None:
            return self.add_fields
        return [
            "links",
            "model_version",
            "dataset_version",
            "input_name",
            "output_format",
            "explain",
            "status",
            "progress",
            "rows_total",
            "rows_done",
            "problem_count",
            "problems",
            "error",
            "attempts",
            "output_sha256",
            "requested_by",
            "created_at",
            "started_at",
            "finished_at",
            "cancel_requested_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["links"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = type("BatchScoringJobAddFormFor", (BatchScoringJobAddForm,), {"actor": request.user})
        return super().get_form(request, obj, change=change, **kwargs)

    def save_model(self, request, obj, form, change):
        """The job was created by the service as the form was cleaned; the console shows that row."""
        for field in BatchScoringJob._meta.concrete_fields:
            setattr(obj, field.attname, getattr(form.job, field.attname))

    @admin.display(description="Input")
    def input(self, obj: BatchScoringJob) -> str:
        return str(obj.dataset_version) if obj.dataset_version_id else obj.input_name

    @admin.display(description="Page and result")
    def links(self, obj: BatchScoringJob) -> str:
        page = reverse("batch-detail", args=[obj.pk])
        if obj.status != BatchScoringJob.Status.SUCCEEDED:
            return format_html('<a href="{}">Open the job\'s page</a>', page)
        return format_html(
            '<a href="{}">Open the job\'s page</a> · <a href="{}">Download the result ({})</a>',
            page,
            reverse("batch-download", args=[obj.pk]),
            obj.get_output_format_display(),
        )

    @admin.action(description="Cancel", permissions=["cancel"])
    def cancel(self, request, queryset):
        for job in queryset:
            try:
                batch_services.batch_job_cancel(job=job, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, "error")
            else:
                self.message_user(request, f"Batch scoring job {job.pk}: cancelled or cancel requested.")
