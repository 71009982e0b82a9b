"""The console for webhooks: configure receivers, read the outbox and the delivery log, retry failures."""

from django.contrib import admin, messages

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError
from apps.events.models import OutboxEvent, Webhook, WebhookDelivery
from apps.events.services import webhook_delivery_retry


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "kinds", "secret_env", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = ["created_at"]

    @admin.display(description="Event kinds")
    def kinds(self, obj: Webhook) -> str:
        return ", ".join(obj.event_kinds) or "all"


class WebhookDeliveryInline(admin.TabularInline):
    model = WebhookDelivery
    fields = ["webhook", "status", "attempts", "last_status_code", "last_error", "next_attempt_at", "delivered_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """Read-only: events are written by services in the transaction of the change they announce."""

    list_display = ["id", "kind", "event_id", "created_at"]
    list_filter = ["kind"]
    search_fields = ["kind", "event_id"]
    readonly_fields = ["event_id", "kind", "payload", "created_at"]
    inlines = [WebhookDeliveryInline]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """The delivery log. "Retry now" gives failed deliveries a fresh round of attempts."""

    list_display = [
        "id",
        "event_kind",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "next_attempt_at",
        "delivered_at",
    ]
    list_filter = ["status", "webhook", "event__kind"]
    list_select_related = ["event", "webhook"]
    readonly_fields = [
        "event",
        "webhook",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "delivered_at",
        "created_at",
    ]
    actions = ["retry_now"]

    @admin.display(description="Event kind", ordering="event__kind")
    def event_kind(self, obj: WebhookDelivery) -> str:
        return obj.event.kind

    def has_retry_permission(self, request) -> bool:
        return request.user.has_perm("events.change_webhookdelivery")

    @admin.action(description="Retry now", permissions=["retry"])
    def retry_now(self, request, queryset):
        retried = 0
        for delivery in queryset:
            try:
                webhook_delivery_retry(delivery=delivery, actor=request.user)
            except FaroError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                retried += 1
        if retried:
            self.message_user(request, f"{retried} deliver{'y' if retried == 1 else 'ies'} queued for a new attempt.")
