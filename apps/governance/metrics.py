"""The audit anchor's Prometheus gauges, set by the beat task `governance.audit_anchor` in a Celery worker.

"mostrecent": under PROMETHEUS_MULTIPROC_DIR the web's /metrics reads every process's files and shows the
value written last, whichever worker process wrote it, even after that process exited. A hash cannot be a
gauge's value, and a label holding it would leave one series per anchor behind (prometheus_client cannot
remove a label set in multiprocess mode), so the hash's first 12 hex digits (48 bits, exact in a float) are
the value of a second unlabelled gauge: one series each, always. The full hash is in the log line and the
anchor file.
"""

from prometheus_client import Gauge

HASH_PREFIX_HEX_DIGITS = 12

AUDIT_HEAD_SEQ = Gauge(
    "faro_audit_head_seq",
    "Sequence number of the audit chain's head when it was last anchored.",
    multiprocess_mode="mostrecent",
)
AUDIT_HEAD_HASH_PREFIX = Gauge(
    "faro_audit_head_hash_prefix",
    "The anchored head's hash: its first 12 hex digits as an integer (printf '%012x' gives them back).",
    multiprocess_mode="mostrecent",
)
AUDIT_ANCHOR_TIMESTAMP = Gauge(
    "faro_audit_anchor_timestamp_seconds",
    "When the audit chain's head was last anchored (Unix time).",
    multiprocess_mode="mostrecent",
)


def hash_prefix_value(digest: str) -> int:
    return int(digest[:HASH_PREFIX_HEX_DIGITS], 16)
