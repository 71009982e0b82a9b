"""Governance reads."""

from apps.governance.models import ReviewRequest
from apps.governance.services import review_link_digest

REVIEW_LINK_MAX_CHARS = 200  # a real token has 43; anything much longer is not worth hashing


def review_request_get_by_link(*, token: str) -> ReviewRequest | None:
    """The review case a person's private link names, or None for any other text (unknown, cut short, garbled).

    Found by the link's SHA-256, the only form in which it is stored.
    """
    if not token or len(token) > REVIEW_LINK_MAX_CHARS:
        return None
    try:
        digest = review_link_digest(token)
    except UnicodeEncodeError:  # a lone surrogate: no link has one
        return None
    return ReviewRequest.objects.filter(link_digest=digest).first()
