"""Which version answers a request: the traffic policy of each registered model, as this process sees it.

A process trusts its view of a policy for FARO_ALIAS_TTL_SECONDS, then reads it again (one small query),
so a change reaches every worker within that time without a restart. A request that names no alias or
version goes to the canary with the policy's percentage, else to the champion; with sticky routing the
choice is a hash of the model and the request's subject (or entity) id, so a person keeps the same
version for as long as the canary runs at the same percentage.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from apps.predictions.models import Route, StickyBy, TrafficPolicy

BUCKETS = 10_000


@dataclass(frozen=True)
class Policy:
    revision: int
    canary_version: int | None
    canary_percent: float
    shadow_versions: tuple[int, ...]
    sticky: bool


NO_POLICY = Policy(revision=0, canary_version=None, canary_percent=0.0, shadow_versions=(), sticky=True)


def policy_read(model_name: str) -> Policy:
    found = (
        TrafficPolicy.objects.filter(registered_model__name=model_name)
        .select_related("canary_version")
        .prefetch_related("shadow_versions")
        .first()
    )
    if found is None:
        return NO_POLICY
    return Policy(
        revision=found.revision,
        canary_version=found.canary_version.version if found.canary_version_id else None,
        canary_percent=found.canary_percent,
        shadow_versions=tuple(sorted(version.version for version in found.shadow_versions.all())),
        sticky=found.sticky_by == StickyBy.SUBJECT,
    )


class PolicyCache:
    def __init__(self) -> None:
        self._policies: dict[str, tuple[float, Policy]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._policies.clear()

    def get(self, model_name: str) -> Policy:
        now = time.monotonic()
        cached = self._policies.get(model_name)
        if cached is not None and cached[0] > now:
            return cached[1]
        policy = policy_read(model_name)
        with self._lock:
            self._policies[model_name] = (now + settings.FARO_ALIAS_TTL_SECONDS, policy)
        return policy


policy_cache = PolicyCache()


def bucket(model_name: str, key: str) -> int:
    """A stable bucket in [0, BUCKETS) for a person and a model."""
    digest = hashlib.blake2b(f"{model_name}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def route_choose(policy: Policy, *, model_name: str, sticky_key: str | None) -> str:
    """CANARY or CHAMPION for a request that names no alias or version."""
    if policy.canary_version is None or policy.canary_percent <= 0:
        return Route.CHAMPION
    threshold = policy.canary_percent / 100 * BUCKETS
    drawn = bucket(model_name, sticky_key) if policy.sticky and sticky_key else random.randrange(BUCKETS)
    return Route.CANARY if drawn < threshold else Route.CHAMPION
