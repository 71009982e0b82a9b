"""The page a person follows their request for a human review on, by the private link they were given."""

from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from apps.governance.models import ReviewRequest
from apps.governance.selectors import review_request_get_by_link

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
