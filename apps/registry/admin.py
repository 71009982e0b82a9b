"""The product managers' console for the registry. Actions call the same services as the API."""

from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.registry.models import AliasChange, ModelAlias, ModelVersion, RegisteredModel, TrainingJob
from apps.registry.services import model_alias_rollback, model_version_promote


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "champion", "created_at"]
    search_fields = ["name"]
    actions = ["rollback_champion"]

    @admin.display(description="Champion")
    def champion(self, obj: RegisteredModel) -> str:
        alias = obj.aliases.filter(name=ModelAlias.Name.CHAMPION).select_related("version").first()
        return f"v{alias.version.version}" if alias else "—"

    @admin.action(description="Roll back the champion to the previous version")
    def rollback_champion(self, request, queryset):
        for model in queryset:
            try:
                alias = model_alias_rollback(registered_model=model, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, f"{model.name}: champion is now v{alias.version.version}.")


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "registered_model",
        "version",
        "aliases_display",
        "task_type",
        "auc_or_rmse",
        "dataset_version",
        "created_at",
    ]
    list_filter = ["registered_model", "task_type"]
    actions = ["promote_champion", "promote_challenger"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("registered_model", "dataset_version__dataset")
            .prefetch_related("aliases")
        )

    @admin.display(description="Aliases")
    def aliases_display(self, obj: ModelVersion) -> str:
        return ", ".join(sorted(alias.name for alias in obj.aliases.all())) or "—"

    @admin.display(description="AUC / RMSE")
    def auc_or_rmse(self, obj: ModelVersion) -> str:
        value = obj.metrics.get("auc", obj.metrics.get("rmse"))
        return f"{value:.3f}" if isinstance(value, (int, float)) else "—"

    def _promote(self, request, queryset, alias: str) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.ERROR)
            return
        version = queryset.get()
        try:
            model_version_promote(version=version, alias=alias, actor=request.user)
        except FaroError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, f"{version} is now {alias}.")

    @admin.action(description="Promote to champion")
    def promote_champion(self, request, queryset):
        self._promote(request, queryset, ModelAlias.Name.CHAMPION)

    @admin.action(description="Promote to challenger")
    def promote_challenger(self, request, queryset):
        self._promote(request, queryset, ModelAlias.Name.CHALLENGER)

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
        "created_at",
        "finished_at",
        "model_version",
    ]
    list_filter = ["status", "registered_model"]
