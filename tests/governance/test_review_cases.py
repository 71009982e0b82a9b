"""The human review of a decision as a case (GDPR Art. 22(3)): the person asks on the decision page and gets a
private link; a reviewer with governance.review_decision takes the case in the console and records the outcome;
the person reads it on their link. Driven end to end through the real pages."""

import hashlib
import re

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.test import Client
from pytest_django.asserts import assertInHTML, assertTemplateUsed

from apps.core.errors import Conflict
from apps.data.models import Dataset
from apps.governance.models import AuditEvent, ReviewRequest
from apps.governance.services import audit_verify, review_request_create, review_request_decide, review_request_take
from apps.governance.views import LINK_NOT_FOUND_MESSAGE
from apps.predictions.models import PredictionRecord
from apps.predictions.views_review import REVIEW_LINK_COOKIE, REVIEW_LINK_COOKIE_SECONDS

DECISION_URL = "/decide/loan-risk/"
APPROVED_FORM = {"income": "8900", "age": "41", "city": "north"}
REASON, CONTACT = "My income is higher now.", "ann@example.org"
NOTE = "Your income was checked again with your payslips.\nThe credit is declined: the amount is too high."
LINK = re.compile(r'<a href="http://testserver(/review/([A-Za-z0-9_-]+)/)" data-testid="status-link">')


def make_reviewer(username: str, *, permission: bool = True):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="review_decision"))
    return get_user_model().objects.get(pk=user.pk)  # permissions are cached per instance


def signed_in(user) -> Client:
    browser = Client()
    browser.force_login(user)
    return browser


def case_url(review: ReviewRequest) -> str:
    return f"/admin/governance/reviewrequest/{review.pk}/change/"


def review_url(record: PredictionRecord) -> str:
    return f"/decide/loan-risk/review/{record.request_id}/"


def review_events() -> list[tuple[str, str, dict]]:
    return [
        (event.action, event.actor, event.data)
        for event in AuditEvent.objects.filter(action__startswith="review_request.").order_by("seq")
    ]


def snapshot_of(record: PredictionRecord) -> dict:
    return {
        "request_id": str(record.request_id),
        "row": 0,
        "made_at": record.created_at.isoformat(),
        "channel": "page",
        "route": "champion",
        "model": {"name": "loan-risk", "version": 1, "labels": ["no", "yes"], "favourable_label": "yes"},
        "inputs": record.inputs,
        "output": record.output,
        "explanation": record.explanation,
    }


@pytest.fixture
def person(client, champion) -> Client:
    """The end user: got an approval on the decision page, as a person would."""
    response = client.post(DECISION_URL, APPROVED_FORM)
    assert response.status_code == 200, response.content
    return client


def ask_for_review(person: Client) -> tuple[PredictionRecord, str]:
    """Ask for a review from the result page; return the decision and the private link's path."""
    record = PredictionRecord.objects.get()
    response = person.post(review_url(record), {"reason": REASON, "contact": CONTACT})
    assert response.status_code == 303
    assert response["Location"] == review_url(record)
    page = person.get(response["Location"])
    assert page.status_code == 200
    found = LINK.search(page.content.decode())
    assert found, page.content.decode()
    return record, found.group(1)


@pytest.fixture
def asked(person) -> tuple[ReviewRequest, str]:
    _, link = ask_for_review(person)
    return ReviewRequest.objects.get(), link


def test_the_whole_journey_from_the_decision_page_to_the_outcome(person):
    record, link = ask_for_review(person)
    review = ReviewRequest.objects.get()

    # The link: 256 random bits, URL-safe; only its SHA-256 is stored, nowhere the token itself.
    token = link.split("/")[2]
    assert len(token) == 43
    assert review.link_digest == hashlib.sha256(token.encode()).hexdigest()
    stored = orjson.dumps(ReviewRequest.objects.values().get(), default=str).decode()
    assert token not in stored
    assert token not in orjson.dumps(list(AuditEvent.objects.values("data")), default=str).decode()
    # The case keeps the decision as logged.
    assert review.decision == snapshot_of(record)

    # The person's page: waiting, and nothing they wrote or anything else about them.
    waiting = person.get(link)
    assert waiting.status_code == 200
    assertTemplateUsed(waiting, "governance/review_status.html")
    html = waiting.content.decode()
    assert "<title>Your review · Faro</title>" in html
    assertInHTML('<p class="decision" id="review-state" data-testid="review-state">Waiting for a reviewer</p>', html)
    assertInHTML(f'<dd data-testid="reference">{record.request_id}</dd>', html)
    for private in (REASON, CONTACT, "8900", "north"):
        assert private not in html
    assert "no-store" in waiting["Cache-Control"]
    assert waiting["X-Robots-Tag"] == "noindex, nofollow"
    assert "Content-Security-Policy" in waiting
    assert "<script" not in html and "style=" not in html and "<style" not in html

    # A reviewer reads the case in the console: the decision, its reasons, the inputs as logged, the reason.
    reviewer = make_reviewer("rita")
    console = signed_in(reviewer)
    listed = console.get("/admin/governance/reviewrequest/")
    assert [item.pk for item in listed.context["cl"].result_list] == [review.pk]
    page = console.get(case_url(review))
    assert page.status_code == 200
    html = page.content.decode()
    assertInHTML('<td data-testid="case-status">Open</td>', html)
    assertInHTML('<td data-testid="case-output">yes (approved)</td>', html)
    assertInHTML(f'<td data-testid="case-reason">{REASON}</td>', html)
    assert record.explanation["reasons"][0]["sentence"].replace("'", "&#x27;") in html
    assert 'data-testid="take-form"' in html and 'data-testid="decide-form"' not in html

    # It takes the case, then records "changed" with a note for the person.
    taken = console.post(case_url(review), {"action": "take"})
    assert (taken.status_code, taken["Location"]) == (302, case_url(review))
    review.refresh_from_db()
    assert (review.status, review.reviewer, review.decided_at) == ("in_review", reviewer, None)
    assert review.taken_at is not None
    assert 'data-testid="decide-form"' in console.get(case_url(review)).content.decode()
    in_review = person.get(link).content.decode()
    assertInHTML('<p class="decision" id="review-state" data-testid="review-state">Being reviewed</p>', in_review)

    decided = console.post(
        case_url(review), {"action": "decide", "outcome": "changed", "changed_outcome": " no ", "outcome_note": NOTE}
    )
    assert (decided.status_code, decided["Location"]) == (302, case_url(review))
    review.refresh_from_db()
    assert (review.status, review.changed_outcome, review.outcome_note, review.reviewer) == (
        "changed",
        "no",
        NOTE,
        reviewer,
    )
    assert review.decided_at >= review.taken_at
    assertInHTML('<td data-testid="case-outcome">Decision changed</td>', console.get(case_url(review)).content.decode())

    # The person's page shows the outcome in plain words, and the explanation.
    outcome = person.get(link)
    html = outcome.content.decode()
    assert "<title>Decided: Your review · Faro</title>" in html
    assertInHTML(
        '<p class="decision" id="review-state" data-testid="review-state">Reviewed: the decision was changed</p>', html
    )
    assertInHTML('<strong data-testid="new-decision">Declined</strong>', html)
    assertInHTML(
        '<div data-testid="outcome-note"><p>Your income was checked again with your payslips.<br>'
        "The credit is declined: the amount is too high.</p></div>",
        html,
    )
    assert REASON not in html and CONTACT not in html
    # The confirmation page (found by the decision's reference) says the status, not the outcome's text.
    confirmation = person.get(review_url(record)).content.decode()
    assertInHTML('<dd data-testid="review-status">Decision changed</dd>', confirmation)
    assert "payslips" not in confirmation

    # Every step audited, in order, by pseudonymous actors and without what anyone wrote.
    assert review_events() == [
        (
            "review_request.created",
            "anonymous",
            {
                "request_id": str(record.request_id),
                "model_name": "loan-risk",
                "model_version": 1,
                "with_reason": True,
                "with_contact": True,
            },
        ),
        (
            "review_request.taken",
            f"user:{reviewer.pk}",
            {"request_id": str(record.request_id), "from": "open", "to": "in_review"},
        ),
        (
            "review_request.decided",
            f"user:{reviewer.pk}",
            {"request_id": str(record.request_id), "from": "in_review", "to": "changed"},
        ),
    ]
    recorded = orjson.dumps([data for *_, data in review_events()]).decode()
    for private in (REASON, CONTACT, "payslips", "rita"):
        assert private not in recorded
    assert audit_verify().ok


def test_the_link_cookie_stays_on_the_confirmation_page_of_this_browser(person):
    record = PredictionRecord.objects.get()
    response = person.post(review_url(record), {"reason": "", "contact": ""})

    cookie = response.cookies[REVIEW_LINK_COOKIE]
    assert (cookie["path"], cookie["max-age"], cookie["httponly"], cookie["samesite"]) == (
        review_url(record),
        REVIEW_LINK_COOKIE_SECONDS,
        True,
        "Strict",
    )
    assert ReviewRequest.objects.get().link_digest == hashlib.sha256(cookie.value.encode()).hexdigest()
    assert LINK.search(person.get(review_url(record)).content.decode())

    # Another browser with the reference only (no cookie, or another case's link) is not shown the link.
    stranger = Client()
    page = stranger.get(review_url(record)).content.decode()
    assert not LINK.search(page)
    assert 'data-testid="status-link-gone"' in page
    _, other_token = review_request_create(
        request_id="6f1d3c2b-0a9e-4d8c-b7a6-5f4e3d2c1b0a", model_name="loan-risk", model_version=1
    )
    stranger.cookies[REVIEW_LINK_COOKIE] = other_token
    assert not LINK.search(stranger.get(review_url(record)).content.decode())
    # Asking again records nothing new and sets no new link.
    again = person.post(review_url(record), {"reason": "Again.", "contact": ""})
    assert again.status_code == 303
    assert REVIEW_LINK_COOKIE not in again.cookies


def test_another_reviewer_cannot_take_or_decide_a_taken_case(asked):
    review, link = asked
    first, second = make_reviewer("first"), make_reviewer("second")
    signed_in(first).post(case_url(review), {"action": "take"})
    before = review_events()
    other = signed_in(second)

    page = other.get(case_url(review)).content.decode()
    assertInHTML('<p data-testid="case-taken">Taken by first: only they can record its outcome.</p>', page)
    taking = other.post(case_url(review), {"action": "take"})
    deciding = other.post(case_url(review), {"action": "decide", "outcome": "upheld", "outcome_note": "Fine."})

    assert taking.status_code == 409
    assert "Nothing was changed: This case was already taken by first on" in taking.content.decode()
    assert deciding.status_code == 409
    assert "This case was taken by first on" in deciding.content.decode()
    assert "only they can record its outcome." in deciding.content.decode()
    review.refresh_from_db()
    assert (review.status, review.reviewer, review.outcome_note, review.decided_at) == ("in_review", first, "", None)
    assert review_events() == before
    assertInHTML(
        '<p class="decision" id="review-state" data-testid="review-state">Being reviewed</p>',
        Client().get(link).content.decode(),
    )


def test_an_outcome_is_recorded_once(asked):
    review, link = asked
    reviewer = make_reviewer("rita")
    console = signed_in(reviewer)
    console.post(case_url(review), {"action": "take"})
    console.post(case_url(review), {"action": "decide", "outcome": "upheld", "outcome_note": "It stands."})
    before = review_events()

    again = console.post(
        case_url(review), {"action": "decide", "outcome": "changed", "changed_outcome": "no", "outcome_note": "No."}
    )
    retake = console.post(case_url(review), {"action": "take"})

    assert again.status_code == 409
    assert "already decided (decision upheld); its outcome is recorded once" in again.content.decode()
    assert retake.status_code == 409
    review.refresh_from_db()
    assert (review.status, review.outcome_note, review.changed_outcome) == ("upheld", "It stands.", "")
    assert review_events() == before
    html = Client().get(link).content.decode()
    assertInHTML(
        '<p class="decision" id="review-state" data-testid="review-state">Reviewed: the decision stands</p>', html
    )
    assertInHTML('<div data-testid="outcome-note"><p>It stands.</p></div>', html)


def test_an_outcome_needs_the_case_taken_a_note_and_a_new_decision_when_changed(asked):
    review, _ = asked
    console = signed_in(make_reviewer("rita"))

    not_taken = console.post(case_url(review), {"action": "decide", "outcome": "upheld", "outcome_note": "Fine."})
    assert not_taken.status_code == 409
    assert "Take the case before recording its outcome." in not_taken.content.decode()

    console.post(case_url(review), {"action": "take"})
    before = review_events()
    cases = [
        ({"outcome": "upheld", "outcome_note": "  "}, "outcome_note", "This field is required."),
        ({"outcome": "changed", "outcome_note": "Why."}, "changed_outcome", "this field is required when it changed"),
        (
            {"outcome": "changed", "changed_outcome": "yes", "outcome_note": "Why."},
            "changed_outcome",
            "'yes' is the decision the model made; to keep it, record the decision as upheld.",
        ),
        (
            {"outcome": "upheld", "changed_outcome": "no", "outcome_note": "Why."},
            "changed_outcome",
            "Leave the new decision empty when the decision is upheld.",
        ),
        ({"outcome": "reopened", "outcome_note": "Why."}, "outcome", "Select a valid choice."),
    ]
    for data, field, message in cases:
        response = console.post(case_url(review), {"action": "decide", **data})
        assert response.status_code == 400, data
        assert message in " ".join(response.context["form"].errors[field]), response.context["form"].errors
    review.refresh_from_db()
    assert (review.status, review.outcome_note, review.changed_outcome, review.decided_at) == (
        "in_review",
        "",
        "",
        None,
    )
    assert review_events() == before


def test_staff_without_the_permission_cannot_act(asked):
    review, _ = asked
    viewer = get_user_model().objects.create_user("auditor", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_reviewrequest"))
    outsider = make_reviewer("staff-only", permission=False)
    reviewer = make_reviewer("rita")
    signed_in(reviewer).post(case_url(review), {"action": "take"})
    before = review_events()

    reader = signed_in(viewer)
    page = reader.get(case_url(review))
    assert page.status_code == 200
    assert 'data-testid="take-form"' not in page.content.decode()
    assert 'data-testid="decide-form"' not in page.content.decode()
    for browser in (reader, signed_in(outsider)):
        assert browser.post(case_url(review), {"action": "take"}).status_code == 403
        decide = {"action": "decide", "outcome": "upheld", "outcome_note": "Fine."}
        assert browser.post(case_url(review), decide).status_code == 403
    assert signed_in(outsider).get(case_url(review)).status_code == 403
    # The services refuse them too, whatever the edge.
    with pytest.raises(PermissionDenied, match=r"needs the permission governance\.review_decision"):
        review_request_take(review=review, actor=get_user_model().objects.get(pk=viewer.pk))
    with pytest.raises(PermissionDenied, match=r"needs the permission governance\.review_decision"):
        review_request_decide(review=review, actor="user:1", outcome="upheld", note="Fine.")

    review.refresh_from_db()
    assert (review.status, review.reviewer, review.outcome_note) == ("in_review", reviewer, "")
    assert review_events() == before


@pytest.mark.parametrize(
    "path",
    [
        "/review/x/",
        "/review/{token_cut}/",
        "/review/{token}A/",
        "/review/{token_upper}/",
        "/review/%00/",
        "/review/%C3%A9t%C3%A9/",
        "/review/%ED%A0%80/",
        "/review/" + "A" * 500 + "/",
        "/review/{token}/extra/",
    ],
)
def test_an_unknown_or_garbled_link_is_a_404_page(client, asked, path):
    _, link = asked
    token = link.split("/")[2]
    path = path.format(token=token, token_cut=token[:-1], token_upper=token.upper())

    response = client.get(path)

    assert response.status_code == 404
    assertTemplateUsed(response, "error.html")
    html = response.content.decode()
    assert str(ReviewRequest.objects.get().request_id) not in html
    if path.count("/") == 3:  # the status view itself answered, not the URL resolver
        assert LINK_NOT_FOUND_MESSAGE in html


def test_the_status_page_only_reads(client, asked):
    _, link = asked
    assert client.post(link).status_code == 405
    assert client.head(link).status_code == 200


def test_the_case_keeps_the_decision_after_the_log_row_is_gone(asked):
    review, link = asked
    record = PredictionRecord.objects.get()
    expected = snapshot_of(record)
    PredictionRecord.objects.all().delete()  # as a retention purge would

    review.refresh_from_db()
    assert review.decision == expected
    console = signed_in(make_reviewer("rita"))
    html = console.get(case_url(review)).content.decode()
    assertInHTML('<td data-testid="case-output">yes (approved)</td>', html)
    for name, value in record.inputs.items():
        assertInHTML(f"<tr><td>{name}</td><td>{value}</td></tr>", html)
    console.post(case_url(review), {"action": "take"})
    decided = console.post(case_url(review), {"action": "decide", "outcome": "upheld", "outcome_note": "It stands."})
    assert decided.status_code == 302
    assert "It stands." in Client().get(link).content.decode()


def test_the_log_and_the_case_keep_reasons_as_minimised_as_the_inputs(client, champion):
    # The training dataset's tags: age is personal (pseudonymised in the log), city special-category (dropped).
    Dataset.objects.filter(pk=champion.dataset_version.dataset_id).update(
        column_tags={"age": ["personal"], "city": ["special_category"]}
    )
    assert client.post(DECISION_URL, APPROVED_FORM).status_code == 200
    ask_for_review(client)
    review = ReviewRequest.objects.get()
    record = PredictionRecord.objects.get()

    inputs = review.decision["inputs"]
    assert inputs == record.inputs
    assert sorted(inputs) == ["age", "income"]
    assert inputs["income"] == 8900.0
    assert re.fullmatch(r"psn:[0-9a-f]{16}", inputs["age"])
    # The log keeps the reasons as minimised as the inputs, and the case keeps what the log keeps.
    logged = {reason["feature"]: reason for reason in record.explanation["reasons"]}
    direction = {name: "for" if logged[name]["contribution"] > 0 else "against" for name in ("age", "city")}
    assert (logged["age"]["value"], logged["age"]["sentence"]) == (
        inputs["age"],
        f"Age (pseudonymised) counted {direction['age']} 'yes'.",
    )
    assert (logged["city"]["value"], logged["city"]["sentence"]) == (
        None,
        f"City (value not kept) counted {direction['city']} 'yes'.",
    )
    assert logged["income"]["value"] == 8900.0
    assert review.decision["explanation"] == record.explanation
    assert "north" not in orjson.dumps(record.explanation).decode()
    assert "north" not in orjson.dumps(review.decision).decode()
    html = signed_in(make_reviewer("rita")).get(case_url(review)).content.decode()
    assertInHTML(f"<tr><td>age</td><td><code>{inputs['age']}</code> (pseudonymised)</td></tr>", html)
    assert "north" not in html


def test_a_case_whose_reviewer_left_can_be_taken_by_another(asked):
    review, _ = asked
    gone, successor = make_reviewer("gone"), make_reviewer("successor")
    review_request_take(review=review, actor=gone)
    gone.delete()

    taken = review_request_take(review=review, actor=successor)

    assert (taken.status, taken.reviewer) == ("in_review", successor)
    assert [action for action, *_ in review_events()] == [
        "review_request.created",
        "review_request.taken",
        "review_request.taken",
    ]
    assert review_events()[-1][2]["from"] == "in_review"
    with pytest.raises(Conflict):
        review_request_decide(review=review, actor=make_reviewer("third"), outcome="upheld", note="Fine.")
