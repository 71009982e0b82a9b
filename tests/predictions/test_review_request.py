"""Asking a person to review a decision from the decision page: recorded once, audited, found only by its id."""

import re
import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from pytest_django.asserts import assertInHTML, assertTemplateUsed

from apps.governance.models import AuditEvent, ReviewRequest
from apps.predictions.models import PredictionRecord
from apps.predictions.views_review import NOT_FOUND_MESSAGE, REVIEW_WINDOW_DAYS

DECISION_URL = "/decide/loan-risk/"
APPROVED_FORM = {"income": "8900", "age": "41", "city": "north"}


def review_url(request_id, name: str = "loan-risk") -> str:
    return f"/decide/{name}/review/{request_id}/"


@pytest.fixture
def decision(client, champion) -> PredictionRecord:
    """A decision made on the page, as a person would get it."""
    response = client.post(DECISION_URL, APPROVED_FORM)
    assert response.status_code == 200, response.content
    return PredictionRecord.objects.get()


def review_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="review_request.").order_by("seq"))


def test_asking_for_a_review_records_it_and_confirms_with_the_reference(client, decision, champion):
    before = AuditEvent.objects.count()
    response = client.post(
        review_url(decision.request_id), {"reason": "  My income is higher now.  ", "contact": "ann@example.org"}
    )

    # Post/redirect/get: a reload of the confirmation does not post again.
    assert response.status_code == 303
    assert response["Location"] == review_url(decision.request_id)
    [review] = ReviewRequest.objects.all()
    assert (
        review.request_id,
        review.model_name,
        review.model_version,
        review.subject_id,
        review.reason,
        review.contact,
        review.status,
    ) == (decision.request_id, "loan-risk", 1, "", "My income is higher now.", "ann@example.org", "open")
    assert AuditEvent.objects.count() == before + 1
    [event] = review_events()
    assert (event.actor, event.action, event.object_type, event.object_id) == (
        "anonymous",
        "review_request.created",
        "governance.reviewrequest",
        str(review.pk),
    )
    assert event.data == {
        "request_id": str(decision.request_id),
        "model_name": "loan-risk",
        "model_version": 1,
        "with_reason": True,
        "with_contact": True,
    }

    page = client.get(response["Location"])
    assert page.status_code == 200
    assertTemplateUsed(page, "predictions/review_confirmation.html")
    html = page.content.decode()
    assert "<title>Review requested · Faro</title>" in html
    assertInHTML(
        f'<p id="review-reference">Your reference: <strong class="reference" data-testid="reference">'
        f"{decision.request_id}</strong></p>",
        html,
    )
    assertInHTML('<dd data-testid="review-status">Open</dd>', html)
    # What the person wrote is not shown back to whoever holds the link.
    assert "My income is higher now." not in html
    assert "ann@example.org" not in html


def test_the_subject_and_a_signed_in_person_are_recorded(client, champion, users):
    client.force_login(users["end_user"])
    client.post(DECISION_URL, {**APPROVED_FORM})
    record = PredictionRecord.objects.get()
    PredictionRecord.objects.filter(pk=record.pk).update(subject_id="C0042")  # as if the page had sent the key

    assert client.post(review_url(record.request_id), {"reason": "", "contact": ""}).status_code == 303

    review = ReviewRequest.objects.get()
    assert (review.subject_id, review.reason, review.contact) == ("C0042", "", "")
    [event] = review_events()
    assert event.actor == f"user:{users['end_user'].pk}"
    assert event.data["with_reason"] is False
    assert event.data["with_contact"] is False
    assert "C0042" not in str(event.data)


def test_asking_twice_keeps_the_first_request(client, decision):
    client.post(review_url(decision.request_id), {"reason": "First.", "contact": ""})
    first = ReviewRequest.objects.get()

    response = client.post(review_url(decision.request_id), {"reason": "Second.", "contact": "bob@example.org"})

    assert response.status_code == 303
    assert response["Location"] == review_url(decision.request_id)
    [review] = ReviewRequest.objects.all()
    assert (review.pk, review.reason, review.contact, review.created_at) == (first.pk, "First.", "", first.created_at)
    assert len(review_events()) == 1


def test_before_asking_the_page_shows_the_form(client, decision):
    response = client.get(review_url(decision.request_id))

    assert response.status_code == 200
    assertTemplateUsed(response, "predictions/review_form.html")
    html = response.content.decode()
    assertInHTML(f'<h2 id="review-heading" class="card-title">Decision {decision.request_id}</h2>', html)
    assert f'action="{review_url(decision.request_id)}"' in html
    assert ReviewRequest.objects.count() == 0


def test_a_too_long_reason_is_shown_again_with_its_error(client, decision):
    response = client.post(review_url(decision.request_id), {"reason": "x" * 2001, "contact": "y" * 201})

    assert response.status_code == 400
    assertTemplateUsed(response, "predictions/review_form.html")
    html = response.content.decode()
    assert "<title>Error: Ask for a review · Faro</title>" in html
    assert re.findall(r'<li><a href="#(\w+)">(.*?)</a></li>', html) == [
        (
            "id_reason",
            "What should the reviewer know? (optional): Ensure this value has at most 2000 characters (it has 2001).",
        ),
        (
            "id_contact",
            "Email address or phone number (optional): Ensure this value has at most 200 characters (it has 201).",
        ),
    ]
    assert re.search(r'<textarea [^>]*aria-invalid="true" aria-describedby="id_reason_helptext id_reason_error"', html)
    assert ReviewRequest.objects.count() == 0
    assert review_events() == []


@pytest.mark.parametrize(
    "case",
    ["unknown", "uuid1", "other-model", "api-decision", "too-old", "shadow"],
)
def test_only_a_recent_page_decision_can_be_reviewed_and_others_look_alike(client, api, tokens, decision, case):
    request_id, name = decision.request_id, "loan-risk"
    if case == "unknown":
        request_id = uuid.uuid4()
    elif case == "uuid1":
        request_id = uuid.uuid1()
        PredictionRecord.objects.filter(pk=decision.pk).update(request_id=request_id)
    elif case == "other-model":
        name = "other-model"
    elif case == "api-decision":
        row = {"income": 8900.0, "age": 41, "city": "north"}
        response = api.call("post", "/api/v1/models/loan-risk/predict", tokens["predict"], {"inputs": [row]})
        request_id = response.json()["request_id"]
    elif case == "too-old":
        made = timezone.now() - timedelta(days=REVIEW_WINDOW_DAYS, minutes=1)
        PredictionRecord.objects.filter(pk=decision.pk).update(created_at=made)
    elif case == "shadow":
        PredictionRecord.objects.filter(pk=decision.pk).update(route=PredictionRecord.Route.SHADOW)

    for response in (
        client.get(review_url(request_id, name)),
        client.post(review_url(request_id, name), {"reason": "Please look again.", "contact": ""}),
    ):
        assert response.status_code == 404
        assertTemplateUsed(response, "error.html")
        assert NOT_FOUND_MESSAGE in response.content.decode()
    assert ReviewRequest.objects.count() == 0
    assert review_events() == []


def test_a_decision_just_inside_the_window_can_be_reviewed(client, decision):
    made = timezone.now() - timedelta(days=REVIEW_WINDOW_DAYS) + timedelta(minutes=1)
    PredictionRecord.objects.filter(pk=decision.pk).update(created_at=made)
    assert client.post(review_url(decision.request_id), {"reason": "", "contact": ""}).status_code == 303
    assert ReviewRequest.objects.count() == 1


def test_a_request_id_that_is_not_a_uuid_is_a_404(client, decision):
    assert client.get("/decide/loan-risk/review/12345/").status_code == 404
    assert client.post("/decide/loan-risk/review/not-a-uuid/", {"reason": ""}).status_code == 404
    assert ReviewRequest.objects.count() == 0


def test_the_request_is_csrf_protected(champion):
    browser = Client(enforce_csrf_checks=True)
    result = browser.post(DECISION_URL, APPROVED_FORM)
    assert result.status_code == 403  # the decision form is protected too
    page = browser.get(DECISION_URL)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    result = browser.post(DECISION_URL, {**APPROVED_FORM, "csrfmiddlewaretoken": token})
    assert result.status_code == 200
    record = PredictionRecord.objects.get()
    url = review_url(record.request_id)

    forged = browser.post(url, {"reason": "Forged.", "contact": ""})
    assert forged.status_code == 403
    assert ReviewRequest.objects.count() == 0
    assert review_events() == []

    # The result page's own form carries a token that passes.
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', result.content.decode()).group(1)
    response = browser.post(url, {"reason": "Real.", "contact": "", "csrfmiddlewaretoken": token})
    assert response.status_code == 303
    assert ReviewRequest.objects.get().reason == "Real."


def test_only_get_and_post(client, decision):
    assert client.put(review_url(decision.request_id)).status_code == 405
    assert client.delete(review_url(decision.request_id)).status_code == 405
    assert ReviewRequest.objects.count() == 0
