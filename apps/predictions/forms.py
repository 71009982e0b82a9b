"""The decision form, generated from a model version's input signature, and the request for a human review."""

import datetime as dt
from collections.abc import Mapping
from typing import Any

from django import forms

from apps.features.transforms import humanise
from apps.governance.services import REVIEW_CONTACT_MAX_CHARS, REVIEW_REASON_MAX_CHARS


def _fmt(number: float | None) -> str:
    if number is None:
        return "?"
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _is_yes(value: str) -> bool:
    return value == "true"


def input_descriptions(pipeline: Any) -> dict[str, str]:
    """Help texts for the inputs: the description a feature set gives the feature that reads only that input.

    A fitted feature set's features are dicts with `sources` and `description`; a model trained without one
    has no descriptions, and its inputs keep their names only.
    """
    found: dict[str, str] = {}
    for feature in getattr(pipeline, "features", ()):
        if not isinstance(feature, Mapping):
            continue
        sources, description = feature.get("sources") or [], (feature.get("description") or "").strip()
        if len(sources) == 1 and description:
            found.setdefault(sources[0], description)
    return found


def _help_text(label: str, description: str, *parts: str) -> str:
    """The description (unless it only repeats the label), then the hints, as sentences."""
    sentences = [] if description.casefold() in ("", label.casefold()) else [description.rstrip(".")]
    return ". ".join([*sentences, *parts]) + "." if sentences or parts else ""


class _DateTimeText(forms.CharField):
    """An ISO 8601 date or time, as the signature's datetime inputs take it; sent on as the text typed."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"})
    default_error_messages = {"invalid": "Enter a date and time, e.g. 2024-05-31T12:00."}

    def to_python(self, value: Any) -> str | None:
        value = super().to_python(value)
        if not value:
            return None
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        return value


def decision_form_class(
    signature_inputs: list[dict[str, Any]], descriptions: Mapping[str, str] | None = None
) -> type[forms.Form]:
    """A Form with a field per input of the signature, in its order, labelled for people.

    - category: a select of the values seen in training; boolean: a yes/no select; datetime: a date-time input.
    - integer / number: a number input (`step` 1 or any). The training range is a hint in the help text, not a
      limit: the model scores any finite number, as the API does, so the page refuses only what is not a
      number. Hence no `min`/`max` attributes, which would make browsers (and screen readers) call a value
      "invalid" that the server accepts.
    - inputs that had missing values in training (`nullable`) are optional, and say so in their label.
    """
    descriptions = descriptions or {}
    fields: dict[str, forms.Field] = {}
    for item in signature_inputs:
        name, required = item["name"], not item.get("nullable", False)
        label = humanise(name) if required else f"{humanise(name)} (optional)"
        description = descriptions.get(name, "")
        kind = item["type"]
        if kind in ("category", "boolean"):
            empty = ("", "— choose —" if required else "— not known —")
            if kind == "category":
                choices = [empty] + [(value, value) for value in item["categories"]]
                coerce: Any = str
            else:
                choices = [empty, ("true", "Yes"), ("false", "No")]
                coerce = _is_yes
            fields[name] = forms.TypedChoiceField(
                label=label,
                choices=choices,
                coerce=coerce,
                empty_value=None,
                required=required,
                help_text=_help_text(humanise(name), description),
            )
        elif kind == "datetime":
            fields[name] = _DateTimeText(
                label=label, required=required, help_text=_help_text(humanise(name), description)
            )
        else:
            span = f"The model learned from values between {_fmt(item.get('minimum'))} and {_fmt(item.get('maximum'))}"
            field_class = forms.IntegerField if kind == "integer" else forms.FloatField
            fields[name] = field_class(
                label=label,
                required=required,
                help_text=_help_text(humanise(name), description, span),
                widget=forms.NumberInput(attrs={"step": "1" if kind == "integer" else "any"}),
            )
    return type("DecisionForm", (forms.Form,), fields)


class ReviewRequestForm(forms.Form):
    """What a person may add when asking for a human review: both optional."""

    reason = forms.CharField(
        label="What should the reviewer know? (optional)",
        required=False,
        max_length=REVIEW_REASON_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For example, something the form did not ask about, or an answer that was wrong.",
    )
    contact = forms.CharField(
        label="Email address or phone number (optional)",
        required=False,
        max_length=REVIEW_CONTACT_MAX_CHARS,
        help_text="Only if you want the reviewer to contact you. It is used for this review only.",
    )
