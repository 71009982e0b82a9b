"""Writing the decision log: the rows of one request at once, without the ORM.

This is on every prediction's path, so it skips what the ORM adds per row (model instances, per-field
preparation, JSON through the standard library): the values shared by a request are prepared once by
their fields, and the JSON columns are encoded with orjson. Up to MULTI_ROW_INSERT rows are one INSERT
with a row of VALUES each; more are streamed with COPY on PostgreSQL (several times faster than INSERT for
1000 rows) and inserted one by one in a transaction elsewhere. Either way a request's rows are written
atomically (all, or none and the caller sees the error) and committed before the caller answers, so an
acknowledged decision is as durable as the database's commit.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import orjson
from django.db import connections, transaction
from django.utils import timezone

from apps.predictions.models import PredictionRecord

MULTI_ROW_INSERT = 50  # rows; beyond, COPY on PostgreSQL, one prepared INSERT per row in a transaction elsewhere
_SHARED = ("request_id", "model_version_id", "route", "channel", "client", "latency_ms", "created_at")
_PER_ROW = ("row", "subject_id", "inputs", "output", "explanation")
_JSON_COLUMNS = frozenset({"inputs", "output", "explanation"})
COLUMNS = _SHARED + _PER_ROW


@dataclass(frozen=True)
class Decision:
    """One scored row of a request."""

    row: int
    subject_id: str
    inputs: dict[str, Any]
    output: dict[str, Any]
    explanation: dict[str, Any] | None = None


def json_text(value: Any) -> str | None:
    """A JSON column's text; None stays SQL NULL. orjson refuses integers beyond 64 bits, which a client may
    send in its inputs: those values go through the standard library instead."""
    if value is None:
        return None
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(value, allow_nan=False)


@cache
def _statement(vendor: str, table: str, rows: int) -> str:
    cast = "::jsonb" if vendor == "postgresql" else ""
    placeholders = ", ".join(f"%s{cast}" if column in _JSON_COLUMNS else "%s" for column in COLUMNS)
    values = ", ".join([f"({placeholders})"] * rows)
    return f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES {values}"  # nosec B608 # quoted table, constant columns


def decisions_write(
    decisions: Sequence[Decision],
    *,
    request_id: uuid.UUID,
    model_version_id: int,
    route: str,
    channel: str,
    client: str,
    latency_ms: float | None,
    created_at: datetime | None = None,
    using: str = "default",
) -> None:
    """Log the decisions of one request, all or none. Raises IntegrityError when the request id already has a
    decision for one of these rows from this version (nothing is written then)."""
    if not decisions:
        return
    connection = connections[using]
    meta = PredictionRecord._meta
    shared = (
        meta.get_field("request_id").get_db_prep_save(request_id, connection),
        model_version_id,
        route,
        channel,
        client,
        latency_ms,
        meta.get_field("created_at").get_db_prep_save(created_at or timezone.now(), connection),
    )
    rows = [
        (
            *shared,
            decision.row,
            decision.subject_id,
            json_text(decision.inputs),
            json_text(decision.output),
            json_text(decision.explanation),
        )
        for decision in decisions
    ]
    table = connection.ops.quote_name(meta.db_table)
    # One statement is atomic by itself; several (one INSERT per row) need a transaction. Inside a caller's
    # transaction, a savepoint keeps a refused write from aborting the caller's.
    one_statement = len(rows) <= MULTI_ROW_INSERT or connection.vendor == "postgresql"
    scope = (
        transaction.atomic(using=using) if connection.in_atomic_block or not one_statement else contextlib.nullcontext()
    )
    with scope:
        if len(rows) <= MULTI_ROW_INSERT:
            params = [value for row in rows for value in row]
            statement = _statement(connection.vendor, table, len(rows))
            if connection.vendor == "postgresql":
                _insert_prepared(connection, statement, params)
            else:
                with connection.cursor() as cursor:
                    cursor.execute(statement, params)
        elif connection.vendor == "postgresql":
            _copy(connection, table, rows)
        else:
            with connection.cursor() as cursor:
                cursor.executemany(_statement(connection.vendor, table, 1), rows)


def _insert_prepared(connection, statement: str, params: list) -> None:
    """The INSERT with its values bound by the server (Django binds them into the SQL text on the client),
    so psycopg prepares it once per connection and later requests only send the values. A connection set
    up for a pooler that cannot keep prepared statements (OPTIONS prepare_threshold: None) is not asked to."""
    import psycopg

    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cursor:
        _through_wrappers(
            connection, cursor, statement, params, many=False, run=lambda sql, values: cursor.execute(sql, values)
        )


def _copy(connection, table: str, rows: list[tuple]) -> None:
    def run(sql: str, values: list[tuple]) -> None:
        with cursor.cursor.copy(sql) as copy:
            for row in values:
                copy.write_row(row)

    copy_sql = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"
    with connection.cursor() as cursor, connection.wrap_database_errors:
        _through_wrappers(connection, cursor, copy_sql, rows, many=True, run=run)


def _through_wrappers(connection, cursor, sql: str, params: list, *, many: bool, run: Callable) -> None:
    """Run a statement that bypasses Django's cursor as Django runs its own: through the execute wrappers
    (`connection.execute_wrapper`, what instrumentation hooks into), and logged when Django logs queries
    (DEBUG, or a test capturing them). A COPY is seen as an executemany of its rows."""
    started = time.monotonic()

    def execute(sql, params, many, context):
        return run(sql, params)

    for wrapper in reversed(connection.execute_wrappers):
        execute = functools.partial(wrapper, execute)
    execute(sql, params, many, {"connection": connection, "cursor": cursor})
    if connection.queries_logged:
        shown = f"{sql} -- {len(params)} rows" if many else sql
        connection.queries_log.append({"sql": shown, "time": f"{time.monotonic() - started:.3f}"})
