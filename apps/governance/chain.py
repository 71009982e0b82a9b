"""The audit hash chain's arithmetic, free of Django, so an auditor can check an export without Faro running.

Each event's `hash` is the SHA-256 of its canonical content: the JSON object of `seq`, `at` (ISO 8601 in UTC,
as Python's `datetime.isoformat()` writes it), `actor`, `action`, `object_type`, `object_id`, `data` and
`prev_hash`, keys sorted at every level, no whitespace, UTF-8 (orjson's output with OPT_SORT_KEYS). The first
event's `prev_hash` is 64 zeros; every later one holds the previous event's hash.

An export (`manage.py audit_export`, or the console's "Export the selected events") holds these fields per
event, with `at` written exactly as it was hashed. To check one offline:

    python -m apps.governance.chain audit.jsonl                  # a whole chain, from event #1
    python -m apps.governance.chain --slice audit-2026-01.csv    # a date range: trusts its first event's link
    python -m apps.governance.chain --anchors anchors.jsonl audit.jsonl

or from Python: `verify_rows(read_export(path))`.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

GENESIS = "0" * 64
FIELDS = ("seq", "at", "actor", "action", "object_type", "object_id", "data", "prev_hash", "hash")


def canonical_at(at: datetime | str) -> str:
    """The event time as it is hashed: ISO 8601 in UTC (a string from an export is normalised the same way)."""
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return at.astimezone(UTC).isoformat()


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    """What an event's hash covers: every field but the hash, `at` written canonically."""
    return {
        "seq": int(row["seq"]),
        "at": canonical_at(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "object_type": row["object_type"],
        "object_id": row["object_id"],
        "data": row["data"],
        "prev_hash": row["prev_hash"],
    }


def event_hash(row: Mapping[str, Any]) -> str:
    """SHA-256 over an event's canonical content and the previous event's hash."""
    canonical = orjson.dumps(
        _content(row),
        option=orjson.OPT_SORT_KEYS,
    )
    return hashlib.sha256(canonical).hexdigest()


@dataclass(frozen=True)
class ChainCheck:
    """The outcome of a walk: `broken_seq` names the first event that is wrong (or missing), `reason` why."""

    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str = ""
    last_seq: int = 0
    last_hash: str = GENESIS


def verify_rows(
    rows: Iterable[Mapping[str, Any]],
    *,
    after: tuple[int, str] | None = (0, GENESIS),
    head: tuple[int, str] | None = None,
    anchors: Mapping[int, str] | None = None,
) -> ChainCheck:
    """Walk `rows` in seq order; name the first whose sequence, link or hash is wrong.

    `after` is the (seq, hash) the first row must follow: the genesis for a whole chain, an anchored or
    previously verified event for a later part, or None to take the first row's link on trust (a slice
    exported by date). `head`, when given, is what the chain's head row records: events removed from the
    end, or a rewritten head, show there. `anchors` maps seq to the hash anchored for it outside the database
    (`audit_anchor`): a chain rewritten consistently after an anchor differs from it at that seq, and a chain
    that no longer reaches an anchored seq lost events.
    """
    last_seq, last_hash = after if after is not None else (0, GENESIS)
    expected_seq, expected_prev = (last_seq + 1, last_hash) if after is not None else (None, None)
    checked = 0
    for row in rows:
        seq = int(row["seq"])
        if expected_seq is None:
            expected_seq, expected_prev = seq, row["prev_hash"]
        if seq != expected_seq:
            return ChainCheck(
                False,
                checked,
                seq,
                f"expected event #{expected_seq}, found #{seq} (events were deleted or inserted)",
                last_seq,
                last_hash,
            )
        if row["prev_hash"] != expected_prev:
            return ChainCheck(
                False, checked, seq, "prev_hash does not match the previous event's hash", last_seq, last_hash
            )
        if event_hash(row) != row["hash"]:
            return ChainCheck(
                False, checked, seq, "content does not match its hash (the row was edited)", last_seq, last_hash
            )
        if anchors and seq in anchors and anchors[seq] != row["hash"]:
            return ChainCheck(
                False,
                checked,
                seq,
                f"its hash differs from the one anchored for #{seq} (the chain was rewritten after it was anchored)",
                last_seq,
                last_hash,
            )
        checked += 1
        last_seq, last_hash = seq, row["hash"]
        expected_seq, expected_prev = seq + 1, row["hash"]
    if head is not None:
        head_seq, head_hash = head
        if head_seq > last_seq:
            return ChainCheck(
                False,
                checked,
                last_seq + 1,
                f"the chain ends at #{last_seq} but its head records #{head_seq} (events were removed from the end)",
                last_seq,
                last_hash,
            )
        if head_seq < last_seq:
            return ChainCheck(
                False,
                checked,
                head_seq + 1,
                f"the head records #{head_seq} but the chain goes on to #{last_seq} (the head was rewritten)",
                last_seq,
                last_hash,
            )
        if head_hash != last_hash:
            return ChainCheck(
                False,
                checked,
                last_seq,
                f"the head's hash does not match event #{last_seq} (the head was rewritten)",
                last_seq,
                last_hash,
            )
    beyond = [seq for seq in (anchors or {}) if seq > last_seq]
    if beyond:
        return ChainCheck(
            False,
            checked,
            last_seq + 1,
            f"the chain ends at #{last_seq} but #{max(beyond)} was anchored (events were removed after it)",
            last_seq,
            last_hash,
        )
    return ChainCheck(True, checked, last_seq=last_seq, last_hash=last_hash)


def anchors_parse(lines: Iterable[str | bytes]) -> dict[int, str]:
    """The anchors of an anchor file (one JSON object per line with `seq` and `hash`), by seq.

    Raises ValueError naming the line when one is malformed, or when two lines anchor different hashes for
    the same seq (the file itself was tampered with). Anchors of the empty chain (seq 0) are skipped.
    """
    anchors: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = orjson.loads(line)
            seq, digest = int(entry["seq"]), str(entry["hash"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"line {number} is not an anchor ({{'seq': ..., 'hash': ...}}): {exc}") from None
        if seq < 0 or len(digest) != 64 or (seq == 0 and digest != GENESIS):
            raise ValueError(f"line {number} is not an anchor: seq {seq}, hash {digest!r}")
        if seq == 0:
            continue
        if anchors.setdefault(seq, digest) != digest:
            raise ValueError(f"line {number} anchors #{seq} with a different hash than an earlier line")
    return anchors


def export_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """One event as exported: the chain's fields, `at` written exactly as it was hashed."""
    return {**_content(row), "hash": row["hash"]}


def write_jsonl(rows: Iterable[Mapping[str, Any]], out: IO[bytes]) -> int:
    """Write one JSON object per event; return how many."""
    count = 0
    for row in rows:
        out.write(orjson.dumps(export_row(row), option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def write_csv(rows: Iterable[Mapping[str, Any]], out: IO[str]) -> int:
    """Write a header and one line per event, `data` as JSON text; return how many events.

    Cells are written exactly as hashed (no spreadsheet-formula escaping, which would break the re-check):
    none starts with text a person typed, since `data` is always a JSON object and the rest is Faro's own.
    """
    writer = csv.DictWriter(out, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        exported = export_row(row)
        exported["data"] = orjson.dumps(exported["data"], option=orjson.OPT_SORT_KEYS).decode()
        writer.writerow(exported)
        count += 1
    return count


def read_export(path: str | Path) -> Iterator[dict[str, Any]]:
    """The events of an export file (.csv, else JSON lines), typed as `verify_rows` expects."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                yield {**row, "seq": int(row["seq"]), "data": orjson.loads(row["data"])}
    else:
        with path.open("rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.governance.chain", description="Verify an exported Faro audit chain offline."
    )
    parser.add_argument("export", help="a file written by `manage.py audit_export` (.jsonl or .csv)")
    parser.add_argument("--slice", action="store_true", help="the export starts later than event #1")
    parser.add_argument("--anchors", help="an anchor file (FARO_AUDIT_ANCHOR_FILE) the chain must still match")
    args = parser.parse_args(argv)
    try:
        rows = list(read_export(args.export))
        anchors = None
        if args.anchors:
            with open(args.anchors, "rb") as handle:
                anchors = anchors_parse(handle)
            # Only the anchors the export covers: an export taken before the newest anchors does not reach them.
            first, last = (int(rows[0]["seq"]), int(rows[-1]["seq"])) if rows else (1, 0)
            anchors = {seq: digest for seq, digest in anchors.items() if first <= seq <= last}
        result = verify_rows(rows, after=None if args.slice else (0, GENESIS), anchors=anchors)
    except (OSError, ValueError) as exc:
        print(f"Cannot check: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:
        print(f"Cannot check: an event lacks the field {exc}", file=sys.stderr)
        return 2
    if result.ok:
        matched = f", {len(anchors)} anchor{'' if len(anchors) == 1 else 's'} matched" if anchors is not None else ""
        print(f"Audit chain intact: {result.checked} events verified, up to #{result.last_seq}{matched}.")
        return 0
    hint = ""
    if not args.slice and rows and result.broken_seq == int(rows[0]["seq"]) != 1:
        hint = " (the export starts after #1: check a date range with --slice)"
    print(f"Audit chain broken at event #{result.broken_seq}: {result.reason}{hint}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
