"""The person's own data-subject requests: asked for on /privacy/ without signing in, followed on the private link
shown once, with the erasure's receipt or the copy of an access request to download at the end."""

import io
import json
import re
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from apps.governance import privacy
from apps.governance.models import DataSubjectRequest
from apps.governance.views import DUPLICATE_MESSAGE, PRIVACY_POSTS_PER_HOUR, SUBJECT_LINK_NOT_FOUND_MESSAGE

SUBJECT, CONTACT, DETAILS = "C0007", "ann@example.org", "Everything you hold about my loan application."
LINK = re.compile(r'<a href="http://testserver(/privacy/requests/([A-Za-z0-9_-]+)/)" data-testid="status-link">')


@pytest.fixture
def dpo(db):
    user = get_user_model().objects.create_user("dpo", password="pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="handle_subjectrequest"))
    return get_user_model().objects.get(pk=user.pk)


def ask(client: Client, kind: str = "access", subject_id: str = SUBJECT, **extra):
    return client.post("/privacy/", {"kind": kind, "subject_id": subject_id, "contact": CONTACT, **extra})


def asked(client: Client, kind: str = "access") -> tuple[DataSubjectRequest, str]:
    """Ask on the page; the request and its private link's path."""
    response = ask(client, kind, details=DETAILS)
    assert response.status_code == 200, response.content
    path, token = LINK.search(response.content.decode()).groups()
    return privacy.subject_request_by_link(token), path


def carried_out(request: DataSubjectRequest, dpo) -> None:
    privacy.subject_request_verify(request=request, actor=dpo, method="Replied from the e-mail on file")
    privacy.subject_request_carry_out(request=request, actor=dpo)
    if request.kind == "erasure":
        privacy.erasure_run(request_id=request.pk)


def test_the_form_is_labelled_and_linked_from_every_page(client, db):
    page = client.get("/privacy/")
    assert page.status_code == 200
    content = page.content.decode()
    assert '<label for="id_subject_id">Your applicant or customer number</label>' in content
    assert '<label for="id_contact">Your e-mail address</label>' in content
    assert "<legend>What would you like us to do?</legend>" in content
    for value in ("access", "erasure", "restriction", "objection"):
        assert f'value="{value}"' in content
    assert 'name="csrfmiddlewaretoken"' in content
    assert 'aria-describedby="id_subject_id_helptext"' in content
    assert '<footer class="site no-print"><a href="/privacy/">Your data and your rights</a></footer>' in content
    # The footer is the site's: the other public pages have it too.
    assert 'href="/privacy/">Your data and your rights' in client.get("/privacy/requests/nothing/").content.decode()


def test_a_request_is_made_and_followed_on_its_private_link(client, db):
    response = ask(client, "erasure", details=DETAILS)
    assert response.status_code == 200
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "no-store" in response["Cache-Control"]
    content = response.content.decode()
    path, token = LINK.search(content).groups()
    request = DataSubjectRequest.objects.get()
    assert (request.kind, request.subject_id, request.contact, request.details, request.created_by) == (
        "erasure",
        SUBJECT,
        CONTACT,
        DETAILS,
        "subject",
    )
    assert request.link_digest == privacy.link_digest(token)
    assert f'<p class="decision" id="sent-heading" data-testid="sent">Request number {request.pk}</p>' in content
    assert '<dd data-testid="kind">Have the data held about me erased</dd>' in content

    status = client.get(path)
    assert status.status_code == 200
    assert status["X-Robots-Tag"] == "noindex, nofollow"
    page = status.content.decode()
    assert 'data-testid="request-state">Received: we are checking that the request is yours</p>' in page
    assert f'<dd data-testid="due">{request.due_at:%-d %B %Y}</dd>' in page
    assert f'<dd data-testid="received">{request.received_at:%-d %B %Y}</dd>' in page
    for private in (SUBJECT, CONTACT, DETAILS):  # nothing the person wrote is shown back
        assert private not in page
    # The link is shown once: the status page never repeats it.
    assert token not in page.replace(path, "")


def test_errors_are_shown_next_to_their_fields_and_nothing_is_recorded(client, db):
    response = client.post("/privacy/", {"subject_id": "", "contact": "not an address"})
    assert response.status_code == 400
    assert response.context["form"].errors == {
        "kind": ["Choose what you would like us to do."],
        "subject_id": ["Enter your applicant or customer number."],
        "contact": ["Enter an e-mail address like name@example.com."],
    }
    content = response.content.decode()
    assert '<a href="#id_kind_0">Choose what you would like us to do.</a>' in content
    assert (
        '<a href="#id_subject_id">Your applicant or customer number: Enter your applicant or customer number.</a>'
        in (content)
    )
    assert '<div class="field invalid">' in content
    assert not DataSubjectRequest.objects.exists()


def test_a_second_open_request_of_the_same_kind_is_refused(client, db):
    first, _ = asked(client, "erasure")
    again = ask(client, "erasure", subject_id=f" {SUBJECT} ")
    assert again.status_code == 409
    assert again.context["conflict"] == DUPLICATE_MESSAGE
    content = again.content.decode()
    assert 'data-testid="conflict"' in content and DUPLICATE_MESSAGE in content
    assert 'data-testid="status-link"' not in content
    assert list(DataSubjectRequest.objects.values_list("pk", flat=True)) == [first.pk]
    # Another kind for the same person is a request of its own.
    assert ask(client, "access").status_code == 200
    assert DataSubjectRequest.objects.count() == 2


@pytest.mark.parametrize("token", ["forged", "A" * 43, "x" * 200])
def test_an_unknown_or_forged_link_is_a_404_page(client, db, token):
    asked(client)
    for response in (client.get(f"/privacy/requests/{token}/"), client.post(f"/privacy/requests/{token}/data.zip")):
        assert response.status_code == 404
        assert response.context["message"] == SUBJECT_LINK_NOT_FOUND_MESSAGE


def test_the_form_needs_its_csrf_token(db):
    browser = Client(enforce_csrf_checks=True)
    response = ask(browser)
    assert response.status_code == 403
    assert not DataSubjectRequest.objects.exists()


def test_anonymous_posts_are_limited_per_address(client, db):
    for _ in range(PRIVACY_POSTS_PER_HOUR):
        assert client.post("/privacy/", {"kind": "access"}).status_code == 400
    refused = ask(client)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    content = refused.content.decode()
    assert "We have received too many requests from your connection. Please try again in " in content
    assert 'value="C0007"' in content and 'class="errorlist' not in content  # kept, not checked
    assert not DataSubjectRequest.objects.exists()
    # Another address has its own budget.
    other = client.post(
        "/privacy/", {"kind": "access", "subject_id": SUBJECT, "contact": CONTACT}, REMOTE_ADDR="192.0.2.8"
    )
    assert other.status_code == 200
    assert DataSubjectRequest.objects.count() == 1


def test_a_completed_access_request_offers_the_copy_to_download(client, dataset_version, dpo):
    request, path = asked(client, "access")
    assert 'data-testid="download-form"' not in client.get(path).content.decode()
    assert client.post(f"{path}data.zip").status_code == 409  # not carried out yet

    carried_out(request, dpo)
    page = client.get(path).content.decode()
    assert 'data-testid="request-state">Completed</p>' in page
    assert f'<form method="post" action="{path}data.zip" data-testid="download-form">' in page
    assert '<button type="submit">Download your data</button>' in page

    assert client.get(f"{path}data.zip").status_code == 405  # a POST from the button only
    response = client.post(f"{path}data.zip")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == f'attachment; filename="your-data-request-{request.pk}.zip"'
    bundle = zipfile.ZipFile(io.BytesIO(response.content))
    assert {"data.json", "data.dataset_version.csv"} <= set(bundle.namelist())
    document = json.loads(bundle.read("data.json"))
    assert (document["request"], document["subject_id"]) == (request.pk, SUBJECT)
    rows = document["stores"]["data.dataset_version"]["rows"]
    assert [(row["dataset"], row["customer_id"]) for row in rows] == [("loans", SUBJECT)]


def test_a_completed_erasure_shows_its_receipt_without_hashes(client, dataset_version, dpo):
    request, path = asked(client, "erasure")
    carried_out(request, dpo)
    request.refresh_from_db()
    page = client.get(path).content.decode()
    assert 'data-testid="request-state">Completed</p>' in page
    assert f'<div data-testid="outcome"><p>{request.outcome}</p></div>' in page
    assert '<tr><td>Dataset versions (Parquet files)</td><td class="num">1</td></tr>' in page
    for store in request.receipt["stores"]:
        if store["before"]:
            assert store["before"] not in page and store["after"] not in page
    assert 'data-testid="download-form"' not in page
    assert client.post(f"{path}data.zip").status_code == 409


def test_a_refusal_shows_its_reason(client, db, dpo):
    request, path = asked(client, "objection")
    privacy.subject_request_refuse(request=request, actor=dpo, reason="We could not confirm it was you.")
    page = client.get(path).content.decode()
    assert 'data-testid="request-state">Refused</p>' in page
    assert '<h2 id="outcome-heading" class="card-title">Why we refused</h2>' in page
    assert "We could not confirm it was you." in page
