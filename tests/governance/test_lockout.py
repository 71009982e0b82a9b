"""Sign-in lockout: repeated failures lock the account, and the client address, for a while; the admin's
sign-in says so; a successful sign-in resets the account's count; API tokens are not affected."""

import hashlib
import hmac
import secrets
import time

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings as django_settings
from django.contrib.auth import aauthenticate, get_user_model
from django.test import RequestFactory

from apps.governance.lockout import client_address, lockout_get
from apps.governance.models import AuditEvent

LOGIN = "/admin/login/"
USERNAME = "amelia.staff"
PASSWORD = "right-horse-battery"
INVALID = (
    "Please enter the correct username and password for a staff account. Note that both fields may be case-sensitive."
)
ACCOUNT_LOCKED = "Too many failed sign-ins for this account; try again in 15 minutes."
ADDRESS_LOCKED = "Too many failed sign-ins from this address; try again in 15 minutes."


@pytest.fixture(autouse=True)
def _own_cache(settings):
    """The counts of this test only: its own key prefix in the default cache (a shared Redis in CI)."""
    default = {**settings.CACHES["default"], "KEY_PREFIX": f"faro-lockout-test-{secrets.token_hex(8)}"}
    settings.CACHES = {**settings.CACHES, "default": default}


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user(USERNAME, password=PASSWORD, is_staff=True)


def sign_in(client, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def errors(response) -> list[str]:
    assert response.status_code == 200, response.status_code
    return list(response.context["form"].non_field_errors())


def signed_in(client) -> bool:
    return "_auth_user_id" in client.session


def ref(value: str) -> str:
    return hmac.new(django_settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="login.locked_out").order_by("seq"))


def test_five_failures_lock_the_account_even_against_the_right_password(client, staff):
    # Names differ only in case: one account, one count.
    for attempt, name in enumerate([USERNAME, USERNAME.upper(), USERNAME, "Amelia.Staff"], start=1):
        assert errors(sign_in(client, name, f"wrong-{attempt}")) == [INVALID]
    assert lockouts() == []

    fifth = sign_in(client, USERNAME, "wrong-5")
    assert errors(fifth) == [ACCOUNT_LOCKED]
    assert ACCOUNT_LOCKED in fifth.content.decode()  # shown on the page, not only in the form

    sixth = sign_in(client, USERNAME, PASSWORD)
    assert errors(sixth) == [ACCOUNT_LOCKED]
    assert not signed_in(client)
    # Every caller of authenticate() is refused, not only the admin's form.
    assert client.login(username=USERNAME, password=PASSWORD) is False
    assert async_to_sync(aauthenticate)(username=USERNAME, password=PASSWORD) is None

    # One audit event, pseudonymous: the keyed hash of the lower-cased name, never the name.
    [event] = lockouts()
    assert (event.actor, event.object_type, event.object_id) == ("system", "", "")
    assert event.data == {"subject": "account", "ref": ref(USERNAME), "failures": 5, "seconds": 900}
    row = orjson.dumps({"actor": event.actor, "object_id": event.object_id, "data": event.data}).decode().lower()
    assert "amelia" not in row

    # Other accounts from the same address still sign in.
    get_user_model().objects.create_user("other.staff", password=PASSWORD, is_staff=True)
    response = sign_in(client, "other.staff", PASSWORD)
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_an_account_that_does_not_exist_locks_the_same_way(client, db):
    for attempt in range(4):
        assert errors(sign_in(client, "nobody", f"guess-{attempt}")) == [INVALID]
    assert errors(sign_in(client, "nobody", "guess-5")) == [ACCOUNT_LOCKED]
    assert [event.data["ref"] for event in lockouts()] == [ref("nobody")]


def test_the_lock_ends_after_the_period(client, staff, settings):
    settings.FARO_LOGIN_MAX_FAILURES = 1
    settings.FARO_LOGIN_LOCKOUT_SECONDS = 1
    locked = "Too many failed sign-ins for this account; try again in 1 minute."
    assert errors(sign_in(client, USERNAME, "wrong")) == [locked]
    assert errors(sign_in(client, USERNAME, PASSWORD)) == [locked]

    deadline = time.monotonic() + 5  # the lock lasts 1 s: wait until it has lapsed, without signing in
    while lockout_get(username=USERNAME, request=None) is not None:
        assert time.monotonic() < deadline, "the 1-second lock did not lapse within 5 s"
        time.sleep(0.05)
    response = sign_in(client, USERNAME, PASSWORD)
    assert (response.status_code, response["Location"]) == (302, "/admin/")
    assert signed_in(client)


def test_a_successful_sign_in_resets_the_accounts_count(client, staff):
    for attempt in range(4):
        assert errors(sign_in(client, USERNAME, f"wrong-{attempt}")) == [INVALID]
    assert sign_in(client, USERNAME, PASSWORD).status_code == 302
    client.post("/admin/logout/")
    assert not signed_in(client)

    # Counting starts again: four more failures do not lock, the fifth does.
    for attempt in range(4):
        assert errors(sign_in(client, USERNAME, f"again-{attempt}")) == [INVALID]
    assert errors(sign_in(client, USERNAME, "again-5")) == [ACCOUNT_LOCKED]
    assert len(lockouts()) == 1


def test_failures_across_accounts_lock_the_address(client, staff):
    # A password spray: one guess for each of 20 accounts from one address.
    for index in range(19):
        assert errors(sign_in(client, f"user{index}", "Summer2026!")) == [INVALID]
    assert errors(sign_in(client, "user19", "Summer2026!")) == [ADDRESS_LOCKED]

    # The address is locked, whatever the account and even with the right password; other addresses are not.
    assert errors(sign_in(client, USERNAME, PASSWORD)) == [ADDRESS_LOCKED]
    assert not signed_in(client)
    response = sign_in(client, USERNAME, PASSWORD, REMOTE_ADDR="10.0.0.2")
    assert (response.status_code, response["Location"]) == (302, "/admin/")

    [event] = lockouts()
    assert event.data == {"subject": "address", "ref": ref("127.0.0.1"), "failures": 20, "seconds": 900}
    assert "127.0.0.1" not in orjson.dumps(event.data).decode()


def test_the_address_limit_can_be_turned_off(client, db, settings):
    settings.FARO_LOGIN_IP_MAX_FAILURES = 0
    for index in range(25):
        assert errors(sign_in(client, f"user{index}", "Summer2026!")) == [INVALID]
    assert lockouts() == []


def test_behind_trusted_proxies_the_address_comes_from_x_forwarded_for(settings):
    factory = RequestFactory()
    # The client may write anything before the entries the proxies appended.
    request = factory.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9, 10.0.0.5", REMOTE_ADDR="10.0.0.1")
    assert client_address(request) == "10.0.0.1"
    settings.FARO_TRUSTED_PROXY_COUNT = 1
    assert client_address(request) == "10.0.0.5"
    settings.FARO_TRUSTED_PROXY_COUNT = 2
    assert client_address(request) == "203.0.113.9"
    # Fewer entries than proxies: the request did not come through them all, so the peer's address counts.
    assert client_address(factory.get("/", HTTP_X_FORWARDED_FOR="203.0.113.9", REMOTE_ADDR="10.0.0.1")) == "10.0.0.1"


def test_api_tokens_are_not_affected(client, staff, tokens):
    # Lock both the account and this address...
    for attempt in range(20):
        sign_in(client, USERNAME if attempt < 5 else f"user{attempt}", "wrong")
    assert errors(sign_in(client, USERNAME, PASSWORD)) == [ACCOUNT_LOCKED]
    assert errors(sign_in(client, "someone-else", PASSWORD)) == [ADDRESS_LOCKED]
    # ...a token from the same address still works, and bad tokens count for nothing.
    response = client.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['read']}"})
    assert response.status_code == 200
    for _ in range(30):
        bad = client.get("/api/v1/models", headers={"Authorization": "Bearer faro_wrong"}, REMOTE_ADDR="10.0.0.3")
        assert bad.status_code == 401
    response = sign_in(client, USERNAME, PASSWORD, REMOTE_ADDR="10.0.0.3")
    assert errors(response) == [ACCOUNT_LOCKED]  # the account's lock, not a new one for 10.0.0.3
    assert [event.data["subject"] for event in lockouts()] == ["account", "address"]


def test_the_embedded_defaults_file_cache_counts_the_same(client, staff, settings, tmp_path):
    settings.CACHES = {
        **settings.CACHES,
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": tmp_path / "cache"},
    }
    for attempt in range(4):
        assert errors(sign_in(client, USERNAME, f"wrong-{attempt}")) == [INVALID]
    assert errors(sign_in(client, USERNAME, "wrong-5")) == [ACCOUNT_LOCKED]
    assert errors(sign_in(client, USERNAME, PASSWORD)) == [ACCOUNT_LOCKED]
