import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.dateparse import parse_datetime

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import FaroError, InvalidInput
from apps.governance.chain import FIELDS as CHAIN_FIELDS
from apps.governance.chain import write_jsonl
from apps.governance.models import ApiToken, AuditEvent, ReviewRequest
from apps.governance.services import (
    REVIEW_CHANGED_OUTCOME_MAX_CHARS,
    REVIEW_NOTE_MAX_CHARS,
    REVIEW_PERMISSION,
    review_request_decide,
    review_request_take,
    token_revoke,
)


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


class ReviewOutcomeForm(forms.Form):
    """The reviewer's outcome. Its rules (a note always, a new decision only when changed) are the service's."""

    outcome = forms.ChoiceField(
        label="Outcome",
        choices=[
            (ReviewRequest.Status.UPHELD, "Upheld: the decision stands"),
            (ReviewRequest.Status.CHANGED, "Changed: the decision is replaced"),
        ],
        widget=forms.RadioSelect,
    )
    changed_outcome = forms.CharField(
        label="New decision (when changed)",
        required=False,
        max_length=REVIEW_CHANGED_OUTCOME_MAX_CHARS,
        help_text="One of the model's labels (suggested as you type), or a few words.",
        widget=forms.TextInput(attrs={"list": "review-labels", "size": 40}),
    )
    outcome_note = forms.CharField(
        label="Explanation for the person",
        max_length=REVIEW_NOTE_MAX_CHARS,
        help_text="Shown to the person on their review page: why the decision stands or changed, in plain words.",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 80}),
    )


def _case_rows(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The snapshot, arranged for the case page."""
    output = snapshot.get("output") or {}
    probabilities = output.get("probabilities") or {}
    explanation = snapshot.get("explanation") or {}
    inputs = snapshot.get("inputs") or {}
    return {
        "output": output,
        "probabilities": [
            (label, f"{value:.1%}" if isinstance(value, (int, float)) else value)
            for label, value in probabilities.items()
        ],
        "made_at": parse_datetime(snapshot["made_at"]) if snapshot.get("made_at") else None,
        "explanation": explanation,
        "inputs": [
            {"name": name, "value": value, "pseudonymised": isinstance(value, str) and value.startswith("psn:")}
            for name, value in sorted(inputs.items())
        ],
        "model": snapshot.get("model") or {},
    }


@admin.register(ReviewRequest)
class ReviewRequestAdmin(admin.ModelAdmin):
    """The review cases. People open them on the decision page; here a reviewer (permission
    governance.review_decision) reads the case, takes it and records its outcome, through the services, so each
    step is checked and audited. Nothing is edited directly."""

    list_display = ["request_id", "model_name", "model_version", "status", "reviewer", "created_at", "decided_at"]
    list_filter = ["status", "model_name"]
    list_select_related = ["reviewer"]
    search_fields = ["request_id"]
    date_hierarchy = "created_at"

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(REVIEW_PERMISSION)

    def has_add_permission(self, request):
        return False  # asked for by the person the decision is about, on the decision page

    def has_change_permission(self, request, obj=None):
        return False  # a case moves only through the reviewer's actions on its page

    def has_delete_permission(self, request, obj=None):
        return False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The case page: everything the reviewer needs, and the action the case is ready for.

        POST `action=take` takes the case; `action=decide` records the outcome. Without the permission to
        review, a POST is refused (403) before anything is read from it."""
        review = self.get_object(request, unquote(object_id))
        if review is None:
            raise Http404("No such review case.")
        if not self.has_view_permission(request, review):
            raise PermissionDenied
        can_review = request.user.has_perm(REVIEW_PERMISSION)
        form = ReviewOutcomeForm()
        status = 200
        if request.method == "POST":
            if not can_review:
                raise PermissionDenied
            action = request.POST.get("action")
            try:
                if action == "take":
                    review_request_take(review=review, actor=request.user)
                    self.message_user(request, "You took this case. Record its outcome when you have reviewed it.")
                    return HttpResponseRedirect(request.path)
                if action == "decide":
                    form = ReviewOutcomeForm(request.POST)
                    if form.is_valid():
                        decided = review_request_decide(
                            review=review,
                            actor=request.user,
                            outcome=form.cleaned_data["outcome"],
                            note=form.cleaned_data["outcome_note"],
                            changed_outcome=form.cleaned_data["changed_outcome"],
                        )
                        self.message_user(
                            request,
                            f"Outcome recorded: {decided.get_status_display().lower()}. The person's page shows it.",
                        )
                        return HttpResponseRedirect(request.path)
                    status = 400
                else:
                    self.message_user(request, "Unknown action: nothing was changed.", messages.ERROR)
                    status = 400
            except InvalidInput as exc:
                for field, problems in exc.extra.get("fields", {}).items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
                status = 400
            except FaroError as exc:  # a Conflict: taken by someone else, already decided, not taken yet
                self.message_user(request, f"Nothing was changed: {exc.message}", messages.ERROR)
                status = exc.status_code
            review.refresh_from_db()
        user = request.user
        in_review = review.status == ReviewRequest.Status.IN_REVIEW
        context = {
            **self.admin_site.each_context(request),
            "title": f"Review case {review.request_id}",
            "opts": self.opts,
            "original": review,
            "review": review,
            "case": _case_rows(review.decision if isinstance(review.decision, dict) else {}),
            "can_review": can_review,
            "can_take": can_review
            and (review.status == ReviewRequest.Status.OPEN or (in_review and review.reviewer_id is None)),
            "can_decide": can_review and in_review and review.reviewer_id == user.pk,
            "form": form,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/governance/reviewrequest/case.html", context, status=status)
