from django.contrib import admin

from apps.core.admin import ReadOnlyAdmin
from apps.governance.models import ApiToken, AuditEvent
from apps.governance.services import token_revoke


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the chain is appended to by services only."""

    list_display = ["seq", "at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["action", "object_id", "actor"]
    readonly_fields = [field.name for field in AuditEvent._meta.fields]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "scopes", "created_at", "expires_at", "revoked_at"]
    readonly_fields = ["name", "prefix", "digest", "scopes", "created_at", "created_by", "expires_at", "revoked_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # created with `manage.py token_create`, which shows the token once

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token=token, actor=request.user)
        self.message_user(request, f"Revoked {queryset.count()} token(s).")
