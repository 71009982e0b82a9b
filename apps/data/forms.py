from django import forms

from apps.data.models import Dataset


class DatasetForm(forms.ModelForm):
    class Meta:
        model = Dataset
        fields = ["name", "description", "target_column", "subject_key_column"]


class UploadForm(forms.Form):
    file = forms.FileField(help_text="A CSV file with a header row.")
