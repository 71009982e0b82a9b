"""Forms of the data scientists' pages. They shape input; the services decide what is valid."""

from typing import Any

from django import forms

from apps.data.models import ColumnTag, DatasetVersion, LegalBasis

TAG_HELP = (
    "One column a line, as <code>age: personal, protected</code>. Tags: <code>personal</code> (personal data), "
    "<code>special_category</code> (special category data, GDPR Art. 9), <code>protected</code> (a protected "
    "attribute, for fairness reports), <code>target</code>."
)


def parse_column_tags(text: str) -> dict[str, list[str]]:
    """`column: tag1, tag2` lines as {column: [tags]}; blank lines and lines starting with # are skipped."""
    tags: dict[str, list[str]] = {}
    problems = []
    for number, raw in enumerate((text or "").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        column, colon, rest = line.rpartition(":")
        column = column.strip()
        if not colon or not column:
            problems.append(f"Line {number}: write it as 'column: tag, tag'.")
            continue
        names = [name.strip().lower() for name in rest.replace(";", ",").split(",") if name.strip()]
        unknown = [name for name in names if name not in ColumnTag.values]
        if not names:
            problems.append(f"Line {number}: give {column!r} at least one tag.")
        elif unknown:
            problems.append(
                f"Line {number}: unknown tag {', '.join(map(repr, unknown))}; use {', '.join(ColumnTag.values)}."
            )
        elif column in tags:
            problems.append(f"Line {number}: {column!r} is tagged twice; put its tags on one line.")
        else:
            tags[column] = list(dict.fromkeys(names))
    if problems:
        raise forms.ValidationError(problems)
    return tags


def format_column_tags(tags: dict[str, list[str]] | None) -> str:
    return "\n".join(f"{column}: {', '.join(names)}" for column, names in sorted((tags or {}).items()))


class ColumnTagsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "placeholder": "age: personal, protected"})

    def prepare_value(self, value: Any) -> Any:
        return format_column_tags(value) if isinstance(value, dict) else value

    def to_python(self, value: Any) -> dict[str, list[str]]:
        if isinstance(value, dict):
            return value
        return parse_column_tags(super().to_python(value))


class DatasetEditForm(forms.Form):
    """What describes a dataset and governs its use, as `services.dataset_update` takes it."""

    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    target_column = forms.CharField(required=False, max_length=200, help_text="The column a model learns to predict.")
    subject_key_column = forms.CharField(
        required=False, max_length=200, help_text="The column that identifies the person a row is about."
    )
    purpose = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why this data is processed (GDPR Art. 5(1)(b)). Required with personal columns.",
    )
    legal_basis = forms.ChoiceField(
        required=False,
        choices=[("", "— none —"), *LegalBasis.choices],
        help_text="GDPR Art. 6(1). Required with personal columns.",
    )
    retention_days = forms.IntegerField(
        required=False, min_value=1, help_text="How long versions are kept, in days. Required with personal columns."
    )
    column_tags = ColumnTagsField(required=False, help_text=TAG_HELP)
    subject_categories = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Whose data it is, e.g. loan applicants (GDPR Art. 30(1)(c)). Shown in the register.",
    )
    recipients = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Who the data, or decisions made with it, are disclosed to (Art. 30(1)(d)). Shown in the register.",
    )

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.fields if name != "name"}

    def add_service_errors(self, exc: Any) -> None:
        """A FaroError's field problems on the fields they name; its message, and the rest, on the form."""
        self.add_error(None, exc.message)
        for name, problems in (exc.extra.get("fields") or {}).items():
            for problem in problems if isinstance(problems, list) else [problems]:
                if name in self.fields:
                    self.add_error(name, str(problem))
                elif name == "__all__":
                    self.add_error(None, str(problem))
                else:
                    self.add_error(None, f"{name}: {problem}")


class DatasetCreateForm(DatasetEditForm):
    name = forms.SlugField(
        max_length=63, help_text="Lower-case letters, digits and hyphens; it cannot be changed later."
    )
    field_order = ["name"]


class UploadForm(forms.Form):
    """A file and how to read it, as `services.ingest_job_create` takes them."""

    file = forms.FileField(
        help_text="CSV (.csv, .tsv, .txt), Parquet (.parquet) or JSON Lines (.jsonl).",
        widget=forms.FileInput(
            attrs={"accept": ".csv,.tsv,.txt,.parquet,.pq,.jsonl,.ndjson,.json,text/csv,application/json"}
        ),
    )
    mode = forms.ChoiceField(
        required=False,
        choices=DatasetVersion.Mode.choices,
        initial=DatasetVersion.Mode.REPLACE,
        widget=forms.RadioSelect,
    )
    format = forms.ChoiceField(
        required=False,
        choices=[("", "From the file name"), ("csv", "CSV"), ("parquet", "Parquet"), ("jsonl", "JSON Lines")],
    )
    delimiter = forms.ChoiceField(
        required=False,
        choices=[("", "Detect"), (",", "Comma ,"), (";", "Semicolon ;"), ("tab", "Tab"), ("|", "Pipe |")],
        help_text="CSV only.",
    )
    encoding = forms.CharField(
        required=False,
        max_length=40,
        widget=forms.TextInput(attrs={"list": "encodings", "placeholder": "utf-8"}),
        help_text="CSV only; UTF-8 (with or without BOM) when empty.",
    )
    accept_schema_change = forms.BooleanField(
        required=False,
        label="Accept a breaking schema change",
        help_text="Columns removed or retyped since the previous version.",
    )

    def options(self) -> dict[str, Any]:
        return {
            key: self.cleaned_data.get(key)
            for key in ("mode", "format", "delimiter", "encoding", "accept_schema_change")
        }
