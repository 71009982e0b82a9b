"""The console for feature sets: a new definition is a new version, saved through the services."""

from django import forms
from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.features.models import FeatureSet, FeatureSetVersion, MaterialisationJob, OnlineFeatureRow
from apps.features.services import feature_definition_check, feature_set_create, feature_set_version_create


class FeatureSetAdminForm(forms.ModelForm):
    definition = forms.JSONField(help_text="The ordered features; saving a changed definition adds a version.")

    class Meta:
        model = FeatureSet
        fields = ["name", "description", "dataset"]

    def clean(self):
        data = super().clean()
        dataset = data.get("dataset") or (self.instance.dataset if self.instance.pk else None)
        if dataset is not None and "definition" in data:
            try:
                feature_definition_check(dataset, data["definition"])
            except FaroError as exc:
                problems = [f"{p['feature']}: {p['field']} {p['message']}" for p in exc.extra.get("problems", [])]
                raise forms.ValidationError({"definition": problems or [exc.message]}) from None
        return data


class FeatureSetVersionInline(admin.TabularInline):
    model = FeatureSetVersion
    extra = 0
    fields = ["number", "definition_hash", "created_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(FeatureSet)
class FeatureSetAdmin(admin.ModelAdmin):
    form = FeatureSetAdminForm
    inlines = [FeatureSetVersionInline]
    list_display = ["name", "dataset", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return ["name", "dataset"] if obj else []

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        latest = obj.versions.order_by("-number").first() if obj else None
        form.base_fields["definition"].initial = latest.definition if latest else []
        return form

    def save_model(self, request, obj, form, change):
        definition = form.cleaned_data["definition"]
        try:
            if change:
                latest = obj.versions.order_by("-number").first()
                if latest is None or latest.definition != definition:
                    version = feature_set_version_create(feature_set=obj, definition=definition, actor=request.user)
                    self.message_user(request, f"Saved as version {version.number}.")
            else:
                saved = feature_set_create(
                    name=obj.name,
                    description=obj.description,
                    dataset=obj.dataset,
                    definition=definition,
                    actor=request.user,
                )
                obj.pk, obj.created_at = saved.pk, saved.created_at
        except FaroError as exc:
            problems = "; ".join(f"{p['feature']}: {p['message']}" for p in exc.extra.get("problems", [])[:10])
            self.message_user(request, f"Not saved: {exc.message} {problems}", messages.ERROR)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(FeatureSetVersion)
class FeatureSetVersionAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "definition_hash", "created_at"]
    readonly_fields = ["feature_set", "number", "definition", "definition_hash", "created_by", "created_at"]


@admin.register(MaterialisationJob)
class MaterialisationJobAdmin(ReadOnlyAdmin):
    list_display = ["pk", "dataset_version", "store", "status", "progress", "rows_written", "created_at", "error"]
    list_filter = ["status", "store"]


@admin.register(OnlineFeatureRow)
class OnlineFeatureRowAdmin(ReadOnlyAdmin):
    """What the database store holds; entity ids are searchable for data-subject requests."""

    list_display = ["dataset", "entity_id", "event_time", "materialised_at", "dataset_version"]
    list_filter = ["dataset"]
    search_fields = ["=entity_id"]
