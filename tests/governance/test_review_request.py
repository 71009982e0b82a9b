"""Requests for a human review of a decision: the service (idempotent, audited without what the person wrote)
and the console, where nothing is edited directly (the case workflow is in test_review_cases.py)."""

import uuid

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from apps.core.errors import Conflict, InvalidInput
from apps.governance.models import AuditEvent, ReviewRequest
from apps.governance.services import audit_verify, review_request_create, review_request_decide, review_request_take

REQUEST_ID = uuid.UUID("0b7e4c1e-8a52-4f0e-9a51-5d1f2b3c4d5e")


def create(**overrides) -> ReviewRequest:
    values = {
        "request_id": REQUEST_ID,
        "model_name": "loan-risk",
        "model_version": 3,
        "subject_id": "C0042",
        "reason": "I was ill that year.",
        "contact": "ann@example.org",
        "actor": "anonymous",
        **overrides,
    }
    return review_request_create(**values)[0]


def reviewer(username: str = "reviewer"):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="review_decision"))
    return get_user_model().objects.get(pk=user.pk)  # a fresh instance: permissions are cached per instance


def events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action__startswith="review_request.").order_by("seq"))


def test_a_request_is_stored_and_audited_without_what_the_person_wrote(db):
    review = create(request_id=str(REQUEST_ID), reason="  I was ill that year.\n", contact=" ann@example.org ")

    assert (
        review.request_id,
        review.model_name,
        review.model_version,
        review.subject_id,
        review.reason,
        review.contact,
        review.status,
    ) == (REQUEST_ID, "loan-risk", 3, "C0042", "I was ill that year.", "ann@example.org", "open")
    [event] = events()
    assert (event.actor, event.action, event.object_type, event.object_id) == (
        "anonymous",
        "review_request.created",
        "governance.reviewrequest",
        str(review.pk),
    )
    assert event.data == {
        "request_id": str(REQUEST_ID),
        "model_name": "loan-risk",
        "model_version": 3,
        "with_reason": True,
        "with_contact": True,
    }
    recorded = orjson.dumps(event.data).decode()
    for personal in ("ill", "ann@example.org", "C0042"):
        assert personal not in recorded
    assert audit_verify().ok


def test_asking_again_returns_the_first_request_unchanged(db):
    first = create()
    again = create(reason="Something else.", contact="", actor="user:9", model_version=4)

    assert again.pk == first.pk
    assert (again.reason, again.contact, again.model_version) == ("I was ill that year.", "ann@example.org", 3)
    assert ReviewRequest.objects.count() == 1
    assert len(events()) == 1


def test_the_actor_is_pseudonymous(db):
    user = get_user_model().objects.create_user("enduser", password="pw")
    create(actor=user)
    assert events()[0].actor == f"user:{user.pk}"


def test_too_long_texts_are_refused_and_nothing_is_written(db):
    with pytest.raises(InvalidInput) as refused:
        create(reason="x" * 2001, contact="y" * 201)
    assert refused.value.extra == {
        "fields": {
            "reason": ["Ensure this value has at most 2000 characters."],
            "contact": ["Ensure this value has at most 200 characters."],
        }
    }
    assert ReviewRequest.objects.count() == 0
    assert events() == []


def test_the_case_is_taken_once_and_each_step_is_audited(db):
    review = create()
    first, second = reviewer("first"), reviewer("second")

    taken = review_request_take(review=review, actor=first)
    assert (taken.status, taken.reviewer, taken.taken_at is not None) == ("in_review", first, True)
    # A second reviewer who still saw "open" is told who has it, and changes nothing.
    with pytest.raises(Conflict, match="already taken by first"):
        review_request_take(review=review, actor=second)
    # Taking one's own case again is no change and no event.
    assert review_request_take(review=review, actor=first).taken_at == taken.taken_at
    with pytest.raises(InvalidInput) as refused:
        review_request_decide(review=taken, actor=first, outcome="closed", note="Done.")
    assert refused.value.extra == {"fields": {"outcome": ["Choose the outcome: upheld, changed."]}}

    stored = ReviewRequest.objects.get()
    assert (stored.status, stored.reviewer_id, stored.taken_at) == ("in_review", first.pk, taken.taken_at)
    assert [(event.action, event.actor, event.data) for event in events()] == [
        (
            "review_request.created",
            "anonymous",
            {
                "request_id": str(REQUEST_ID),
                "model_name": "loan-risk",
                "model_version": 3,
                "with_reason": True,
                "with_contact": True,
            },
        ),
        (
            "review_request.taken",
            f"user:{first.pk}",
            {"request_id": str(REQUEST_ID), "from": "open", "to": "in_review"},
        ),
    ]


# -- the console -------------------------------------------------------------------------------------------


@pytest.fixture
def console(client, db):
    admin = get_user_model().objects.create_superuser("root", password="pw")
    client.force_login(admin)
    client.admin = admin
    return client


def test_the_console_lists_filters_and_searches_by_request_id(console):
    first = create()
    other_id = uuid.UUID("9f3a0c55-1d2e-4b6f-8a7c-0e1d2c3b4a59")
    second = create(request_id=other_id, model_name="fraud")
    decider = reviewer()
    review_request_take(review=second, actor=decider)
    review_request_decide(review=second, actor=decider, outcome="upheld", note="The decision stands.")

    listed = console.get("/admin/governance/reviewrequest/")
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 2
    assert [
        item.pk for item in console.get("/admin/governance/reviewrequest/?status__exact=open").context["cl"].result_list
    ] == [first.pk]
    assert [
        item.pk for item in console.get(f"/admin/governance/reviewrequest/?q={other_id}").context["cl"].result_list
    ] == [second.pk]
    assert [
        item.pk for item in console.get("/admin/governance/reviewrequest/?q=0b7e4c1e").context["cl"].result_list
    ] == [first.pk]
    assert console.get("/admin/governance/reviewrequest/?q=not-an-id").context["cl"].result_count == 0
    assert console.get("/admin/governance/reviewrequest/add/").status_code == 403


def test_the_console_edits_nothing_directly(console):
    review = create()
    url = f"/admin/governance/reviewrequest/{review.pk}/change/"
    page = console.get(url)
    assert page.status_code == 200
    assert page.templates[0].name == "admin/governance/reviewrequest/case.html"

    # The former status edit: refused, nothing changed, nothing audited. The case moves only by its actions.
    response = console.post(
        url, {"status": "changed", "reason": "Edited by staff.", "contact": "", "model_name": "x", "_save": "Save"}
    )

    assert response.status_code == 400
    review.refresh_from_db()
    assert (review.status, review.reason, review.contact, review.model_name, review.reviewer) == (
        "open",
        "I was ill that year.",
        "ann@example.org",
        "loan-risk",
        None,
    )
    assert [event.action for event in events()] == ["review_request.created"]
    assert console.post(f"/admin/governance/reviewrequest/{review.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ReviewRequest.objects.count() == 1
