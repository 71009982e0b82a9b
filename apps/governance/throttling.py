"""Fair use: a per-client request budget for the scoring endpoints, in fixed windows.

The client is the API token, else the signed-in user, else the remote address. The budget is a counter per
client and window in the "throttle" cache: with Redis, shared by every process (INCRBY and the window's
EXPIRE in one round trip, on a connection pool kept per process); without Redis, each process counts for
itself. Processes take requests from it in small leases (`_Budgets`). A client over budget gets 429 with
Retry-After: the seconds until its window ends.
"""

import os
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from rest_framework.throttling import BaseThrottle

from apps.governance.models import ApiToken

PERIODS = {"second": 1, "minute": 60, "hour": 3600}
LEASE_MAX = 50
MAX_CLIENTS_HELD = 10_000


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


def _add(key: str, amount: int, period: int) -> int:
    """Add `amount` to the window's shared counter; its new value. With Redis one round trip (INCRBY and a
    first-time EXPIRE, pipelined)."""
    cache = caches["throttle"]
    if isinstance(cache, RedisCache):
        full_key = cache.make_key(key)
        pipe = _redis_client(settings.CACHES["throttle"]["LOCATION"]).pipeline(transaction=False)
        pipe.incrby(full_key, amount)
        pipe.expire(full_key, period + 1, nx=True)
        count, _ = pipe.execute()
        return int(count)
    try:
        return cache.incr(key, amount)
    except ValueError:  # the window's first request
        return amount if cache.add(key, amount, timeout=period + 1) else cache.incr(key, amount)


def lease_size(allowed: int) -> int:
    """Requests a process takes from the shared budget at once: a thousandth of it, 1 to LEASE_MAX."""
    return max(1, min(LEASE_MAX, allowed // 1000))


class _Budgets:
    """What this process holds of each client's budget in the current window.

    A process takes `lease_size` requests at a time from the shared counter and spends them locally, so a
    busy client costs one round trip to Redis per lease rather than per request. The shared counter
    never hands out more than the budget, so no client gets more than its limit; a client spread over
    several processes may be refused up to (processes - 1) x lease requests early, which is at most a
    thousandth of its budget per process. Once the shared counter is spent, the client is refused locally
    until its window ends (a fixed window only fills up)."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, int]] = {}  # key -> (window, requests left; -1: refused)
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._held.clear()

    def take(self, client: str, window: int, allowed: int, period: int) -> bool:
        """Whether the client may make one more request in this window."""
        key = f"{client}:{period}"
        with self._lock:
            held = self._held.get(key)
            if held is not None and held[0] == window:
                if held[1] > 0:
                    self._held[key] = (window, held[1] - 1)
                    return True
                if held[1] < 0:
                    return False
        lease = lease_size(allowed)
        total = _add(f"{key}:{window}", lease, period)
        granted = max(0, min(total, allowed) - (total - lease))
        with self._lock:
            if len(self._held) > MAX_CLIENTS_HELD:
                self._held = {k: v for k, v in self._held.items() if v[0] == window}
            self._held[key] = (window, granted - 1 if granted else -1)
        return granted > 0


budgets = _Budgets()


class ClientRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        limit = rate_limit()
        if limit is None:
            return True
        allowed, period = limit
        now = time.time()
        window = int(now // period)
        self._wait = (window + 1) * period - now
        return budgets.take(client_key(request), window, allowed, period)

    def wait(self) -> float | None:
        return max(1.0, self._wait)
