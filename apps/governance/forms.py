"""Forms of the data-subject request pages: the person's own request (/privacy/) and the data protection officer's
steps in the console. They check the shape of what was typed; the rules (one open request per kind and person, a
reason for every extension or refusal, which step follows which) are the services' in `apps.governance.privacy`."""

from datetime import date, datetime, time

from django import forms
from django.utils import timezone

from apps.governance.models import DataSubjectRequest
from apps.governance.privacy import (
    CONTACT_MAX_CHARS,
    DETAILS_MAX_CHARS,
    MAX_EXTENSION_MONTHS,
    SUBJECT_ID_MAX_CHARS,
    add_months,
)

Kind = DataSubjectRequest.Kind

# The kinds in the words of the person asking (the model's labels name the articles, for staff).
PLAIN_KINDS = {
    Kind.ACCESS: "See the data held about me and get a copy",
    Kind.ERASURE: "Have the data held about me erased",
    Kind.RESTRICTION: "Restrict the use of my data",
    Kind.OBJECTION: "Object to automated decisions about me",
}
PLAIN_KIND_HELP = (
    "A copy comes as a ZIP file you download from your request's page. After an erasure we can no longer find "
    "anything about you, including this request's details. A restriction or an objection stops automated "
    "decisions about you while it is in force."
)


class SubjectRequestForm(forms.Form):
    """What a person fills in on /privacy/ to exercise a right about the data held on them."""

    kind = forms.ChoiceField(
        label="What would you like us to do?",
        choices=list(PLAIN_KINDS.items()),
        widget=forms.RadioSelect,
        help_text=PLAIN_KIND_HELP,
        error_messages={"required": "Choose what you would like us to do."},
    )
    subject_id = forms.CharField(
        label="Your applicant or customer number",
        max_length=SUBJECT_ID_MAX_CHARS,
        help_text="It is on the letters and e-mails we sent you, for example C0042.",
        error_messages={"required": "Enter your applicant or customer number."},
    )
    contact = forms.EmailField(
        label="Your e-mail address",
        max_length=CONTACT_MAX_CHARS,
        help_text="We write to you here to check that the request is yours, and to answer it.",
        error_messages={
            "required": "Enter your e-mail address.",
            "invalid": "Enter an e-mail address like name@example.com.",
        },
    )
    details = forms.CharField(
        label="Anything we should know (optional)",
        required=False,
        max_length=DETAILS_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For example, which decision or which data you mean.",
    )


class SubjectRequestReceivedForm(forms.Form):
    """A request received by post, phone or e-mail, recorded by the data protection officer."""

    kind = forms.ChoiceField(label="Kind", choices=Kind.choices)
    subject_id = forms.CharField(
        label="Subject key",
        max_length=SUBJECT_ID_MAX_CHARS,
        help_text="The person's applicant or customer number, as the datasets' subject key holds it (e.g. C0042).",
    )
    contact = forms.CharField(
        label="Contact",
        required=False,
        max_length=CONTACT_MAX_CHARS,
        help_text="How to answer the person: e-mail, phone or postal address. Cleared when an erasure completes.",
    )
    details = forms.CharField(
        label="What the person asked",
        required=False,
        max_length=DETAILS_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
    )
    received_on = forms.DateField(
        label="Received on",
        initial=timezone.localdate,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text="The day the request reached us: the one-month deadline runs from it.",
    )

    def clean_received_on(self) -> date:
        day = self.cleaned_data["received_on"]
        if day > timezone.localdate():
            raise forms.ValidationError("The request cannot have been received in the future.")
        return day

    def received_at(self) -> datetime:
        """Now for a request received today; else the start of that day, so the deadline is never later than the
        law's."""
        day = self.cleaned_data["received_on"]
        if day == timezone.localdate():
            return timezone.now()
        return timezone.make_aware(datetime.combine(day, time.min))


class VerifyForm(forms.Form):
    verification = forms.CharField(
        label="How was the identity verified?",
        max_length=200,
        help_text="For example: “replied from the e-mail address on the customer record”, or “passport seen at the "
        "branch”. Recorded in the request; keep no copy of a document here.",
        widget=forms.TextInput(attrs={"size": 60}),
    )


class ExtendForm(forms.Form):
    months = forms.TypedChoiceField(label="Extend by", coerce=int, widget=forms.RadioSelect)
    reason = forms.CharField(
        label="Reason (the person is told)",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Art. 12(3): only for complex or numerous requests; tell the person within the first month.",
    )

    def __init__(self, *args, request: DataSubjectRequest, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["months"].choices = [
            (months, f"{months} month{'s' if months > 1 else ''}: due {add_months(request.due_at, months):%Y-%m-%d}")
            for months in range(1, MAX_EXTENSION_MONTHS + 1)
        ]


class ConfirmForm(forms.Form):
    """A step that asks nothing more than the button."""


class RefuseForm(forms.Form):
    reason = forms.CharField(
        label="Reason (shown to the person)",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Shown on the person's request page as the outcome, e.g. “we could not confirm that the request "
        "was yours”. Say how they can complain to the supervisory authority.",
    )


class LiftForm(forms.Form):
    reason = forms.CharField(
        label="Reason for lifting it",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text="Art. 18(3): the person must be told before a restriction is lifted.",
    )
