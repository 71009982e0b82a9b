import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Max, Min, Q
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html, format_html_join

from apps.core.admin import ReadOnlyAdmin
from apps.core.errors import Conflict, FaroError, InvalidInput
from apps.core.personal_data import subject_digest
from apps.governance import privacy
from apps.governance.chain import FIELDS as CHAIN_FIELDS
from apps.governance.chain import write_jsonl
from apps.governance.forms import (
    ConfirmForm,
    ExtendForm,
    LiftForm,
    RefuseForm,
    SubjectRequestReceivedForm,
    VerifyForm,
)
from apps.governance.models import (
    ApiToken,
    AuditEvent,
    DataSubjectRequest,
    ErasureStep,
    ReviewRequest,
    SubjectRestriction,
)
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


# --- data-subject requests: the data protection officer's console ------------------------------------------------

HANDLE_PERMISSION = privacy.HANDLE_PERMISSION
DsrKind, DsrStatus = DataSubjectRequest.Kind, DataSubjectRequest.Status


def deadline_left(request: DataSubjectRequest, now: datetime | None = None) -> tuple[str, bool]:
    """The countdown of an open request in calendar days of the site's time zone ("12 days left", "3 days
    overdue", "Due today"), and whether it is overdue; closed requests have none."""
    if not request.is_open:
        return "", False
    now = now or timezone.now()
    days = (timezone.localdate(request.due_at) - timezone.localdate(now)).days
    overdue = request.due_at < now
    if days > 0:
        return f"{days} day{'s' if days != 1 else ''} left", overdue
    if days == 0:
        return ("Due today (time passed)" if overdue else "Due today"), overdue
    return f"{-days} day{'s' if days != -1 else ''} overdue", True


def _moment(iso: str | None) -> str:
    moment = parse_datetime(iso) if iso else None
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}" if moment else "—"


def restriction_in_force(request: DataSubjectRequest) -> SubjectRestriction | None:
    return request.restrictions.filter(lifted_at=None).first()


def next_step_text(request: DataSubjectRequest, restriction: SubjectRestriction | None) -> str:
    """What the data protection officer does next with `request`, in a sentence or two."""
    extend = (
        " If you need longer, extend the deadline once, by one or two months, and tell the person why."
        if request.is_open and request.extended_at is None
        else ""
    )
    if request.status == DsrStatus.RECEIVED:
        return (
            "Next step: verify the person's identity (Art. 12(6)), e.g. write to the contact on the customer record "
            "or ask for a document, then record how with “Verify identity”. Nothing is carried out before. If the "
            "identity cannot be established, or the request is manifestly unfounded, refuse it with the reason."
            + extend
        )
    if request.status == DsrStatus.VERIFIED:
        what = {
            DsrKind.ACCESS: "Faro counts what each store holds about the subject; the person then downloads the "
            "copy from their private link (you can download it here too).",
            DsrKind.ERASURE: "a background worker removes the subject's data from every store, step by step in the "
            "ledger; this cannot be undone.",
            DsrKind.RESTRICTION: "every automated decision about the subject is refused until you lift it.",
            DsrKind.OBJECTION: "every automated decision about the subject is refused until you lift it.",
        }[request.kind]
        return f"Next step: carry out the request: {what}{extend}"
    if request.status == DsrStatus.IN_PROGRESS:
        return (
            "The erasure is being carried out in the background: the ledger below shows each store's step. Reload "
            "this page to follow it; a failed step shows its error and is resumed automatically. When every step is "
            "done the request completes and its receipt can be downloaded." + extend
        )
    if request.status == DsrStatus.REFUSED:
        return "Closed: refused. The reason is the outcome the person reads on their request's page."
    if request.kind == DsrKind.ERASURE:
        return (
            "Completed. Download the receipt for your records and answer the person; the subject key and the "
            "contact details of this request have been cleared."
        )
    if request.kind == DsrKind.ACCESS:
        return (
            "Completed. Tell the person that their copy is ready on their private link, or download it here and "
            "send it to them securely."
        )
    if restriction is not None:
        return "Completed: in force. Lift it when its grounds end (Art. 18(3): tell the person before you lift it)."
    return "Closed: the restriction was lifted."


@dataclass(frozen=True)
class SubjectRequestStep:
    """One step the data protection officer takes on a request, on its own page of the console."""

    slug: str
    label: str
    form: type[forms.Form]
    allowed: Callable[[DataSubjectRequest], bool]
    run: Callable[[DataSubjectRequest, Any, dict[str, Any]], Any]


SUBJECT_REQUEST_STEPS = {
    step.slug: step
    for step in (
        SubjectRequestStep(
            "verify",
            "Verify identity",
            VerifyForm,
            lambda r: r.status == DsrStatus.RECEIVED,
            lambda r, user, data: privacy.subject_request_verify(request=r, actor=user, method=data["verification"]),
        ),
        SubjectRequestStep(
            "carry-out",
            "Carry out",
            ConfirmForm,
            lambda r: r.status == DsrStatus.VERIFIED,
            lambda r, user, data: privacy.subject_request_carry_out(request=r, actor=user),
        ),
        SubjectRequestStep(
            "extend",
            "Extend deadline",
            ExtendForm,
            lambda r: r.is_open and r.extended_at is None,
            lambda r, user, data: privacy.subject_request_extend(
                request=r, actor=user, months=data["months"], reason=data["reason"]
            ),
        ),
        SubjectRequestStep(
            "refuse",
            "Refuse",
            RefuseForm,
            lambda r: r.is_open and r.status != DsrStatus.IN_PROGRESS,
            lambda r, user, data: privacy.subject_request_refuse(request=r, actor=user, reason=data["reason"]),
        ),
        SubjectRequestStep(
            "lift-restriction",
            "Lift restriction",
            LiftForm,
            lambda r: restriction_in_force(r) is not None,
            lambda r, user, data: privacy.restriction_lift(request=r, actor=user, reason=data["reason"]),
        ),
    )
}


def carry_out_explanation(request: DataSubjectRequest) -> str:
    return {
        DsrKind.ACCESS: "Faro counts what every store holds about the subject and completes the request. The copy "
        "(data.json with every store's rows, and one CSV per store) is built each time it is downloaded, by the "
        "person from their private link or by you from the request's page, so no copy is kept.",
        DsrKind.ERASURE: "Faro plans one ledger step per store holding the subject, then a background worker "
        "removes the subject's data from each: dataset versions are rewritten without their rows, decision logs, "
        "review cases and earlier requests are cleared, and models trained on their rows are flagged under each "
        "model's erasure policy. This cannot be undone. When every step is done, the request's subject key and "
        "contact are cleared and a receipt is written.",
        DsrKind.RESTRICTION: "From now on every automated decision about the subject (decision page, API, batch "
        "scoring) is refused, until you lift the restriction.",
        DsrKind.OBJECTION: "From now on every automated decision about the subject (decision page, API, batch "
        "scoring) is refused, until you lift it.",
    }[request.kind]


def carry_out_message(request: DataSubjectRequest) -> str:
    if request.kind == DsrKind.ERASURE and request.status == DsrStatus.COMPLETED:
        removed = (request.receipt or {}).get("removed", 0)
        return f"The erasure is complete: {removed} item(s) removed. Download its receipt from this page."
    if request.kind == DsrKind.ERASURE:
        return "The erasure has started: the ledger below shows each store's step. Reload the page to follow it."
    if request.kind == DsrKind.ACCESS:
        rows = (request.receipt or {}).get("rows", 0)
        return f"Completed: {rows} item(s) held. The person can download their copy from their private link."
    return "Completed: automated decisions about this person are now refused."


STEP_DONE_MESSAGES = {
    "verify": "Identity verification recorded. The next step is to carry out the request.",
    "extend": "Deadline extended. Tell the person the new due date and the reason.",
    "refuse": "Request refused. The person reads the reason on their request's page.",
    "lift-restriction": "Restriction lifted: decisions about this person are allowed again.",
}


class DeadlineFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "deadline"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("week", "Due within 7 days")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return queryset.filter(status__in=DataSubjectRequest.OPEN, due_at__lt=now)
        if self.value() == "week":
            return queryset.filter(
                status__in=DataSubjectRequest.OPEN, due_at__gte=now, due_at__lt=now + timedelta(days=7)
            )
        return queryset


def subject_search(queryset, search_term: str, *, digest_field: str, number_field: str):
    """Match a request number, or a subject key through its digest: keys are cleared after an erasure, digests
    stay, so an erased person's requests are found by their key too."""
    term = search_term.strip()
    if not term:
        return queryset, False
    found = Q(**{digest_field: subject_digest(term)})
    if term.lstrip("#").isdigit():
        found |= Q(**{number_field: int(term.lstrip("#"))})
    return queryset.filter(found), False


class ErasureStepInline(admin.TabularInline):
    """The erasure's ledger, read-only: one row per store and target, as the worker carries it out."""

    model = ErasureStep
    verbose_name = "erasure step"
    verbose_name_plural = "Erasure ledger"
    fields = ["store", "target", "status", "removed", "before_hash", "after_hash", "started_at", "finished_at", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("governance.view_datasubjectrequest") or request.user.has_perm(HANDLE_PERMISSION)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Removed")
    def removed(self, step: ErasureStep) -> int:
        return step.count

    @admin.display(description="Before")
    def before_hash(self, step: ErasureStep) -> str:
        return step.before[:12] + "…" if step.before else "—"

    @admin.display(description="After")
    def after_hash(self, step: ErasureStep) -> str:
        return step.after[:12] + "…" if step.after else "—"

    @admin.display(description="Error")
    def error(self, step: ErasureStep) -> str:
        return str((step.detail or {}).get("error", "")) or "—"


@admin.register(DataSubjectRequest)
class DataSubjectRequestAdmin(admin.ModelAdmin):
    """The data protection officer's console for data-subject requests (GDPR Arts. 15-21).

    Requests arrive from the person's page (/privacy/) or are recorded here when received by post or phone
    (`subject_request_create`). The request's page is read-only; each next step (verify, extend, carry out, refuse,
    lift the restriction) has its own page and calls its service, which checks the status and audits. Every step
    and both downloads need governance.handle_subjectrequest; the view permission alone lets an auditor read."""

    list_display = ["number", "kind", "status", "received_at", "due_at", "deadline", "handler"]
    list_display_links = ["number"]
    list_filter = ["kind", "status", DeadlineFilter]
    list_select_related = ["handler"]
    search_fields = ["=id"]  # shows the search box; the search itself is `get_search_results`
    search_help_text = (
        "A request number, or the person's applicant or customer number (matched through its digest, so requests "
        "of erased subjects are found too)."
    )
    date_hierarchy = "received_at"
    inlines = [ErasureStepInline]

    class Media:
        css = {"all": ["css/admin_governance.css"]}

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(HANDLE_PERMISSION)

    def has_add_permission(self, request):
        return request.user.has_perm(HANDLE_PERMISSION)

    def has_change_permission(self, request, obj=None):
        return False  # a request moves only through the steps on its page

    def has_delete_permission(self, request, obj=None):
        return False

    def get_search_results(self, request, queryset, search_term):
        return subject_search(queryset, search_term, digest_field="subject_digest", number_field="pk")

    def get_inline_instances(self, request, obj=None):
        if obj is None or obj.kind != DsrKind.ERASURE or not obj.erasure_steps.exists():
            return []  # the ledger is planned when the erasure is carried out
        return super().get_inline_instances(request, obj)

    def get_fieldsets(self, request, obj=None):
        fieldsets = [
            (
                "Request",
                {
                    "fields": [
                        "kind",
                        "status",
                        "deadline",
                        "received_at",
                        "due_at",
                        "extended_at",
                        "extension_reason",
                        "created_by",
                    ]
                },
            ),
            ("The person", {"fields": ["subject_key", "subject_reference", "contact", "details"]}),
            (
                "Handling",
                {"fields": ["handler", "verified_at", "verification", "started_at", "completed_at", "outcome"]},
            ),
        ]
        if obj is not None and obj.kind in (DsrKind.ACCESS, DsrKind.ERASURE):
            fieldsets.append(("Receipt", {"fields": ["receipt_summary"]}))
        if obj is not None and obj.kind in (DsrKind.RESTRICTION, DsrKind.OBJECTION):
            fieldsets.append(("Restriction", {"fields": ["restriction"]}))
        return fieldsets

    def get_readonly_fields(self, request, obj=None):
        return [name for _title, options in self.get_fieldsets(request, obj) for name in options["fields"]]

    @admin.display(description="Request", ordering="pk")
    def number(self, obj: DataSubjectRequest) -> str:
        return f"#{obj.pk}"

    @admin.display(description="Countdown", ordering="due_at")
    def deadline(self, obj: DataSubjectRequest) -> str:
        text, overdue = deadline_left(obj)
        if overdue:
            return format_html('<strong class="overdue">{}</strong>', text)
        return text or "—"

    @admin.display(description="Subject key")
    def subject_key(self, obj: DataSubjectRequest) -> str:
        if obj.subject_id:
            return obj.subject_id
        return "Cleared when the erasure completed" if obj.kind == DsrKind.ERASURE else "—"

    @admin.display(description="Pseudonymous reference")
    def subject_reference(self, obj: DataSubjectRequest) -> str:
        return obj.subject_ref

    @admin.display(description="What was done")
    def receipt_summary(self, obj: DataSubjectRequest) -> str:
        receipt = obj.receipt or {}
        if obj.kind == DsrKind.ACCESS and "held" in receipt:
            if not receipt["held"]:
                return "No store held data about the subject."
            rows = format_html_join("", "<tr><td>{}</td><td>{}</td></tr>", sorted(receipt["held"].items()))
            return format_html(
                "<table><thead><tr><th scope='col'>Store</th><th scope='col'>Items held</th></tr></thead>"
                "<tbody>{}</tbody></table><p>{} item(s) in all.</p>",
                rows,
                receipt.get("rows", 0),
            )
        if obj.kind == DsrKind.ERASURE and receipt.get("stores") is not None:
            rows = format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                ((store["label"], store["target"], store["removed"]) for store in receipt["stores"]),
            )
            return format_html(
                "<table><thead><tr><th scope='col'>Store</th><th scope='col'>Target</th>"
                "<th scope='col'>Removed</th></tr></thead><tbody>{}</tbody></table>"
                "<p>{} item(s) removed; completed {}.</p>",
                rows,
                receipt.get("removed", 0),
                _moment(receipt.get("completed_at")),
            )
        return "Written when the request completes."

    @admin.display(description="Restriction")
    def restriction(self, obj: DataSubjectRequest) -> str:
        latest = obj.restrictions.order_by("-since").first()
        if latest is None:
            return "Not in force." + (" It is put in force when the request is carried out." if obj.is_open else "")
        if latest.lifted_at is None:
            return f"In force since {timezone.localtime(latest.since):%Y-%m-%d %H:%M}."
        return f"Lifted on {timezone.localtime(latest.lifted_at):%Y-%m-%d %H:%M}: {latest.lift_reason}"

    # -- the request's page and its steps ---------------------------------------------------------------------

    def _url(self, name: str, obj: DataSubjectRequest) -> str:
        return reverse(f"admin:governance_datasubjectrequest_{name}", args=[obj.pk])

    def get_urls(self):
        wrap = self.admin_site.admin_view
        steps = [
            path(
                f"<path:object_id>/{slug}/",
                wrap(self.step_view),
                {"step": slug},
                name=f"governance_datasubjectrequest_{slug.replace('-', '_')}",
            )
            for slug in SUBJECT_REQUEST_STEPS
        ]
        downloads = [
            path(
                "<path:object_id>/receipt.json", wrap(self.receipt_view), name="governance_datasubjectrequest_receipt"
            ),
            path("<path:object_id>/data.zip", wrap(self.data_view), name="governance_datasubjectrequest_data"),
        ]
        return steps + downloads + super().get_urls()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None:
            restriction = restriction_in_force(obj)
            can_handle = request.user.has_perm(HANDLE_PERMISSION)
            steps = [
                {"label": step.label, "url": self._url(slug.replace("-", "_"), obj), "primary": index == 0}
                for index, (slug, step) in enumerate(
                    (slug, step) for slug, step in SUBJECT_REQUEST_STEPS.items() if step.allowed(obj)
                )
            ]
            downloads = []
            if obj.kind == DsrKind.ERASURE and obj.status == DsrStatus.COMPLETED:
                downloads.append({"label": "Download receipt (JSON)", "url": self._url("receipt", obj)})
            if obj.kind == DsrKind.ACCESS and obj.status == DsrStatus.COMPLETED and obj.subject_id:
                downloads.append({"label": "Download the subject's data (ZIP)", "url": self._url("data", obj)})
            _text, overdue = deadline_left(obj)
            context.update(
                title=f"{obj.get_kind_display()}: request {obj.pk}",
                next_step=next_step_text(obj, restriction),
                overdue=overdue,
                can_handle=can_handle,
                steps=steps if can_handle else [],
                downloads=downloads if can_handle else [],
            )
        return super().change_view(request, object_id, form_url, context)

    def _handled(self, request, object_id) -> DataSubjectRequest:
        """The request, for a user who may handle it: 403 before anything is read otherwise."""
        if not request.user.has_perm(HANDLE_PERMISSION):
            raise PermissionDenied
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404("No such data-subject request.")
        return obj

    def step_view(self, request, object_id, step):
        obj = self._handled(request, object_id)
        spec = SUBJECT_REQUEST_STEPS[step]
        change_url = self._url("change", obj)
        form_kwargs = {"request": obj} if spec.form is ExtendForm else {}
        if request.method == "GET" and not spec.allowed(obj):
            self.message_user(
                request,
                f"“{spec.label}” is not a step for this request now: it is {obj.get_status_display().lower()}.",
                messages.WARNING,
            )
            return HttpResponseRedirect(change_url)
        form = spec.form(request.POST if request.method == "POST" else None, **form_kwargs)
        status, conflict = 200, ""
        if request.method == "POST":
            status = 400
            if form.is_valid():
                try:
                    spec.run(obj, request.user, form.cleaned_data)
                except InvalidInput as exc:
                    fields = exc.extra.get("fields", {})
                    for field, problems in fields.items():
                        for problem in problems:
                            form.add_error(field if field in form.fields else None, problem)
                    if not fields:
                        form.add_error(None, exc.message)
                except Conflict as exc:
                    conflict, status = f"Nothing was changed: {exc.message}", exc.status_code
                else:
                    obj.refresh_from_db()
                    done = carry_out_message(obj) if step == "carry-out" else STEP_DONE_MESSAGES[step]
                    self.message_user(request, done, messages.SUCCESS)
                    return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{spec.label}: request {obj.pk}",
            "opts": self.opts,
            "original": obj,
            "subject_request": obj,
            "step": spec,
            "form": form,
            "conflict": conflict,
            "deadline": deadline_left(obj)[0],
            "explanation": carry_out_explanation(obj) if step == "carry-out" else "",
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/governance/datasubjectrequest/step.html", context, status=status)

    def receipt_view(self, request, object_id):
        obj = self._handled(request, object_id)
        if obj.kind != DsrKind.ERASURE or obj.status != DsrStatus.COMPLETED or not obj.receipt:
            self.message_user(
                request, f"Request {obj.pk} is not a completed erasure: it has no receipt.", messages.ERROR
            )
            return HttpResponseRedirect(self._url("change", obj))
        response = HttpResponse(
            json.dumps(obj.receipt, indent=2, ensure_ascii=False), content_type="application/json; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="erasure-receipt-{obj.pk}.json"'
        return response

    def data_view(self, request, object_id):
        obj = self._handled(request, object_id)
        try:
            bundle = privacy.subject_export_bundle(obj, actor=request.user)
        except Conflict as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(self._url("change", obj))
        response = HttpResponse(bundle, content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="subject-data-request-{obj.pk}.zip"'
        return response

    def add_view(self, request, form_url="", extra_context=None):
        """Record a request received by post, phone or e-mail, through the same service as the person's page; the
        private link is shown once, for the answer to the person."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = SubjectRequestReceivedForm(request.POST if request.method == "POST" else None)
        status = 200
        if request.method == "POST":
            status = 400
            if form.is_valid():
                data = form.cleaned_data
                try:
                    obj, token = privacy.subject_request_create(
                        kind=data["kind"],
                        subject_id=data["subject_id"],
                        contact=data["contact"],
                        details=data["details"],
                        actor=request.user,
                        received_at=form.received_at(),
                    )
                except InvalidInput as exc:
                    for field, problems in exc.extra.get("fields", {}).items():
                        for problem in problems:
                            form.add_error(field if field in form.fields else None, problem)
                except Conflict as exc:
                    form.add_error(None, exc.message)
                    status = exc.status_code
                else:
                    link = request.build_absolute_uri(reverse("governance:subject-request-status", args=[token]))
                    context = {
                        **self.admin_site.each_context(request),
                        "title": f"Request {obj.pk} recorded",
                        "opts": self.opts,
                        "subject_request": obj,
                        "link": link,
                        "change_url": self._url("change", obj),
                    }
                    return TemplateResponse(request, "admin/governance/datasubjectrequest/recorded.html", context)
        context = {
            **self.admin_site.each_context(request),
            "title": "Record a request received by post, phone or e-mail",
            "opts": self.opts,
            "form": form,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/governance/datasubjectrequest/add.html", context, status=status)


class RestrictionStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("in_force", "In force"), ("lifted", "Lifted")]

    def queryset(self, request, queryset):
        if self.value() == "in_force":
            return queryset.filter(lifted_at=None)
        if self.value() == "lifted":
            return queryset.exclude(lifted_at=None)
        return queryset


@admin.register(SubjectRestriction)
class SubjectRestrictionAdmin(ReadOnlyAdmin):
    """Restrictions and upheld objections: while one is in force, decisions about its subject are refused. Put in
    force and lifted from their request's page only."""

    list_display = ["subject_ref", "reason", "request_link", "since", "lifted_at"]
    list_filter = ["reason", RestrictionStateFilter]
    list_select_related = ["request"]
    search_fields = ["=id"]
    search_help_text = "The person's applicant or customer number (matched through its digest), or a request number."
    readonly_fields = ["subject_ref", "reason", "request_link", "since", "lifted_at", "lift_reason"]
    fields = readonly_fields

    def has_view_permission(self, request, obj=None):
        return super().has_view_permission(request, obj) or request.user.has_perm(HANDLE_PERMISSION)

    def get_search_results(self, request, queryset, search_term):
        return subject_search(queryset, search_term, digest_field="subject_digest", number_field="request_id")

    @admin.display(description="Subject")
    def subject_ref(self, obj: SubjectRestriction) -> str:
        return f"subject:{obj.subject_digest[:16]}"

    @admin.display(description="Request", ordering="request_id")
    def request_link(self, obj: SubjectRestriction) -> str:
        url = reverse("admin:governance_datasubjectrequest_change", args=[obj.request_id])
        return format_html('<a href="{}">Request {}</a>', url, obj.request_id)
