"""The data protection officer's console for data-subject requests: a request taken from receipt to the receipt of
its erasure through the admin pages, as a new user would; every step refused (403, nothing changed) to staff
without governance.handle_subjectrequest, who may still read."""

import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from apps.core.errors import Conflict
from apps.governance import privacy
from apps.governance.admin import deadline_left
from apps.governance.models import AuditEvent, DataSubjectRequest, ErasureStep, SubjectRestriction

SUBJECT = "C0007"
LIST_URL = "/admin/governance/datasubjectrequest/"
ADD_URL = LIST_URL + "add/"
LINK = re.compile(r'<code data-testid="private-link">http://testserver/privacy/requests/([A-Za-z0-9_-]+)/</code>')


def staff(username: str, *codenames: str):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)  # permissions are cached per instance


def signed_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


@pytest.fixture
def dpo(db) -> Client:
    return signed_in(staff("dpo", "handle_subjectrequest"))


@pytest.fixture
def auditor(db) -> Client:
    """Staff who may read the requests (the view permission) but not handle them."""
    return signed_in(staff("auditor", "view_datasubjectrequest", "view_subjectrestriction"))


def change_url(request: DataSubjectRequest) -> str:
    return f"{LIST_URL}{request.pk}/change/"


def step_url(request: DataSubjectRequest, step: str) -> str:
    return f"{LIST_URL}{request.pk}/{step}/"


def received(kind: str, subject_id: str = SUBJECT) -> DataSubjectRequest:
    return privacy.subject_request_create(kind=kind, subject_id=subject_id, contact="ann@example.org")[0]


def subject_request_events() -> list[str]:
    return list(
        AuditEvent.objects.filter(action__startswith="subject_request.")
        .order_by("seq")
        .values_list("action", flat=True)
    )


def state(request: DataSubjectRequest) -> dict:
    """Everything a step could change on a request, to assert that nothing did."""
    fields = ["status", "verification", "verified_at", "due_at", "extended_at", "outcome", "completed_at", "handler"]
    return DataSubjectRequest.objects.filter(pk=request.pk).values(*fields).get()


def test_a_dpo_takes_an_erasure_from_receipt_to_its_receipt(dataset_version, dpo, django_capture_on_commit_callbacks):
    # Recorded from a letter, through the add form.
    page = dpo.get(ADD_URL)
    assert page.status_code == 200
    assert page.templates[0].name == "admin/governance/datasubjectrequest/add.html"
    today = timezone.localdate()
    response = dpo.post(
        ADD_URL,
        {
            "kind": "erasure",
            "subject_id": f" {SUBJECT} ",
            "contact": "Ann Smith, 1 High Street",
            "details": "Letter of 3 March: please delete everything.",
            "received_on": today.isoformat(),
        },
    )
    assert response.status_code == 200
    request = DataSubjectRequest.objects.get()
    user = get_user_model().objects.get(username="dpo")
    assert (request.kind, request.subject_id, request.status, request.created_by) == (
        "erasure",
        SUBJECT,
        "received",
        f"user:{user.pk}",
    )
    assert request.due_at == privacy.add_months(request.received_at, 1)
    token = LINK.search(response.content.decode()).group(1)
    assert privacy.subject_request_by_link(token) == request

    # The request's page says what to do next and offers the steps its status allows.
    page = dpo.get(change_url(request))
    assert page.status_code == 200
    content = page.content.decode()
    assert "Next step: verify the person&#x27;s identity (Art. 12(6))" in content
    assert f'href="{step_url(request, "verify")}">Verify identity</a>' in content
    assert step_url(request, "carry-out") not in content
    assert step_url(request, "lift-restriction") not in content

    # Verification needs the method; nothing changes without it.
    before = state(request)
    refused = dpo.post(step_url(request, "verify"), {"verification": "  "})
    assert refused.status_code == 400
    assert "This field is required." in refused.content.decode()
    assert state(request) == before
    done = dpo.post(step_url(request, "verify"), {"verification": "Replied from the e-mail address on file"})
    assert (done.status_code, done["Location"]) == (302, change_url(request))
    request.refresh_from_db()
    assert (request.status, request.verification, request.handler) == (
        "verified",
        "Replied from the e-mail address on file",
        user,
    )

    # Carrying it out: the page explains what happens, the worker (eager here) erases once the step commits.
    confirm = dpo.get(step_url(request, "carry-out"))
    assert confirm.status_code == 200
    assert "This cannot be undone." in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        done = dpo.post(step_url(request, "carry-out"))
    assert (done.status_code, done["Location"]) == (302, change_url(request))
    request.refresh_from_db()
    assert (request.status, request.subject_id, request.contact, request.details) == ("completed", "", "", "")

    steps = list(request.erasure_steps.order_by("id"))
    dataset_step = next(step for step in steps if step.store == "data.dataset_version")
    assert (dataset_step.status, dataset_step.count) == ("done", 1)
    assert len(dataset_step.before) == len(dataset_step.after) == 64
    assert {step.status for step in steps} == {"done"}
    assert request.receipt["removed"] == sum(step.count for step in steps)

    # The ledger, the receipt and the next step on the request's page.
    page = dpo.get(change_url(request))
    content = page.content.decode()
    assert page.status_code == 200
    assert "Erasure ledger" in content
    for step in steps:
        assert f"<p>{step.store}</p>" in content
    for step in (step for step in steps if step.before):  # stores that held nothing have no hashes
        assert f"<p>{step.before[:12]}…</p>" in content and step.before not in content  # shortened
        assert f"<p>{step.after[:12]}…</p>" in content and step.after not in content
    assert "Cleared when the erasure completed" in content
    assert "Completed. Download the receipt for your records" in content
    assert f"{request.receipt['removed']} item(s) removed" in content
    assert f'href="{LIST_URL}{request.pk}/receipt.json">Download receipt (JSON)</a>' in content
    assert step_url(request, "verify") not in content and step_url(request, "refuse") not in content

    receipt = dpo.get(f"{LIST_URL}{request.pk}/receipt.json")
    assert receipt.status_code == 200
    assert receipt["Content-Type"] == "application/json; charset=utf-8"
    assert receipt["Content-Disposition"] == f'attachment; filename="erasure-receipt-{request.pk}.json"'
    assert json.loads(receipt.content) == request.receipt
    assert json.loads(receipt.content)["subject"] == request.subject_ref

    assert subject_request_events() == [
        "subject_request.received",
        "subject_request.verified",
        "subject_request.erasure_started",
        "subject_request.erased",
    ]


def test_a_running_erasure_shows_its_ledger_with_a_failed_steps_error(db, dpo):
    request = received("erasure")
    DataSubjectRequest.objects.filter(pk=request.pk).update(status="in_progress", started_at=timezone.now())
    ErasureStep.objects.create(request=request, store="data.dataset_version", target="3", detail={"error": "disk full"})
    content = dpo.get(change_url(request)).content.decode()
    assert "The erasure is being carried out in the background" in content
    assert "<p>disk full</p>" in content
    assert "<p>Pending</p>" in content
    # Running: it can be extended, no longer refused nor carried out again.
    assert f'href="{step_url(request, "extend")}"' in content
    assert step_url(request, "refuse") not in content and step_url(request, "carry-out") not in content


def test_a_request_is_searched_by_number_and_by_subject_key_even_after_erasure(db, dpo):
    erased = received("erasure")
    DataSubjectRequest.objects.filter(pk=erased.pk).update(subject_id="", contact="", status="completed")
    other = received("access", "C0100")
    found = dpo.get(LIST_URL, {"q": SUBJECT})
    assert [row.pk for row in found.context["cl"].result_list] == [erased.pk]
    found = dpo.get(LIST_URL, {"q": f"#{other.pk}"})
    assert [row.pk for row in found.context["cl"].result_list] == [other.pk]
    found = dpo.get(LIST_URL, {"q": "C0299"})
    assert list(found.context["cl"].result_list) == []


def test_the_list_counts_down_and_filters_overdue_requests(db, dpo):
    now = timezone.now()
    soon, late, closed = received("access"), received("erasure"), received("restriction")
    DataSubjectRequest.objects.filter(pk=soon.pk).update(due_at=now + timedelta(days=12))
    DataSubjectRequest.objects.filter(pk=late.pk).update(due_at=now - timedelta(days=3))
    DataSubjectRequest.objects.filter(pk=closed.pk).update(due_at=now - timedelta(days=3), status="refused")
    page = dpo.get(LIST_URL)
    content = page.content.decode()
    assert page.status_code == 200
    assert '<td class="field-deadline">12 days left</td>' in content
    assert '<td class="field-deadline"><strong class="overdue">3 days overdue</strong></td>' in content
    assert content.count('class="overdue"') == 1  # a closed request has no countdown
    assert "css/admin_governance.css" in content
    overdue = dpo.get(LIST_URL, {"deadline": "overdue"})
    assert [row.pk for row in overdue.context["cl"].result_list] == [late.pk]
    erasures = dpo.get(LIST_URL, {"kind__exact": "erasure"})
    assert [row.pk for row in erasures.context["cl"].result_list] == [late.pk]


@pytest.mark.parametrize(
    ("due", "text", "overdue"),
    [
        (datetime(2026, 3, 22, 9, 0, tzinfo=UTC), "12 days left", False),
        (datetime(2026, 3, 11, 9, 0, tzinfo=UTC), "1 day left", False),
        (datetime(2026, 3, 10, 18, 0, tzinfo=UTC), "Due today", False),
        (datetime(2026, 3, 10, 8, 0, tzinfo=UTC), "Due today (time passed)", True),
        (datetime(2026, 3, 9, 23, 0, tzinfo=UTC), "1 day overdue", True),
        (datetime(2026, 3, 7, 9, 0, tzinfo=UTC), "3 days overdue", True),
    ],
)
def test_the_countdown_is_in_calendar_days(due, text, overdue):
    request = DataSubjectRequest(status="received", due_at=due)
    assert deadline_left(request, now=datetime(2026, 3, 10, 12, 0, tzinfo=UTC)) == (text, overdue)


def test_a_request_is_recorded_once_with_its_errors_next_to_the_fields(db, dpo):
    tomorrow = timezone.localdate() + timedelta(days=1)
    response = dpo.post(ADD_URL, {"kind": "erasure", "subject_id": "", "received_on": tomorrow.isoformat()})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "subject_id": ["This field is required."],
        "received_on": ["The request cannot have been received in the future."],
    }
    assert not DataSubjectRequest.objects.exists()

    first = received("erasure")
    response = dpo.post(
        ADD_URL, {"kind": "erasure", "subject_id": SUBJECT, "received_on": timezone.localdate().isoformat()}
    )
    assert response.status_code == 409
    with pytest.raises(Conflict) as duplicate:  # the service's own words, which name the open request
        privacy.subject_request_create(kind="erasure", subject_id=SUBJECT)
    assert f"request {first.pk}, due {first.due_at:%Y-%m-%d}" in duplicate.value.message
    assert response.context["form"].non_field_errors() == [duplicate.value.message]
    assert list(DataSubjectRequest.objects.values_list("pk", flat=True)) == [first.pk]

    last_week = timezone.localdate() - timedelta(days=7)
    response = dpo.post(ADD_URL, {"kind": "access", "subject_id": SUBJECT, "received_on": last_week.isoformat()})
    assert response.status_code == 200
    request = DataSubjectRequest.objects.get(kind="access")
    assert timezone.localtime(request.received_at).date() == last_week
    assert request.due_at == privacy.add_months(request.received_at, 1)


def test_the_deadline_is_extended_once_and_a_refusal_needs_its_reason(db, dpo):
    request = received("access")
    due = request.due_at
    page = dpo.get(step_url(request, "extend"))
    assert page.status_code == 200
    assert f"2 months: due {privacy.add_months(due, 2):%Y-%m-%d}" in page.content.decode()
    done = dpo.post(step_url(request, "extend"), {"months": "2", "reason": "Data in many archives."})
    assert done.status_code == 302
    request.refresh_from_db()
    assert (request.due_at, request.extension_reason) == (privacy.add_months(due, 2), "Data in many archives.")

    # Offered no more; asked anyway, the service refuses and nothing changes.
    assert step_url(request, "extend") not in dpo.get(change_url(request)).content.decode()
    assert dpo.get(step_url(request, "extend")).status_code == 302
    before = state(request)
    again = dpo.post(step_url(request, "extend"), {"months": "1", "reason": "More archives."})
    assert again.status_code == 409
    assert again.context["conflict"] == (
        f"Nothing was changed: Request {request.pk} was already extended on {request.extended_at:%Y-%m-%d}."
    )
    assert state(request) == before

    no_reason = dpo.post(step_url(request, "refuse"), {"reason": ""})
    assert no_reason.status_code == 400
    assert no_reason.context["form"].errors == {"reason": ["This field is required."]}
    assert state(request) == before
    refused = dpo.post(step_url(request, "refuse"), {"reason": "We could not confirm that the request was yours."})
    assert refused.status_code == 302
    request.refresh_from_db()
    assert (request.status, request.outcome) == ("refused", "We could not confirm that the request was yours.")
    content = dpo.get(change_url(request)).content.decode()
    assert "Closed: refused." in content
    assert 'data-testid="steps"' not in content


def test_a_restriction_is_put_in_force_and_lifted_from_its_page(db, dpo):
    request = privacy.subject_request_verify(
        request=received("restriction"), actor=get_user_model().objects.get(username="dpo"), method="Phone call"
    )
    assert dpo.post(step_url(request, "carry-out")).status_code == 302
    content = dpo.get(change_url(request)).content.decode()
    restriction = SubjectRestriction.objects.get(request=request)
    assert f"In force since {timezone.localtime(restriction.since):%Y-%m-%d %H:%M}." in content
    assert "Completed: in force." in content
    assert f'href="{step_url(request, "lift-restriction")}">Lift restriction</a>' in content
    assert dpo.post(step_url(request, "lift-restriction"), {"reason": "Accuracy checked."}).status_code == 302
    restriction.refresh_from_db()
    assert restriction.lift_reason == "Accuracy checked." and restriction.lifted_at is not None
    assert "Closed: the restriction was lifted." in dpo.get(change_url(request)).content.decode()
    restrictions = dpo.get("/admin/governance/subjectrestriction/", {"q": SUBJECT})
    assert [row.pk for row in restrictions.context["cl"].result_list] == [restriction.pk]
    in_force = dpo.get("/admin/governance/subjectrestriction/", {"state": "in_force"})
    assert list(in_force.context["cl"].result_list) == []
    lifted = dpo.get("/admin/governance/subjectrestriction/", {"state": "lifted"})
    assert [row.pk for row in lifted.context["cl"].result_list] == [restriction.pk]


def test_the_dpo_downloads_the_subjects_data_of_a_completed_access_request(dataset_version, dpo):
    request = received("access")
    assert dpo.get(f"{LIST_URL}{request.pk}/data.zip").status_code == 302  # not carried out yet
    dpo.post(step_url(request, "verify"), {"verification": "ID card seen"})
    dpo.post(step_url(request, "carry-out"))
    request.refresh_from_db()
    assert request.status == "completed" and request.receipt["held"]["data.dataset_version"] == 1
    assert "data.dataset_version" in dpo.get(change_url(request)).content.decode()
    response = dpo.get(f"{LIST_URL}{request.pk}/data.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="subject-data-request-{request.pk}.zip"'
    document = json.loads(zipfile.ZipFile(io.BytesIO(response.content)).read("data.json"))
    assert (document["request"], document["subject_id"]) == (request.pk, SUBJECT)
    rows = document["stores"]["data.dataset_version"]["rows"]
    assert [(row["dataset"], row["customer_id"]) for row in rows] == [("loans", SUBJECT)]


def test_staff_without_the_permission_read_but_every_step_is_refused(db, auditor, dpo):
    request = received("erasure")
    page = auditor.get(change_url(request))
    assert page.status_code == 200
    content = page.content.decode()
    assert 'data-testid="read-only"' in content
    assert step_url(request, "verify") not in content
    assert auditor.get(LIST_URL).status_code == 200

    before, events, count = state(request), subject_request_events(), DataSubjectRequest.objects.count()
    assert auditor.get(ADD_URL).status_code == 403
    add = {"kind": "access", "subject_id": "C0001", "received_on": timezone.localdate().isoformat()}
    assert auditor.post(ADD_URL, add).status_code == 403
    posts = {
        "verify": {"verification": "Seen"},
        "carry-out": {},
        "extend": {"months": "1", "reason": "Busy"},
        "refuse": {"reason": "No"},
        "lift-restriction": {"reason": "Done"},
    }
    for step, data in posts.items():
        assert auditor.get(step_url(request, step)).status_code == 403, step
        assert auditor.post(step_url(request, step), data).status_code == 403, step
    assert auditor.get(f"{LIST_URL}{request.pk}/receipt.json").status_code == 403
    assert auditor.get(f"{LIST_URL}{request.pk}/data.zip").status_code == 403
    # The change form itself edits nothing either.
    assert auditor.post(change_url(request), {"status": "completed"}).status_code == 403
    assert (state(request), subject_request_events(), DataSubjectRequest.objects.count()) == (before, events, count)
    assert not ErasureStep.objects.exists()

    # Staff with no permission at all do not even read.
    stranger = signed_in(staff("stranger"))
    assert stranger.get(change_url(request)).status_code == 403
    assert stranger.post(step_url(request, "verify"), posts["verify"]).status_code == 403
    assert state(request) == before
