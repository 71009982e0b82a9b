"""Webhook delivery over HTTP: the JSON body, the signature, the backoff and one POST. No Django here.

The signature scheme, for receivers:

    X-Faro-Timestamp: 1767225600
    X-Faro-Signature: sha256=<hex>

where `<hex>` is HMAC-SHA256, keyed with the webhook's shared secret (UTF-8 bytes), over the bytes
`<timestamp>.<body>` — the timestamp header's digits, a full stop, then the raw request body exactly as
received (verify before parsing the JSON). A receiver recomputes it, compares in constant time, and
rejects a timestamp more than a few minutes from its own clock so a captured request cannot be replayed
later. `verify()` below does all three. The body's `id` is the event's UUID: the same event may arrive
more than once (a retry after a lost response), so receivers use it to ignore repeats.
"""

import hashlib
import hmac
import http.client
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SIGNATURE_PREFIX = "sha256="
BACKOFF_CAP_SECONDS = 3600.0
RESPONSE_SNIPPET_CHARS = 200
USER_AGENT = "Faro-Webhook/1"


def body_encode(*, event_id: str, kind: str, created_at: str, payload: dict[str, Any]) -> bytes:
    """The request body: compact JSON, keys in a fixed order, UTF-8."""
    document = {"id": event_id, "kind": kind, "created_at": created_at, "payload": payload}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Faro-Signature` value: `sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    digest = hmac.new(secret, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify(
    secret: bytes, timestamp: int | str, body: bytes, signature: str, *, now: float, tolerance: float = 300
) -> bool:
    """True when `signature` is `sign(secret, timestamp, body)` and `timestamp` is within `tolerance`
    seconds of `now` (either side, for clock skew). Constant-time comparison."""
    try:
        stamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - stamp) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, stamp, body).encode(), str(signature).encode())


def backoff_seconds(attempt: int, *, base: float, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Wait after failed attempt number `attempt` (1-based): base, 2*base, 4*base, … at most `cap`."""
    if attempt < 1:
        raise ValueError(f"attempt must be at least 1, not {attempt}")
    # Past 2^64 any base is over the cap; a far larger power would not even convert to a float.
    if attempt > 64:
        return cap
    return min(base * 2 ** (attempt - 1), cap)


@dataclass(frozen=True)
class PostResult:
    """What one POST came to: the HTTP status (None when no response arrived) and an error text."""

    status_code: int | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A webhook answers where it is configured: a redirect is a failed delivery, not a new target
    (urllib would otherwise turn the POST into a GET without a body)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _snippet(raw: bytes) -> str:
    text = " ".join(raw.decode("utf-8", errors="replace").split())
    return text[:RESPONSE_SNIPPET_CHARS]


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float) -> PostResult:
    """POST `body` to `url`. Never raises for a remote failure: it comes back as a PostResult."""
    if urlsplit(url).scheme not in ("http", "https"):
        return PostResult(None, f"unsupported URL scheme in {url!r}")
    request = urllib.request.Request(  # noqa: S310 -- the scheme is checked above
        url, data=body, method="POST", headers={"User-Agent": USER_AGENT, **headers}
    )
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(RESPONSE_SNIPPET_CHARS)
            return PostResult(response.status)
    except urllib.error.HTTPError as exc:
        try:
            snippet = _snippet(exc.read(RESPONSE_SNIPPET_CHARS * 4))
        except (OSError, http.client.HTTPException):
            snippet = ""
        finally:
            exc.close()
        return PostResult(exc.code, f"HTTP {exc.code}: {snippet}" if snippet else f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
        return PostResult(None, f"request failed: {text}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # Timeouts while reading, a connection reset mid-response, a malformed status line.
        return PostResult(None, f"request failed: {type(exc).__name__}: {exc}")
