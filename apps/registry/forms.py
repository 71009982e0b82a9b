from django import forms

from apps.data.models import Dataset
from apps.features.models import FeatureSet


class TrainingForm(forms.Form):
    model = forms.SlugField(help_text="Registered model name; created on first use.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), to_field_name="name")
    dataset_version = forms.IntegerField(required=False, min_value=1, help_text="Leave empty for the latest.")
    feature_set = forms.ModelChoiceField(
        queryset=FeatureSet.objects.all(),
        to_field_name="name",
        required=False,
        help_text="Its latest version. Empty: every column, text encoded by its vocabulary.",
    )
    n_estimators = forms.IntegerField(initial=200, min_value=1, max_value=5000)
    max_depth = forms.IntegerField(initial=6, min_value=1, max_value=16)
    learning_rate = forms.FloatField(initial=0.1, min_value=0.0001, max_value=1.0)
