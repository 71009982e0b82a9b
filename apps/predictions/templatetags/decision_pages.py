"""Template helpers of the end users' decision pages."""

from typing import Any

from django import template

from apps.predictions.forms import ReviewRequestForm

register = template.Library()


@register.filter
def plain_value(value: Any) -> str:
    """A request value as a person would write it: 8900.0 -> "8900", 2.125 -> "2.12", True -> "yes"."""
    if value is None:
        return "not given"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if value.is_integer():
            return str(int(value))
        return f"{value:.2g}" if abs(value) < 0.01 else f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value)


@register.inclusion_tag("predictions/_review_form.html")
def review_request_form(model_name: str, request_id: Any, form: ReviewRequestForm | None = None) -> dict[str, Any]:
    """The "ask a person to review this decision" form, posting to the decision's review page."""
    return {"model_name": model_name, "request_id": request_id, "review_form": form or ReviewRequestForm()}
