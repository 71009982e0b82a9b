from django import forms

from apps.data.models import Dataset
from apps.features.models import FeatureSet
from apps.registry import training
from apps.registry.models import ModelAlias, alias_validator


def _doc(name: str, fallback: str = "") -> str:
    """The parameter's one-line documentation from the training module, so the form and the API agree."""
    return getattr(training, "PARAM_DOCS", {}).get(name) or fallback


def _default(name: str) -> str:
    spec = training.PARAMS.get(name)
    return f"Default: {spec[3]}" if spec else "Default"


def _bounds(name: str, low: float, high: float) -> dict[str, float]:
    spec = training.PARAMS.get(name)
    return {"min_value": spec[1], "max_value": spec[2]} if spec else {"min_value": low, "max_value": high}


class TrainingForm(forms.Form):
    """A training request. Parameters left empty are not sent, so the trainer's defaults apply."""

    # Fields whose non-empty values become training parameters, in the order the trainer documents them.
    PARAM_FIELDS = (
        "n_estimators",
        "max_depth",
        "learning_rate",
        "early_stopping_rounds",
        "holdout",
        "time_column",
        "class_weight",
        "seed",
        "search_trials",
    )

    model = forms.SlugField(help_text="Registered model name; created on first use.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.all(), to_field_name="name")
    dataset_version = forms.IntegerField(required=False, min_value=1, help_text="Leave empty for the latest.")
    feature_set = forms.ModelChoiceField(
        queryset=FeatureSet.objects.all(),
        to_field_name="name",
        required=False,
        help_text="Its latest version. Empty: every column, text encoded by its vocabulary.",
    )
    n_estimators = forms.IntegerField(required=False, **_bounds("n_estimators", 1, 5000))
    max_depth = forms.IntegerField(required=False, **_bounds("max_depth", 1, 16))
    learning_rate = forms.FloatField(required=False, min_value=0.0001, max_value=1.0)
    early_stopping_rounds = forms.IntegerField(required=False, **_bounds("early_stopping_rounds", 1, 1000))
    holdout = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Default"),
            ("stratified", "Stratified: each class in the same share as in the data"),
            ("random", "Random rows"),
            ("time", "By time: the latest rows are held out"),
        ],
    )
    time_column = forms.CharField(required=False, max_length=200)
    class_weight = forms.ChoiceField(
        required=False,
        choices=[("", "Default"), ("none", "None: every row counts the same"), ("balanced", "Balanced classes")],
    )
    seed = forms.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    search_trials = forms.IntegerField(required=False, **_bounds("search_trials", 0, 500))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fallbacks = {
            "holdout": "How the test rows are chosen.",
            "time_column": "The date column ordering the rows, for a holdout by time.",
            "class_weight": "Balanced weighs rare classes up so that every class counts the same in total.",
            "search_trials": "Hyperparameter search: how many settings to try (0: no search).",
        }
        for name in self.PARAM_FIELDS:
            field = self.fields[name]
            field.help_text = _doc(name, fallbacks.get(name, ""))
            if isinstance(field, (forms.IntegerField, forms.FloatField)):
                field.widget.attrs["placeholder"] = _default(name)

    def clean(self):
        data = super().clean()
        if data.get("holdout") == "time" and not data.get("time_column"):
            self.add_error("time_column", "A holdout by time needs the column that orders the rows.")
        elif data.get("time_column") and data.get("holdout") != "time":
            self.add_error("time_column", "Only a holdout by time uses a time column.")
        return data

    def params(self) -> dict:
        """Only the parameters the person set; everything else keeps the trainer's default."""
        return {
            name: self.cleaned_data[name]
            for name in self.PARAM_FIELDS
            if self.cleaned_data.get(name) is not None and self.cleaned_data.get(name) != ""
        }


class DecisionForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=4000,
        help_text="Required to reject, and to approve a version whose gates failed.",
    )


class PromoteForm(forms.Form):
    alias = forms.CharField(max_length=32, initial=ModelAlias.Name.CHAMPION, validators=[alias_validator])


class AliasAtForm(forms.Form):
    """ "Which version did an alias point at, at time T?" The time is read in the server's time zone."""

    alias_at = forms.CharField(
        label="Alias", max_length=32, initial=ModelAlias.Name.CHAMPION, validators=[alias_validator]
    )
    at = forms.DateTimeField(
        label="At",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%d %H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S"),
    )


class OnnxImportForm(forms.Form):
    """An ONNX model made elsewhere, with the inputs it reads (in its column order) and what it predicts."""

    file = forms.FileField(help_text="An .onnx file. Pickle and joblib files are refused: they can run code.")
    task_type = forms.ChoiceField(choices=[("classification", "Classification"), ("regression", "Regression")])
    labels = forms.JSONField(
        required=False,
        initial=list,
        help_text='Classifiers: the labels in the order of the model\'s probability outputs, e.g. ["no", "yes"].',
    )
    inputs = forms.JSONField(
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text='In the model\'s column order, e.g. [{"name": "income", "type": "number"}, '
        '{"name": "city", "type": "category", "categories": ["east", "north"]}].',
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.all(),
        to_field_name="name",
        help_text="Evaluated on this dataset's latest version; its target column is the truth.",
    )
