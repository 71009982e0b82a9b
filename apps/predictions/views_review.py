"""End users ask for a person to review a decision they got on the decision page (GDPR Art. 22(3))."""

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from apps.core.errors import FaroError
from apps.governance.models import ReviewRequest
from apps.governance.selectors import review_request_get_by_link
from apps.governance.services import review_request_create
from apps.predictions.forms import ReviewRequestForm
from apps.predictions.loader import model_cache
from apps.predictions.models import PredictionRecord

# A review is asked for online within this many days of the decision; after that, by contacting the operator.
# Together with the request id being a random UUID4, it keeps the page from confirming whether old decisions
# exist to someone guessing ids.
REVIEW_WINDOW_DAYS = 30
NOT_FOUND_MESSAGE = (
    "We could not find a decision with this reference that can be reviewed online. A review can be asked for "
    f"here within {REVIEW_WINDOW_DAYS} days of the decision; after that, please contact us and quote the reference."
)


# The person's private link to follow the review is shown on the confirmation after the redirect, so it travels
# there in a cookie: only this browser, only that page's path, not readable by scripts, for an hour. Only its
# SHA-256 is stored on our side; the confirmation shows it only when it matches the case.
REVIEW_LINK_COOKIE = "faro_review_link"
REVIEW_LINK_COOKIE_SECONDS = 3600


class HttpResponseSeeOther(HttpResponseRedirect):
    status_code = 303  # after a POST: the browser GETs the confirmation, and a reload does not post again


def _decision(name: str, request_id: uuid.UUID) -> PredictionRecord | None:
    """The decision the page gave under `request_id`: made on the decision page, by `name`, recently.

    Decisions of the API are not reviewable here (a request there may be about many people); scores of a
    shadow version were never shown to anyone.
    """
    if request_id.version != 4:
        return None
    return (
        PredictionRecord.objects.select_related(
            "model_version__registered_model", "model_version__dataset_version__dataset"
        )
        .filter(
            request_id=request_id,
            channel=PredictionRecord.Channel.PAGE,
            model_version__registered_model__name=name,
            created_at__gte=timezone.now() - timedelta(days=REVIEW_WINDOW_DAYS),
        )
        .exclude(route=PredictionRecord.Route.SHADOW)
        .order_by("row")
        .first()
    )


def decision_snapshot(record: PredictionRecord) -> dict[str, Any]:
    """The decision as the decision log keeps it, for the review case to keep: the log may be purged by
    retention before the review is over, and the case must show what was reviewed. The inputs are the log's,
    already minimised (special-category columns dropped, personal ones pseudonymised); the explanation's values
    are minimised the same way (the log keeps them so since it minimises explanations; applying the same rule
    again changes nothing, and covers decisions logged before)."""
    version = record.model_version
    return {
        "request_id": str(record.request_id),
        "row": record.row,
        "made_at": record.created_at.isoformat(),
        "channel": record.channel,
        "route": record.route,
        "model": {
            "name": version.registered_model.name,
            "version": version.version,
            "labels": list(version.labels or []),
            "favourable_label": version.registered_model.favourable_label or None,
        },
        "inputs": record.inputs,
        "output": record.output,
        "explanation": model_cache.load(version).minimise_explanation(record.explanation, record.inputs),
    }


def _status_link(request, review: ReviewRequest) -> str | None:
    """The person's private link, when this browser holds the one made for `review`."""
    token = request.COOKIES.get(REVIEW_LINK_COOKIE, "")
    found = review_request_get_by_link(token=token)
    if found is None or found.pk != review.pk:
        return None
    return request.build_absolute_uri(reverse("governance:review-status", args=[token]))


@require_http_methods(["GET", "POST"])
@never_cache
def decision_review(request, name: str, request_id: uuid.UUID):
    """GET: the confirmation if a review was asked for, else the form. POST: ask for it, then see the confirmation.

    Unknown, expired and other models' decisions all answer the same 404, so the page tells nothing about
    which request ids exist.
    """
    record = _decision(name, request_id)
    if record is None:
        return render(request, "error.html", {"status": 404, "message": NOT_FOUND_MESSAGE}, status=404)
    confirmation = HttpResponseSeeOther(reverse("decision-review", args=[name, request_id]))
    context = {"model_name": name, "request_id": request_id, "decision_at": record.created_at}
    review = ReviewRequest.objects.filter(request_id=request_id).first()
    if review is not None:  # asked before: the first request stands
        if request.method == "POST":
            return confirmation
        context.update(review=review, status_link=_status_link(request, review))
        return render(request, "predictions/review_confirmation.html", context)
    form = ReviewRequestForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        try:
            _, token = review_request_create(
                request_id=request_id,
                model_name=name,
                model_version=record.model_version.version,
                subject_id=record.subject_id,
                reason=form.cleaned_data["reason"],
                contact=form.cleaned_data["contact"],
                decision=decision_snapshot(record),
                actor=request.user,  # anonymous unless signed in
            )
        except FaroError as exc:
            for field, messages in exc.extra.get("fields", {}).items():
                for message in messages:
                    form.add_error(field if field in form.fields else None, message)
        else:
            if token is not None:  # None: someone asked at the same moment, and their request stands
                confirmation.set_cookie(
                    REVIEW_LINK_COOKIE,
                    token,
                    max_age=REVIEW_LINK_COOKIE_SECONDS,
                    path=confirmation["Location"],
                    secure=settings.SESSION_COOKIE_SECURE,
                    httponly=True,
                    samesite="Strict",
                )
            return confirmation
    status = 400 if form.is_bound else 200
    return render(request, "predictions/review_form.html", {**context, "review_form": form}, status=status)
