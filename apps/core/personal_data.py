"""The personal-data handler registry: how access requests and erasure reach every store that holds data about a
person, without governance importing the apps that own those stores.

Each app that stores data about a data subject registers one `Handler` per store in its `AppConfig.ready()`.
Governance asks every handler, in `order`, for its `targets` (the units an erasure goes through: a dataset version,
a batch output, the decision log...), records one ledger step per target, and calls `erase` for each step still
to do; `export` gives the rows an access request returns.

A `Subject` is known by its raw key (`value`) while a request is being handled, and afterwards only by `digest`
(a keyed HMAC): the erasure journal and `gdpr_replay` work from digests alone, so handlers find a subject either
way through `Subject.pick` and `Subject.mask`.

Erasure steps must be idempotent: a step interrupted anywhere is run again from the start. A step that commits
its change and then has more to do (removing a superseded file) saves what it needs through `StepState.save`
inside the transaction of its change, and finds it again in `StepState.data` when it is resumed.
"""

import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

DIGEST_PURPOSE = b"faro data subject\x1f"


def subject_key() -> bytes:
    """FARO_PSEUDONYM_KEY, else one derived from SECRET_KEY for this purpose only."""
    if settings.FARO_PSEUDONYM_KEY:
        return settings.FARO_PSEUDONYM_KEY.encode()
    return hashlib.sha256(b"faro-subject-digest\x1f" + settings.SECRET_KEY.encode()).digest()


def subject_digest(value: str, *, key: bytes | None = None) -> str:
    """The keyed digest a subject is known by once its raw key is gone (64 hex digits)."""
    return hmac.new(key or subject_key(), DIGEST_PURPOSE + str(value).encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Subject:
    """A data subject: `digest` always, `value` (the raw subject key) while a request is live."""

    digest: str
    value: str | None = None

    @classmethod
    def of(cls, value: str) -> "Subject":
        return cls(digest=subject_digest(value), value=str(value))

    @property
    def ref(self) -> str:
        """A pseudonymous reference for logs and the audit chain."""
        return f"subject:{self.digest[:16]}"

    def pick(self, candidates: Iterable[Any]) -> list[str]:
        """Those of `candidates` (subject keys as stored) that are this subject: with the raw key a comparison,
        with the digest alone one HMAC per distinct candidate."""
        if self.value is not None:
            return [self.value] if any(str(candidate) == self.value for candidate in candidates) else []
        key = subject_key()
        return sorted({str(c) for c in candidates if subject_digest(str(c), key=key) == self.digest})

    def mask(self, column: Any) -> Any:
        """A boolean Arrow array: which values of the Arrow `column` are this subject (cast to text first)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        text = column if pa.types.is_string(column.type) else pc.cast(column, pa.string())
        if self.value is not None:
            return pc.fill_null(pc.equal(text, pa.scalar(self.value)), False)
        matches = self.pick(pc.unique(pc.drop_null(text)).to_pylist())
        return pc.fill_null(pc.is_in(text, value_set=pa.array(matches, pa.string())), False)


@dataclass
class StepResult:
    """What one erasure step did: items removed, a hash of the store's content before and after (a file's SHA-256,
    or a digest of the rows about the subject), and anything a receipt should show."""

    count: int
    before: str = ""
    after: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepState:
    """A step's saved progress. `save` persists `data` with the ledger step, in the caller's transaction."""

    data: dict[str, Any]
    save: Callable[[dict[str, Any]], None]


class Handler(Protocol):
    store: str  # a stable name, e.g. "data.dataset_version"; ledger steps and receipts are keyed by it
    label: str  # what a receipt calls the store, e.g. "Dataset versions (Parquet files)"
    order: int  # lower runs first: stores whose erasure others depend on come first

    def targets(self, subject: Subject) -> list[str]: ...

    def erase(self, subject: Subject, target: str, state: StepState) -> StepResult: ...

    def export(self, subject: Subject) -> list[dict[str, Any]]: ...


_handlers: dict[str, Handler] = {}


def register(handler: Handler) -> None:
    """Add a store's handler (from an AppConfig.ready(); registering the same store again replaces it)."""
    _handlers[handler.store] = handler


def handlers() -> list[Handler]:
    return sorted(_handlers.values(), key=lambda handler: (handler.order, handler.store))


def handler_get(store: str) -> Handler:
    return _handlers[store]


def rows_digest(keys: Iterable[Any]) -> str:
    """A stable SHA-256 of a set of row keys: a database store's "hash before/after" in a receipt."""
    text = "\n".join(sorted(str(key) for key in keys))
    return hashlib.sha256(text.encode()).hexdigest()


def redact(value: Any, secret: str, replacement: str = "[erased]") -> tuple[Any, int]:
    """`value` (JSON) with `secret` replaced wherever a string holds it or a number equals it, and how many
    strings and numbers were changed."""
    if isinstance(value, dict):
        pairs = [(redact(k, secret, replacement), redact(v, secret, replacement)) for k, v in value.items()]
        return {k: v for (k, _), (v, _) in pairs}, sum(a + b for (_, a), (_, b) in pairs)
    if isinstance(value, list):
        items = [redact(item, secret, replacement) for item in value]
        return [item for item, _ in items], sum(count for _, count in items)
    if isinstance(value, bool) or value is None:
        return value, 0
    if isinstance(value, str) and secret and secret in value:
        return value.replace(secret, replacement), 1
    if isinstance(value, (int, float)) and str(value) == secret:
        return replacement, 1
    return value, 0
