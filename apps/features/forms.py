import json

from django import forms

from apps.data.models import Dataset


class DefinitionField(forms.CharField):
    """A feature set definition typed as JSON: an ordered list of features."""

    widget = forms.Textarea(attrs={"rows": 14, "spellcheck": "false", "class": "code"})

    def to_python(self, value):
        text = super().to_python(value)
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from None
        if not isinstance(parsed, list):
            raise forms.ValidationError("Give a JSON list of features.")
        return parsed


class FeatureSetForm(forms.Form):
    name = forms.SlugField(max_length=63)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), to_field_name="name")
    definition = DefinitionField(
        help_text='e.g. [{"name": "income_log", "transform": "log1p", "source": "income", "description": "Income"}]'
    )


class FeatureSetVersionForm(forms.Form):
    definition = DefinitionField(help_text="Saving a changed definition adds a version; earlier ones stay as they are.")
