"""The decision form, generated from a model version's input signature."""

from typing import Any

from django import forms

from apps.features.transforms import humanise


def _fmt(number: float | None) -> str:
    if number is None:
        return "?"
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def decision_form_class(signature_inputs: list[dict[str, Any]]) -> type[forms.Form]:
    """A Form with a select per categorical input and a number field (with its training range) per numeric one."""
    fields: dict[str, forms.Field] = {}
    for item in signature_inputs:
        name, required = item["name"], not item.get("nullable", False)
        label = humanise(name)
        if item["type"] == "category":
            choices = [("", "— choose —")] + [(value, value) for value in item["categories"]]
            fields[name] = forms.ChoiceField(label=label, choices=choices, required=required)
        else:
            hint = f"Seen in training: {_fmt(item.get('minimum'))} to {_fmt(item.get('maximum'))}"
            widget_attrs = (
                {"min": _fmt(item["minimum"])} if item.get("minimum") is not None and item["minimum"] >= 0 else {}
            )
            field_class = forms.IntegerField if item["type"] == "integer" else forms.FloatField
            fields[name] = field_class(
                label=label,
                required=required,
                help_text=hint,
                widget=forms.NumberInput(attrs={**widget_attrs, "step": "1" if item["type"] == "integer" else "any"}),
            )
    return type("DecisionForm", (forms.Form,), fields)
