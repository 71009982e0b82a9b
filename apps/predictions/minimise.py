"""What of a request's inputs the decision log keeps, by the training dataset's column tags.

Special-category columns (GDPR Art. 9) are dropped; other personal columns are replaced by a keyed
pseudonym (HMAC-SHA256 under FARO_PSEUDONYM_KEY, cut to 16 hex digits), so equal values still compare
equal for monitoring but cannot be read back without the key. The subject key is dropped from the inputs:
the record keeps it as `subject_id`, the one link a data-subject request follows. Columns with no tag
are kept as sent.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable
from typing import Any

import orjson

PERSONAL = "personal"
SPECIAL_CATEGORY = "special_category"
PSEUDONYM_PREFIX = "psn:"


def pseudonym(key: bytes, column: str, value: Any) -> str:
    """A stable pseudonym of `value` in `column`: the same value in another column gets another one."""
    message = column.encode() + b"\x1f" + orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return PSEUDONYM_PREFIX + hmac.new(key, message, hashlib.sha256).hexdigest()[:16]


def minimiser(
    *, column_tags: dict[str, Iterable[str]], subject_key: str | None, key: bytes
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function turning a request row into what the decision log may keep."""
    dropped = {column for column, tags in column_tags.items() if SPECIAL_CATEGORY in tags}
    if subject_key:
        dropped.add(subject_key)
    masked = {column for column, tags in column_tags.items() if PERSONAL in tags} - dropped
    if not dropped and not masked:
        return dict

    def minimise(row: dict[str, Any]) -> dict[str, Any]:
        kept = {}
        for column, value in row.items():
            if column in dropped:
                continue
            kept[column] = pseudonym(key, column, value) if column in masked and value is not None else value
        return kept

    return minimise


def explanation_minimiser(
    *,
    column_tags: dict[str, Iterable[str]],
    subject_key: str | None,
    feature_sources: dict[str, list[str]],
) -> Callable[[Any, dict[str, Any]], Any]:
    """A function turning an explanation into what the decision log may keep, beside inputs minimised by
    `minimiser`.

    A reason quotes the value it was computed from (an age, or a one-hot column named after its value). A
    reason read from a personal column keeps the pseudonym the minimised inputs hold; one read from a
    special-category column, the subject key, or several columns of which one is sensitive, keeps no value.
    Its sentence, which quoted the value, is rewritten without it. `feature_sources` names the columns each
    model feature reads; a feature it does not name reads the column it is named after (a one-hot column
    `city=north` reads `city`).
    """
    sensitive = {column for column, tags in column_tags.items() if {PERSONAL, SPECIAL_CATEGORY} & set(tags)}
    if subject_key:
        sensitive.add(subject_key)
    if not sensitive:
        return lambda explanation, inputs: explanation

    def minimise(explanation: Any, inputs: dict[str, Any]) -> Any:
        if not isinstance(explanation, dict) or not explanation.get("reasons"):
            return explanation
        reasons = []
        for reason in explanation["reasons"]:
            name = str(reason.get("feature", "")).partition("=")[0]
            used = feature_sources.get(name) or [name]
            if not sensitive & set(used):
                reasons.append(reason)
                continue
            kept = inputs.get(used[0]) if len(used) == 1 else None
            direction = "for" if (reason.get("contribution") or 0) > 0 else "against"
            label = reason.get("label") or name
            shown = "pseudonymised" if kept is not None else "value not kept"
            sentence = f"{label} ({shown}) counted {direction} {explanation.get('toward')!r}."
            reasons.append({**reason, "feature": name, "value": kept, "sentence": sentence})
        return {**explanation, "reasons": reasons}

    return minimise
