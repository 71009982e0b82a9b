"""The console for datasets: descriptions, checks and uploads call the same services as the API."""

from django import forms
from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.data.models import Dataset, DatasetCheck, DatasetVersion, IngestJob
from apps.data.services import (
    DATASET_FIELDS,
    dataset_check_create,
    dataset_check_delete,
    dataset_check_update,
    dataset_create,
    dataset_update,
    ingest_job_create,
)

EDITABLE = list(DATASET_FIELDS)


class DatasetAdminForm(forms.ModelForm):
    upload = forms.FileField(required=False, help_text="Optional: a CSV, Parquet or JSON Lines file to ingest.")
    mode = forms.ChoiceField(choices=DatasetVersion.Mode.choices, initial=DatasetVersion.Mode.REPLACE)
    accept_schema_change = forms.BooleanField(required=False)

    class Meta:
        model = Dataset
        fields = ["name", *EDITABLE]


class DatasetCheckInline(admin.TabularInline):
    model = DatasetCheck
    extra = 0
    fields = ["kind", "column", "params", "severity", "enabled"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    form = DatasetAdminForm
    inlines = [DatasetCheckInline]
    list_display = ["name", "target_column", "subject_key_column", "legal_basis", "retention_days", "created_at"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj else []

    def save_model(self, request, obj, form, change):
        fields = {name: form.cleaned_data.get(name) for name in EDITABLE if name in form.cleaned_data}
        if change:
            saved = dataset_update(dataset=obj, actor=request.user, **fields)
        else:
            saved = dataset_create(name=obj.name, actor=request.user, **fields)
        obj.pk, obj.created_at = saved.pk, saved.created_at
        upload = form.cleaned_data.get("upload")
        if upload:
            options = {
                "mode": form.cleaned_data["mode"],
                "accept_schema_change": form.cleaned_data["accept_schema_change"],
            }
            try:
                job = ingest_job_create(dataset=saved, upload=upload, options=options, actor=request.user)
            except FaroError as exc:
                self.message_user(request, f"Upload refused: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Upload queued as ingest job {job.pk}; see Ingest jobs for its progress.")

    def save_formset(self, request, form, formset, change):
        """Checks go through the services, which validate them and write the audit log."""
        # The admin's change message reads what a formset saved; record it as formset.save() would.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for deleted in formset.deleted_forms:
            if deleted.instance.pk:
                formset.deleted_objects.append(deleted.instance)
                dataset_check_delete(check=deleted.instance, actor=request.user)
        for check_form in formset.forms:
            if check_form in formset.deleted_forms or not check_form.has_changed():
                continue
            data = {key: check_form.cleaned_data[key] for key in ("kind", "column", "params", "severity", "enabled")}
            try:
                if check_form.instance.pk:
                    saved = dataset_check_update(
                        check=DatasetCheck.objects.get(pk=check_form.instance.pk), actor=request.user, **data
                    )
                    formset.changed_objects.append((saved, check_form.changed_data))
                else:
                    created = dataset_check_create(dataset=form.instance, actor=request.user, **data)
                    formset.new_objects.append(created)
            except FaroError as exc:
                self.message_user(
                    request, f"Check not saved: {exc.message} {exc.extra.get('fields', '')}", messages.ERROR
                )

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    """Purged versions stay listed (models trained on them point to them), with when and why their rows went."""

    list_display = ["__str__", "parent", "mode", "row_count", "sha256", "created_at", "purged_at", "purge_reason"]
    list_filter = ["dataset", "mode", ("purged_at", admin.EmptyFieldListFilter)]


@admin.register(IngestJob)
class IngestJobAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "dataset",
        "original_name",
        "status",
        "progress",
        "created_at",
        "finished_at",
        "dataset_version",
        "error",
    ]
    list_filter = ["status", "dataset"]
