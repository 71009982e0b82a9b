import io

from django.contrib import admin, messages
from django.db.models import Max, Min
from django.http import HttpResponse

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.governance.chain import FIELDS as CHAIN_FIELDS
from apps.governance.chain import write_jsonl
from apps.governance.models import ApiToken, AuditEvent, ReviewRequest
from apps.governance.services import review_request_status_set, token_revoke


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    """Read-only: the chain is appended to by services only. Auditors filter it and export what they
    selected with every field of the chain, to re-verify it offline (`python -m apps.governance.chain`)."""

    list_display = ["seq", "at", "actor", "action", "object_type", "object_id"]
    list_filter = ["action", "object_type"]
    search_fields = ["action", "object_id", "actor"]
    date_hierarchy = "at"
    readonly_fields = [field.name for field in AuditEvent._meta.fields]
    actions = ["export_jsonl"]

    @admin.action(description="Export the selected events (JSON lines)", permissions=["view"])
    def export_jsonl(self, request, queryset):
        buffer = io.BytesIO()
        write_jsonl(queryset.order_by("seq").values(*CHAIN_FIELDS).iterator(chunk_size=2000), buffer)
        span = queryset.aggregate(first=Min("seq"), last=Max("seq"))
        name = f"audit-events-{span['first']}-{span['last']}.jsonl"
        response = HttpResponse(buffer.getvalue(), content_type="application/jsonl")
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


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


@admin.register(ReviewRequest)
class ReviewRequestAdmin(admin.ModelAdmin):
    """Requests for a human review of a decision. People make them on the decision page; here only the status
    moves, through the service, so each change is audited."""

    list_display = ["request_id", "model_name", "model_version", "status", "created_at"]
    list_filter = ["status", "model_name"]
    search_fields = ["request_id"]
    date_hierarchy = "created_at"
    fields = ["request_id", "model_name", "model_version", "subject_id", "reason", "contact", "status", "created_at"]
    readonly_fields = ["request_id", "model_name", "model_version", "subject_id", "reason", "contact", "created_at"]

    def has_add_permission(self, request):
        return False  # asked for by the person the decision is about, on the decision page

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        try:
            review_request_status_set(
                review=obj, status=form.cleaned_data["status"], actor=request.user, seen_status=form.initial["status"]
            )
        except FaroError as exc:
            self.message_user(request, f"Status not changed: {exc.message}", messages.ERROR)
