from django import forms
from django.contrib import admin, messages

from apps.core.errors import FaroError
from apps.data.models import Dataset, DatasetVersion
from apps.data.services import dataset_create, dataset_version_create_from_upload


class DatasetAdminForm(forms.ModelForm):
    upload = forms.FileField(required=False, help_text="Optional: a CSV to ingest as a new version on save.")

    class Meta:
        model = Dataset
        fields = ["name", "description", "target_column", "subject_key_column"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    form = DatasetAdminForm
    list_display = ["name", "target_column", "subject_key_column", "created_at"]
    search_fields = ["name"]

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            created = dataset_create(
                name=obj.name,
                description=obj.description,
                target_column=obj.target_column,
                subject_key_column=obj.subject_key_column,
                actor=request.user,
            )
            obj.pk = created.pk
            obj.created_at = created.created_at
        else:
            super().save_model(request, obj, form, change)
        upload = form.cleaned_data.get("upload")
        if upload:
            try:
                version = dataset_version_create_from_upload(dataset=obj, upload=upload, actor=request.user)
            except FaroError as exc:
                problems = "; ".join(p["message"] for p in exc.extra.get("problems", [])[:10])
                self.message_user(request, f"Upload refused: {exc.message} {problems}", messages.ERROR)
            else:
                self.message_user(request, f"Version {version.number} created with {version.row_count} rows.")

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DatasetVersion)
class DatasetVersionAdmin(admin.ModelAdmin):
    list_display = ["__str__", "row_count", "sha256", "created_at"]
    list_filter = ["dataset"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
