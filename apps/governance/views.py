"""The pages people reach without signing in: their request for a human review, followed on its private link, and
their data-subject requests (/privacy/), asked for there and followed on their own private link."""

import math
import time

from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from apps.core.errors import Conflict, InvalidInput
from apps.governance.forms import PLAIN_KINDS, SubjectRequestForm
from apps.governance.lockout import client_address
from apps.governance.models import DataSubjectRequest, ReviewRequest
from apps.governance.privacy import subject_export_bundle, subject_request_by_link, subject_request_create
from apps.governance.selectors import review_request_get_by_link
from apps.governance.throttling import budgets

LINK_NOT_FOUND_MESSAGE = (
    "We could not find a review with this link. Please check that you copied the whole link; if it still does not "
    "work, contact us and quote the reference of your decision."
)


def plain_outcome(review: ReviewRequest) -> str:
    """The new decision in the words the decision page uses: "Approved" or "Declined" for a model with a
    favourable label when the reviewer chose one of its labels, else what the reviewer wrote."""
    model = review.decision.get("model", {}) if isinstance(review.decision, dict) else {}
    favourable, labels = model.get("favourable_label"), [str(label) for label in model.get("labels") or []]
    if favourable and review.changed_outcome in labels:
        return "Approved" if review.changed_outcome == str(favourable) else "Declined"
    return review.changed_outcome


@require_safe
@never_cache
def review_status(request, token: str):
    """The status of the case and, once decided, the outcome and the reviewer's explanation. Nothing the person
    wrote is shown back, and nothing else about them: the page is only as private as the link."""
    review = review_request_get_by_link(token=token)
    if review is None:
        response = render(request, "error.html", {"status": 404, "message": LINK_NOT_FOUND_MESSAGE}, status=404)
    else:
        context = {"review": review, "new_decision": plain_outcome(review) if review.changed_outcome else ""}
        response = render(request, "governance/review_status.html", context)
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


# --- data-subject requests: the person's page ---------------------------------------------------------------------

SUBJECT_LINK_NOT_FOUND_MESSAGE = (
    "We could not find a request with this link. Please check that you copied the whole link; if it still does not "
    "work, contact us and quote your applicant or customer number."
)
# Anonymous posts of the privacy form, and downloads of a copy (each built from every store), per client address
# and hour: enough for a person correcting a typo several times, not for filling the DPO's queue.
PRIVACY_POSTS_PER_HOUR = 10
PRIVACY_DOWNLOADS_PER_HOUR = 20
THROTTLE_PERIOD = 3600

# How the person reads where their request stands.
PLAIN_STATUS = {
    DataSubjectRequest.Status.RECEIVED: "Received: we are checking that the request is yours",
    DataSubjectRequest.Status.VERIFIED: "Being handled",
    DataSubjectRequest.Status.IN_PROGRESS: "Being carried out",
    DataSubjectRequest.Status.COMPLETED: "Completed",
    DataSubjectRequest.Status.REFUSED: "Refused",
}


def _throttled(request, what: str, allowed: int) -> int | None:
    """Seconds to wait when this client address is over its hourly budget for `what`; None while within it."""
    now = time.time()
    window = int(now // THROTTLE_PERIOD)
    client = f"{what}:addr:{client_address(request) or ''}"
    if budgets.take(client, window, allowed, THROTTLE_PERIOD):
        return None
    return max(1, math.ceil((window + 1) * THROTTLE_PERIOD - now))


def _too_many(request, seconds: int, message: str, template: str = "error.html", context: dict | None = None):
    minutes = max(1, math.ceil(seconds / 60))
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    response = render(
        request,
        template,
        {"status": 429, "message": f"{message} Please try again in {wait}.", **(context or {})},
        status=429,
    )
    response["Retry-After"] = str(seconds)
    return response


def _private(response):
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def _link_not_found(request):
    """Unknown, forged and garbled links alike: the page says nothing about which links exist."""
    return _private(
        render(request, "error.html", {"status": 404, "message": SUBJECT_LINK_NOT_FOUND_MESSAGE}, status=404)
    )


@require_http_methods(["GET", "POST"])
@never_cache
def privacy(request):
    """The person's own request about the data held on them. On success the private link to follow it is shown
    once, in this response only (it is stored nowhere but as a hash): a reload posts again and is answered that
    the request is already open."""
    form = SubjectRequestForm(request.POST if request.method == "POST" else None)
    context: dict = {"form": form, "conflict": ""}
    status = 200
    if request.method == "POST":
        wait = _throttled(request, "privacy-form", PRIVACY_POSTS_PER_HOUR)
        if wait is not None:
            # What was typed is kept for the next try, unchecked: the post itself was not taken.
            typed = SubjectRequestForm(initial={name: request.POST.get(name, "") for name in form.fields})
            context.update(form=typed, throttled=True)
            return _private(
                _too_many(
                    request,
                    wait,
                    "We have received too many requests from your connection.",
                    "governance/privacy.html",
                    context,
                )
            )
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                subject_request, token = subject_request_create(
                    kind=data["kind"],
                    subject_id=data["subject_id"],
                    contact=data["contact"],
                    details=data["details"],
                    actor=request.user,  # anonymous unless signed in
                )
            except InvalidInput as exc:
                for field, problems in exc.extra.get("fields", {}).items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
            except Conflict as exc:
                context["conflict"], status = DUPLICATE_MESSAGE, exc.status_code
            else:
                link = request.build_absolute_uri(reverse("governance:subject-request-status", args=[token]))
                sent = {"subject_request": subject_request, "link": link, "kind": PLAIN_KINDS[subject_request.kind]}
                return _private(render(request, "governance/privacy_sent.html", sent))
    return _private(render(request, "governance/privacy.html", context, status=status))


DUPLICATE_MESSAGE = (
    "A request of this kind for this applicant or customer number is already open, so we have not recorded a new "
    "one. We answer the open request first: follow it with the private link you were given when you made it."
)


def _receipt_stores(subject_request: DataSubjectRequest) -> list[dict]:
    """The erasure receipt as the person reads it: each store's label and how many items were removed."""
    totals: dict[str, int] = {}
    for step in (subject_request.receipt or {}).get("stores", []):
        label = step.get("label") or step.get("store", "")
        totals[label] = totals.get(label, 0) + int(step.get("removed") or 0)
    return [{"label": label, "removed": removed} for label, removed in totals.items()]


@require_safe
@never_cache
def subject_request_status(request, token: str):
    """Where the person's request stands: kind, dates, status and outcome; an erasure's receipt, or the button to
    download the copy of an access request. Nothing the person wrote is shown back: the page is only as private
    as the link."""
    subject_request = subject_request_by_link(token)
    if subject_request is None:
        return _link_not_found(request)
    completed = subject_request.status == DataSubjectRequest.Status.COMPLETED
    context = {
        "subject_request": subject_request,
        "token": token,
        "kind": PLAIN_KINDS[subject_request.kind],
        "status": PLAIN_STATUS[subject_request.status],
        "receipt_stores": _receipt_stores(subject_request)
        if completed and subject_request.kind == DataSubjectRequest.Kind.ERASURE
        else [],
        "can_download": completed
        and subject_request.kind == DataSubjectRequest.Kind.ACCESS
        and bool(subject_request.subject_id),
    }
    return _private(render(request, "governance/subject_request_status.html", context))


@require_POST
@never_cache
def subject_request_data(request, token: str):
    """The copy of a completed access request, as a ZIP built now (so no copy is kept), for the holder of the
    link. A POST from the status page's button (with its CSRF token), so that nothing fetches it by following a
    link."""
    subject_request = subject_request_by_link(token)
    if subject_request is None:
        return _link_not_found(request)
    wait = _throttled(request, "privacy-download", PRIVACY_DOWNLOADS_PER_HOUR)
    if wait is not None:
        return _private(_too_many(request, wait, "Your data has been downloaded too many times from your connection."))
    try:
        bundle = subject_export_bundle(subject_request, actor="subject")
    except Conflict:
        message = "There is no copy to download for this request: a copy comes with a completed access request."
        return _private(render(request, "error.html", {"status": 409, "message": message}, status=409))
    response = HttpResponse(bundle, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="your-data-request-{subject_request.pk}.zip"'
    return _private(response)
