"""Fair use: a per-client request budget for the scoring endpoints, in fixed windows.

The client is the API token, else the signed-in user, else the remote address. Counting is one atomic
increment in the "throttle" cache per request (Redis, shared by every process; without Redis, each
process counts for itself). A client over budget gets 429 with Retry-After: the seconds until its window
ends.
"""

import time

from django.conf import settings
from django.core.cache import caches
from rest_framework.throttling import BaseThrottle

from apps.governance.models import ApiToken

PERIODS = {"second": 1, "minute": 60, "hour": 3600}


def rate_limit() -> tuple[int, int] | None:
    """(requests, seconds) from FARO_PREDICT_RATE_LIMIT; None when it is off."""
    rate = settings.FARO_PREDICT_RATE_LIMIT
    if rate == "off":
        return None
    count, period = rate.split("/")
    return int(count), PERIODS[period]


def client_key(request) -> str:
    if isinstance(request.auth, ApiToken):
        return f"token:{request.auth.pk}"
    user = getattr(request, "user", None)
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "pk", None) is not None:
        return f"user:{user.pk}"
    return f"addr:{request.META.get('REMOTE_ADDR', '')}"


class ClientRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        limit = rate_limit()
        if limit is None:
            return True
        allowed, period = limit
        now = time.time()
        window = int(now // period)
        key = f"{client_key(request)}:{period}:{window}"
        cache = caches["throttle"]
        try:
            count = cache.incr(key)
        except ValueError:  # the window's first request
            count = 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)
        self._wait = (window + 1) * period - now
        return count <= allowed

    def wait(self) -> float | None:
        return max(1.0, self._wait)
