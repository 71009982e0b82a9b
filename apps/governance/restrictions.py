"""Which data subjects no decision may be made about (a restriction or an upheld objection in force), as each
process sees it: the set of their digests, read again from the database at most every FARO_ALIAS_TTL_SECONDS, so
lifting or imposing one reaches every worker as quickly as a promotion does. With none in force a check costs
one comparison."""

import threading
import time
from collections.abc import Sequence

from django.conf import settings

from apps.core.personal_data import subject_digest, subject_key
from apps.governance.models import SubjectRestriction


class RestrictionCache:
    def __init__(self) -> None:
        self._digests: frozenset[str] = frozenset()
        self._expires = 0.0
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._expires = 0.0

    def digests(self) -> frozenset[str]:
        now = time.monotonic()
        if now >= self._expires:
            found = frozenset(
                SubjectRestriction.objects.filter(lifted_at=None).values_list("subject_digest", flat=True)
            )
            with self._lock:
                self._digests, self._expires = found, now + settings.FARO_ALIAS_TTL_SECONDS
        return self._digests

    def restricted_rows(self, subject_ids: Sequence[str]) -> list[int]:
        """The indexes of the rows whose subject key is restricted (empty keys never are)."""
        digests = self.digests()
        if not digests:
            return []
        key = subject_key()
        return [
            index
            for index, subject_id in enumerate(subject_ids)
            if subject_id and subject_digest(subject_id, key=key) in digests
        ]


restriction_cache = RestrictionCache()
