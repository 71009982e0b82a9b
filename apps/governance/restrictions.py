"""Which data subjects no decision may be made about (a restriction or an upheld objection in force, or an
erasure in progress: nothing new about the person may be written while their data is being erased), as each
process sees it: the set of their digests, read again from the database at most every FARO_ALIAS_TTL_SECONDS, so
lifting or imposing one reaches every worker as quickly as a promotion does. With none in force a check costs
one comparison."""

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

from apps.core.personal_data import subject_digest, subject_key
from apps.governance.models import DataSubjectRequest, SubjectRestriction


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
            restricted = SubjectRestriction.objects.filter(lifted_at=None).values_list("subject_digest", flat=True)
            being_erased = DataSubjectRequest.objects.filter(
                kind=DataSubjectRequest.Kind.ERASURE, status=DataSubjectRequest.Status.IN_PROGRESS
            ).values_list("subject_digest", flat=True)
            found = frozenset(restricted) | frozenset(being_erased)
            with self._lock:
                self._digests, self._expires = found, now + settings.FARO_ALIAS_TTL_SECONDS
        return self._digests

    def restricted_rows(self, subject_ids: Sequence[str]) -> list[int]:
        """The indexes of the rows whose subject key is restricted (empty keys never are)."""
        return _restricted(self.digests(), subject_ids)

    def column_checker(self) -> Callable[[Any], list[int]] | None:
        """For batch scoring: a function giving the restricted rows of an Arrow array of subject keys, checked
        against the restrictions in force now (it reads no database, so scoring threads may call it), or None
        when there are none."""
        digests = self.digests()
        if not digests:
            return None
        return lambda column: _restricted(
            digests, ["" if value is None else str(value) for value in column.to_pylist()]
        )


def _restricted(digests: frozenset[str], subject_ids: Sequence[str]) -> list[int]:
    if not digests:
        return []
    key = subject_key()
    return [
        index
        for index, subject_id in enumerate(subject_ids)
        if subject_id and subject_digest(subject_id, key=key) in digests
    ]


restriction_cache = RestrictionCache()
