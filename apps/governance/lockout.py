"""Sign-in lockout: repeated failed sign-ins lock the account, and the client address, for a while.

FARO_LOGIN_MAX_FAILURES failures for one account within FARO_LOGIN_LOCKOUT_SECONDS (counted from the first)
lock that account for FARO_LOGIN_LOCKOUT_SECONDS, whether the account exists or not (so the lockout tells
nobody which names are real). FARO_LOGIN_IP_MAX_FAILURES failures from one client address lock the address the
same way, which slows a password spray across many accounts; 0 turns that limit off. A successful sign-in
clears its account's count (never the address's: one known password must not buy a sprayer more tries).

The counts live in the default cache (Redis in production, so every web process shares them), under keys
named by a pseudonym: HMAC-SHA256 of the lower-cased name (or the address) under SECRET_KEY, 16 hex
characters. The audit event of a lockout carries the same pseudonym, never the name.

The hooks, all Django's own:
- `LoginLockoutBackend`, first in AUTHENTICATION_BACKENDS, raises PermissionDenied for a locked account or
  address before any password is checked: `authenticate()` then asks no further backend and returns None.
  Every caller of `authenticate()` is covered (the admin's sign-in, `Client.login`, any later login form).
- `user_login_failed` (sent by `authenticate()` when no backend accepted the credentials) counts the failure;
  `user_logged_in` clears the account's count.
- `LockoutAdminAuthenticationForm`, the admin site's login form, names the lockout instead of the usual
  "Please enter the correct username and password".
API tokens never go through `authenticate()`, so the lockout does not touch them.
"""

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import caches
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest

from apps.governance.services import audit_record

ACCOUNT = "account"
ADDRESS = "address"
MESSAGES = {
    ACCOUNT: "Too many failed sign-ins for this account; try again in {wait}.",
    ADDRESS: "Too many failed sign-ins from this address; try again in {wait}.",
}
KEY_PREFIX = "faro-login"


@dataclass(frozen=True)
class Lockout:
    """A lock in force: on an account or on an address, for `seconds` more."""

    subject: str
    seconds: int

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.seconds / 60))
        return MESSAGES[self.subject].format(wait=f"{minutes} minute" if minutes == 1 else f"{minutes} minutes")


def pseudonym(value: str) -> str:
    """The keyed hash that stands for an account name or an address in cache keys and in the audit log."""
    return hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256).hexdigest()[:16]


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address: REMOTE_ADDR, or behind FARO_TRUSTED_PROXY_COUNT proxies (each appending the address
    it saw to X-Forwarded-For) the entry that many from the end. Entries before it are the client's to write."""
    if request is None:
        return None
    proxies = settings.FARO_TRUSTED_PROXY_COUNT
    if proxies:
        forwarded = [entry.strip() for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [entry for entry in forwarded if entry]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR") or None


def _key(subject: str, ref: str, name: str) -> str:
    return f"{KEY_PREFIX}:{subject}:{ref}:{name}"


def _subjects(username: str | None, request: HttpRequest | None) -> list[tuple[str, str, int]]:
    """(subject, pseudonym, failure limit) for the account and the address of one sign-in attempt."""
    subjects = []
    if username:
        subjects.append((ACCOUNT, pseudonym(username.lower()), settings.FARO_LOGIN_MAX_FAILURES))
    address = client_address(request)
    if address and settings.FARO_LOGIN_IP_MAX_FAILURES:
        subjects.append((ADDRESS, pseudonym(address), settings.FARO_LOGIN_IP_MAX_FAILURES))
    return subjects


def lockout_get(*, username: str | None, request: HttpRequest | None) -> Lockout | None:
    """The lock that refuses this attempt now (the account's before the address's), or None."""
    subjects = _subjects(username, request)
    if not subjects:
        return None
    now = time.time()
    keys = [_key(subject, ref, "locked") for subject, ref, _ in subjects]
    locked = caches["default"].get_many(keys)
    for (subject, _, _), key in zip(subjects, keys, strict=True):
        until = locked.get(key)
        if until is not None and until > now:
            return Lockout(subject, math.ceil(until - now))
    return None


def _count_failure(subject: str, ref: str, now: float, window: int) -> int:
    """Count one failure in the window its subject's first failure opened; the window's count so far."""
    cache = caches["default"]
    since, failures = _key(subject, ref, "since"), _key(subject, ref, "failures")
    if cache.add(since, now, timeout=window):
        cache.set(failures, 1, timeout=window)
        return 1
    remaining = max(1, math.ceil(cache.get(since, now) + window - now))
    cache.add(failures, 0, timeout=remaining)
    try:
        count = cache.incr(failures)
    except ValueError:  # the window closed between the two calls
        cache.set(failures, 1, timeout=remaining)
        return 1
    # Redis and local memory keep the expiry through incr; the file and database caches' incr is a get and a
    # set, which would restart it.
    cache.touch(failures, remaining)
    return count


def failure_record(*, username: str | None, request: HttpRequest | None) -> None:
    """Count a failed sign-in against its account and address; lock those that reach their limit, each lock
    recorded in the audit log. An attempt a lock refused checked no password, so it counts for nothing."""
    if lockout_get(username=username, request=request) is not None:
        return
    cache = caches["default"]
    window = settings.FARO_LOGIN_LOCKOUT_SECONDS
    now = time.time()
    for subject, ref, limit in _subjects(username, request):
        failures = _count_failure(subject, ref, now, window)
        if failures >= limit and cache.add(_key(subject, ref, "locked"), now + window, timeout=window):
            cache.delete_many([_key(subject, ref, "since"), _key(subject, ref, "failures")])
            audit_record(
                actor="system",
                action="login.locked_out",
                data={"subject": subject, "ref": ref, "failures": failures, "seconds": window},
            )


def success_record(*, username: str) -> None:
    """A successful sign-in: its account starts counting afresh."""
    ref = pseudonym(username.lower())
    caches["default"].delete_many([_key(ACCOUNT, ref, "since"), _key(ACCOUNT, ref, "failures")])


def _credential_username(credentials: dict[str, Any]) -> str | None:
    username = credentials.get("username", credentials.get(get_user_model().USERNAME_FIELD))
    return username if isinstance(username, str) else None


class LoginLockoutBackend:
    """First in AUTHENTICATION_BACKENDS: refuses a locked account or address before a password is checked.

    PermissionDenied from a backend stops `django.contrib.auth.authenticate()`: no later backend is asked, and
    it returns None after sending `user_login_failed`. Otherwise this backend steps aside (returns None).
    It has no get_user() or permission methods on purpose: it never signs anyone in, so sessions (and
    `Client.force_login`, which picks the first backend with get_user) name the backend that did."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        if lockout_get(username=_credential_username(credentials), request=request) is not None:
            raise PermissionDenied
        return None

    async def aauthenticate(self, request: HttpRequest | None, **credentials: Any) -> None:
        return await sync_to_async(self.authenticate)(request, **credentials)


class LockoutAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in form, which says so when a lockout refused the attempt."""

    def get_invalid_login_error(self) -> ValidationError:
        lockout = lockout_get(username=self.cleaned_data.get("username"), request=self.request)
        if lockout is not None:
            return ValidationError(lockout.message, code="locked_out")
        return super().get_invalid_login_error()


def _on_login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs) -> None:
    failure_record(username=_credential_username(credentials), request=request)


def _on_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs) -> None:
    success_record(username=user.get_username())


def connect() -> None:
    """Wire the lockout into Django: the signals, and the admin site's login form (GovernanceConfig.ready)."""
    user_login_failed.connect(_on_login_failed, dispatch_uid="faro-login-failed")
    user_logged_in.connect(_on_logged_in, dispatch_uid="faro-logged-in")
    admin.site.login_form = LockoutAdminAuthenticationForm
