"""Fair use: a per-client request budget for the scoring endpoints, in fixed windows.

The client is the API token, else the signed-in user, else the remote address. Counting is one atomic
increment per request in the "throttle" cache: with Redis, shared by every process, INCR and the window's
EXPIRE in one round trip on a connection pool kept per process; without Redis, each process counts for
itself. A client over budget gets 429 with Retry-After: the seconds until its window ends.
"""

import os
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
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


_redis: tuple[int, str, Any] | None = None  # (pid, url, client): one connection pool per process


def _redis_client(url: str) -> Any:
    global _redis
    if _redis is None or _redis[0] != os.getpid() or _redis[1] != url:
        import redis

        _redis = (os.getpid(), url, redis.Redis.from_url(url))
    return _redis[2]


def _count(key: str, period: int) -> int:
    """This request's number in its window: one round trip to Redis (INCR and a first-time EXPIRE, pipelined)."""
    cache = caches["throttle"]
    if isinstance(cache, RedisCache):
        full_key = cache.make_key(key)
        pipe = _redis_client(settings.CACHES["throttle"]["LOCATION"]).pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, period + 1, nx=True)
        count, _ = pipe.execute()
        return int(count)
    try:
        return cache.incr(key)
    except ValueError:  # the window's first request
        return 1 if cache.add(key, 1, timeout=period + 1) else cache.incr(key)


class ClientRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        limit = rate_limit()
        if limit is None:
            return True
        allowed, period = limit
        now = time.time()
        window = int(now // period)
        count = _count(f"{client_key(request)}:{period}:{window}", period)
        self._wait = (window + 1) * period - now
        return count <= allowed

    def wait(self) -> float | None:
        return max(1.0, self._wait)
