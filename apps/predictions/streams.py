"""Event-stream scoring: requests read from a stream through a consumer group, results written to another.

At least once, logged once. A message is acknowledged only after its decision is in the decision log and its
result is on the output stream, so a consumer that dies at any point leaves it pending, and a live consumer
claims it once it has been idle for `claim_idle_ms`. Redelivery is harmless: `prediction_make` answers a
request id it has already logged with the logged decision, without scoring or logging again. A result may
therefore be published more than once (identical each time); readers keep one per request id.

Bad input never stops the consumer: a malformed message, an unknown model or refused rows get an error
result (the API's one error body, `{"message", "extra"}`, naming each field) and are acknowledged. A transient
failure (the database or the broker unreachable, a model that cannot be served now) acknowledges nothing:
the consumer backs off, then reads its own pending messages again before taking new ones (for as long as
the database or broker is down; a few times only for a model that cannot be served, then it answers).

The broker sits behind `StreamAdapter`; `RedisStreamAdapter` speaks Redis Streams (XREADGROUP, XAUTOCLAIM,
XADD, XACK). `StreamScorer` is the loop, `manage.py score_stream` runs it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, ProgrammingError, close_old_connections
from prometheus_client import Counter

from apps.core.errors import FaroError, InvalidInput, PayloadTooLarge
from apps.predictions.models import PredictionRecord
from apps.predictions.services import PredictionResult, prediction_make

logger = logging.getLogger(__name__)

STREAM_MESSAGES = Counter(
    "faro_stream_messages",
    "Stream messages answered (result published, then acknowledged), by input stream and status "
    "(ok, invalid, not_found, conflict, too_large, unavailable, error).",
    ["stream", "status"],
)
STREAM_FAILURES = Counter(
    "faro_stream_failures",
    "Transient failures of a stream consumer, after which nothing was acknowledged and the messages are "
    "delivered again, by input stream and reason (database, unavailable, broker).",
    ["stream", "reason"],
)
STREAM_CLAIMED = Counter(
    "faro_stream_claimed",
    "Pending messages taken over from a consumer that left them idle for longer than the claim time.",
    ["stream"],
)

FIELDS = ("request_id", "model", "alias", "version", "inputs", "explain")
ECHO_CHARS = 200
MAX_UNKNOWN_NAMED = 20  # a message with thousands of unknown fields gets an error of bounded size
# Errors of the infrastructure, not of the message: retried, never answered. ProgrammingError is here because
# a schema that does not match the code (deployed before migrating) fails every message alike.
TRANSIENT_DATABASE_ERRORS = (OperationalError, InterfaceError, ProgrammingError)
TRANSIENT_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_STATUS_BY_CODE = {400: "invalid", 404: "not_found", 409: "conflict", 413: "too_large"}


# -- the broker ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamMessage:
    """One delivered message: the broker's id for it (what `ack` takes) and its fields, as text or bytes.
    Empty `fields`: the entry was deleted from the stream while it was pending; there is nothing to answer."""

    id: str
    fields: Mapping[str, str | bytes]


class StreamUnavailable(Exception):
    """The broker did not answer (refused, timed out, dropped the connection)."""


class StreamAdapter(ABC):
    """One consumer of an input stream in a consumer group, and the producer of the results.

    An adapter is bound to its streams, group and consumer when it is made, as Kafka's consumers are. Every
    method raises `StreamUnavailable` when the broker cannot be reached; any other error is a bug or a
    misconfiguration and stops the consumer.
    """

    #: The input stream's name: the decision log's client is "stream:<source>".
    source: str

    @abstractmethod
    def setup(self) -> None:
        """Create the consumer group (and the input stream) if missing."""

    @abstractmethod
    def read(self, *, count: int, block_ms: int) -> list[StreamMessage]:
        """Up to `count` messages never delivered to the group, waiting up to `block_ms` for the first."""

    @abstractmethod
    def read_pending(self, *, count: int) -> list[StreamMessage]:
        """Up to `count` of the messages delivered to this consumer and not acknowledged, oldest first."""

    @abstractmethod
    def claim_stale(self, *, min_idle_ms: int, count: int) -> list[StreamMessage]:
        """Take over up to `count` messages that any consumer of the group was given and left unacknowledged
        for at least `min_idle_ms` (it died, or hangs); they are this consumer's from now on."""

    @abstractmethod
    def publish(self, results: Sequence[Mapping[str, str]]) -> None:
        """Append `results` to the output stream, in order; return only once the broker has them."""

    @abstractmethod
    def ack(self, message_ids: Sequence[str]) -> None:
        """Acknowledge the messages: they are done and will not be delivered again."""

    def close(self) -> None:  # noqa: B027 - optional: most adapters have something to release, not all
        """Release the connection."""


class RedisStreamAdapter(StreamAdapter):
    """Redis Streams: XREADGROUP for new (`>`) and own pending (`0`) messages, XAUTOCLAIM, XADD, XACK.

    A new group starts at the beginning of the stream (id 0), so requests written before the first consumer
    ran are scored too. `output_maxlen` trims the output stream approximately (XADD MAXLEN ~).
    """

    CLAIM_SCANS = 10  # XAUTOCLAIM calls per claim_stale, each looking at up to 10 times count entries

    def __init__(
        self,
        client: redis.Redis,
        *,
        input_stream: str,
        output_stream: str,
        group: str,
        consumer: str,
        output_maxlen: int | None = None,
    ) -> None:
        self.client = client
        self.source = input_stream
        self.input_stream = input_stream
        self.output_stream = output_stream
        self.group = group
        self.consumer = consumer
        self.output_maxlen = output_maxlen
        self._claim_cursor = "0-0"

    @classmethod
    def from_url(cls, url: str, *, block_ms: int, **kwargs: Any) -> RedisStreamAdapter:
        # The socket must outwait a blocking read, or every idle XREADGROUP would end in a timeout.
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=block_ms / 1000 + 10)
        return cls(client, **kwargs)

    @contextmanager
    def _broker(self) -> Iterator[None]:
        try:
            yield
        except TRANSIENT_REDIS_ERRORS as exc:
            raise StreamUnavailable(f"Redis: {exc}") from exc

    def setup(self) -> None:
        with self._broker():
            try:
                self.client.xgroup_create(self.input_stream, self.group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if not str(exc).startswith("BUSYGROUP"):
                    raise

    def read(self, *, count: int, block_ms: int) -> list[StreamMessage]:
        with self._broker():
            try:
                reply = self.client.xreadgroup(
                    self.group, self.consumer, {self.input_stream: ">"}, count=count, block=block_ms
                )
            except redis.ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                # The stream (and its group with it) was deleted while we ran: start again on a new one.
                logger.warning("Stream %s or its group %s vanished; creating them again", self.source, self.group)
                self.setup()
                return []
        return self._messages(reply)

    def read_pending(self, *, count: int) -> list[StreamMessage]:
        with self._broker():
            try:
                reply = self.client.xreadgroup(self.group, self.consumer, {self.input_stream: "0"}, count=count)
            except redis.ResponseError as exc:
                if not str(exc).startswith("NOGROUP"):
                    raise
                return []  # no group, nothing pending; `read` creates it again
        return self._messages(reply)

    def claim_stale(self, *, min_idle_ms: int, count: int) -> list[StreamMessage]:
        claimed: list[StreamMessage] = []
        with self._broker():
            for _ in range(self.CLAIM_SCANS):
                try:
                    cursor, entries, *_deleted = self.client.xautoclaim(
                        self.input_stream,
                        self.group,
                        self.consumer,
                        min_idle_time=min_idle_ms,
                        start_id=self._claim_cursor,
                        count=count - len(claimed),
                    )
                except redis.ResponseError as exc:
                    if not str(exc).startswith("NOGROUP"):
                        raise
                    return claimed
                self._claim_cursor = _text(cursor)
                claimed.extend(_entries(entries))
                if self._claim_cursor == "0-0" or len(claimed) >= count:
                    break
        return claimed

    def publish(self, results: Sequence[Mapping[str, str]]) -> None:
        with self._broker():
            pipeline = self.client.pipeline(transaction=False)
            for result in results:
                pipeline.xadd(self.output_stream, dict(result), maxlen=self.output_maxlen, approximate=True)
            pipeline.execute()

    def ack(self, message_ids: Sequence[str]) -> None:
        if message_ids:
            with self._broker():
                self.client.xack(self.input_stream, self.group, *message_ids)

    def close(self) -> None:
        self.client.close()

    def _messages(self, reply: Any) -> list[StreamMessage]:
        if not reply:
            return []
        if isinstance(reply, dict):  # RESP3
            return [message for entries in reply.values() for message in _entries(entries[0] if entries else [])]
        return [message for _stream, entries in reply for message in _entries(entries)]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entries(entries: Any) -> list[StreamMessage]:
    return [
        StreamMessage(id=_text(entry_id), fields={_text_lenient(k): v for k, v in (fields or {}).items()})
        for entry_id, fields in entries
    ]


def _text_lenient(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


# -- the message ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamRequest:
    request_id: uuid.UUID
    model: str
    rows: list[Any]
    alias: str | None = None
    version: int | None = None
    explain: bool = False


def stream_request_decode(fields: Mapping[str, str | bytes], *, max_bytes: int) -> StreamRequest:
    """A message's fields as a request, or InvalidInput naming every bad field (PayloadTooLarge for
    `inputs` over `max_bytes`). `inputs` is JSON: one row object, or a list of them."""
    problems: dict[str, list[str]] = {}
    values: dict[str, str] = {}
    unknown = sorted(key for key in fields if key not in FIELDS)
    for key in unknown[:MAX_UNKNOWN_NAMED]:
        problems[key[:ECHO_CHARS]] = ["Unknown field."]
    for key in FIELDS:
        if key not in fields:
            continue
        raw = fields[key]
        if key == "inputs":
            size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", errors="surrogatepass"))
            if size > max_bytes:
                raise PayloadTooLarge(
                    f"'inputs' is {size} bytes; the limit is {max_bytes} (FARO_PREDICT_MAX_BODY_BYTES).",
                    extra={"fields": {"inputs": [f"At most {max_bytes} bytes."]}},
                )
        try:
            values[key] = raw.decode() if isinstance(raw, bytes) else raw
        except UnicodeDecodeError:
            problems[key] = ["Must be UTF-8 text."]

    request_id = None
    if "request_id" in values:
        try:
            request_id = uuid.UUID(values["request_id"])
        except ValueError:
            problems["request_id"] = ["Must be a UUID."]
    elif "request_id" not in problems:
        problems["request_id"] = ["This field is required."]

    model = values.get("model")
    if model is None and "model" not in problems:
        problems["model"] = ["This field is required."]
    elif model is not None and not model.strip():
        problems["model"] = ["Must not be blank."]

    alias = values.get("alias")
    if alias is not None and not alias.strip():
        problems["alias"] = ["Must not be blank."]
    version = None
    if "version" in values:
        if re.fullmatch(r"[0-9]{1,9}", values["version"]) and int(values["version"]) > 0:
            version = int(values["version"])
        else:
            problems["version"] = ["Must be a positive integer."]
    if "alias" in fields and "version" in fields:
        problems["version"] = ["Give an alias or a version, not both."]

    explain = False
    if "explain" in values:
        if values["explain"] not in ("true", "false"):
            problems["explain"] = ["Must be true or false."]
        explain = values["explain"] == "true"

    rows: list[Any] = []
    if "inputs" in values:
        try:
            inputs = orjson.loads(values["inputs"])
        except orjson.JSONDecodeError as exc:
            problems["inputs"] = [f"Malformed JSON: {exc}"]
        else:
            if isinstance(inputs, dict):
                rows = [inputs]
            elif isinstance(inputs, list):
                rows = inputs
            else:
                problems["inputs"] = ["Must be a JSON object (one row) or a list of row objects."]
    elif "inputs" not in problems:
        problems["inputs"] = ["This field is required."]

    if problems:
        raise InvalidInput("Invalid message.", extra={"fields": dict(sorted(problems.items()))})
    assert request_id is not None and model is not None
    return StreamRequest(request_id=request_id, model=model, rows=rows, alias=alias, version=version, explain=explain)


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str).decode()


def _echo(fields: Mapping[str, str | bytes], key: str) -> str:
    """What the message sent in `key`, as text a result can carry (invalid UTF-8 replaced, cut short)."""
    value = fields.get(key, "")
    text = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    if key == "request_id":
        try:
            return str(uuid.UUID(text))
        except ValueError:
            pass
    return text[:ECHO_CHARS]


def result_ok(message: StreamMessage, result: PredictionResult, *, explain: bool) -> dict[str, str]:
    fields = {
        "request_id": result.request_id,
        "message_id": message.id,
        "status": "ok",
        "model": result.model.model_name,
        "version": str(result.model.version),
        "outputs": _json(result.outputs),
    }
    if explain and result.explanations is not None:
        fields["explanations"] = _json(result.explanations)
    return fields


def result_error(message: StreamMessage, *, text: str, extra: Mapping[str, Any]) -> dict[str, str]:
    return {
        "request_id": _echo(message.fields, "request_id"),
        "message_id": message.id,
        "status": "error",
        "model": _echo(message.fields, "model"),
        "version": _echo(message.fields, "version"),
        "error": _json({"message": text, "extra": dict(extra)}),
    }


# -- the loop ------------------------------------------------------------------------------------------------


class TransientFailure(Exception):
    """Scoring a message failed for a reason that is not the message's: try it again later."""

    def __init__(self, reason: str, cause: BaseException) -> None:
        super().__init__(f"{reason}: {type(cause).__name__}: {cause}")
        self.reason = reason


@dataclass
class StreamTally:
    """What a run did. `answered` = `ok` + `errors`: results published and messages acknowledged."""

    answered: int = 0
    ok: int = 0
    errors: int = 0
    failures: int = 0
    claimed: int = 0


class StreamScorer:
    """Answer the messages of `adapter`'s input stream until `stop()` or `max_messages` answered.

    Each turn: this consumer's own pending messages while there are any (at start, and after a transient
    failure); else messages stale for `claim_idle_ms` at other consumers (looked for every half of that, at
    most every 30 s); else new ones. Within a batch, messages are answered in order; the answered ones are
    published, then acknowledged. A transient failure ends the batch there: the rest stay pending, and the
    consumer waits (doubling from `backoff_seconds` up to `max_backoff_seconds`) before reading them again.
    The database or the broker unreachable is retried for as long as it lasts (every message would fail
    alike); a model that cannot be served, `unavailable_attempts` times, then answered with the error.
    """

    def __init__(
        self,
        adapter: StreamAdapter,
        *,
        batch_size: int = 10,
        block_ms: int = 2000,
        claim_idle_ms: int = 60_000,
        max_messages: int | None = None,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        unavailable_attempts: int = 5,
    ) -> None:
        self.adapter = adapter
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_interval = min(claim_idle_ms / 2000, 30.0)
        self.max_messages = max_messages
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.unavailable_attempts = unavailable_attempts
        self._attempts: dict[str, int] = {}  # message id -> attempts that found its model unavailable
        self.client = f"stream:{adapter.source}"[: PredictionRecord._meta.get_field("client").max_length]
        self.tally = StreamTally()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Finish the batch in hand (answer, publish, acknowledge), then return from `run`."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> StreamTally:
        own_pending = True  # a consumer restarted under the same name finishes what it was given first
        next_claim = 0.0
        backoff = self.backoff_seconds
        while not self._stopping.is_set():
            count = self.batch_size
            if self.max_messages is not None:
                count = min(count, self.max_messages - self.tally.answered)
                if count <= 0:
                    break
            # Between batches, as between requests: drop a connection that broke or outlived CONN_MAX_AGE.
            close_old_connections()
            try:
                if own_pending:
                    messages = self.adapter.read_pending(count=count)
                    if not messages:
                        own_pending = False
                        continue
                else:
                    messages = []
                    if time.monotonic() >= next_claim:
                        messages = self.adapter.claim_stale(min_idle_ms=self.claim_idle_ms, count=count)
                        if messages:
                            self.tally.claimed += len(messages)
                            STREAM_CLAIMED.labels(stream=self.adapter.source).inc(len(messages))
                            logger.info("Claimed %d stale message(s) of %s", len(messages), self.adapter.source)
                        if len(messages) < count:  # else a full batch: there may be more, look again at once
                            next_claim = time.monotonic() + self.claim_interval
                    if not messages:
                        messages = self.adapter.read(count=count, block_ms=self.block_ms)
                complete = self._answer_batch(messages) if messages else True
            except StreamUnavailable as exc:
                self._failed("broker", exc)
                complete = False
            if complete:
                backoff = self.backoff_seconds
                continue
            own_pending = True
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_seconds)
        return self.tally

    def _failed(self, reason: str, exc: BaseException) -> None:
        self.tally.failures += 1
        STREAM_FAILURES.labels(stream=self.adapter.source, reason=reason).inc()
        logger.warning("Stream %s: transient failure (%s), nothing acknowledged: %s", self.adapter.source, reason, exc)

    def _answer_batch(self, messages: list[StreamMessage]) -> bool:
        """Answer `messages` in order, publish the results, acknowledge. False if a transient failure
        stopped the batch: that message and the rest stay pending."""
        answered: list[StreamMessage] = []
        results: list[dict[str, str]] = []
        statuses: list[str] = []
        complete = True
        for message in messages:
            if not message.fields:
                logger.warning("Stream %s: message %s was deleted while pending", self.adapter.source, message.id)
                answered.append(message)
                continue
            try:
                result, status = self._answer(message)
            except TransientFailure as exc:
                self._failed(exc.reason, exc)
                complete = False
                break
            self._attempts.pop(message.id, None)
            answered.append(message)
            results.append(result)
            statuses.append(status)
        if results:
            self.adapter.publish(results)
        if answered:
            self.adapter.ack([message.id for message in answered])
        for status in statuses:
            STREAM_MESSAGES.labels(stream=self.adapter.source, status=status).inc()
            if status == "ok":
                self.tally.ok += 1
            else:
                self.tally.errors += 1
        self.tally.answered += len(statuses)
        return complete

    def _answer(self, message: StreamMessage) -> tuple[dict[str, str], str]:
        """The result for one message and its status, or TransientFailure (nothing to publish yet)."""
        try:
            request = stream_request_decode(message.fields, max_bytes=settings.FARO_PREDICT_MAX_BODY_BYTES)
            result = prediction_make(
                model_name=request.model,
                rows=request.rows,
                alias=request.alias,
                version=request.version,
                explain=request.explain,
                channel=PredictionRecord.Channel.STREAM,
                client=self.client,
                request_id=request.request_id,
            )
        except TRANSIENT_DATABASE_ERRORS as exc:
            raise TransientFailure("database", exc) from exc
        except TRANSIENT_REDIS_ERRORS as exc:
            return self._unavailable(message, exc, text=f"Redis is unavailable: {exc}")
        except FaroError as exc:
            if exc.status_code >= 500:
                return self._unavailable(message, exc, text=exc.message, extra=exc.extra)
            return result_error(message, text=exc.message, extra=exc.extra), _STATUS_BY_CODE.get(
                exc.status_code, "invalid"
            )
        except Exception:
            # A bug, or rows the decision log cannot store: answered as the API answers a 500, so that one
            # message can never hold up the stream.
            logger.exception("Stream %s: message %s could not be scored", self.adapter.source, message.id)
            return result_error(message, text="The request could not be scored (internal error).", extra={}), "error"
        return result_ok(message, result, explain=request.explain), "ok"

    def _unavailable(
        self, message: StreamMessage, exc: Exception, *, text: str, extra: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, str], str]:
        """A model that cannot be served now (artefact unreadable, online store down): retried, but only
        `unavailable_attempts` times in all, since the cause may be one model's and stay until someone acts,
        while the consumer's other models wait behind it. Then the message is answered with the error."""
        attempts = self._attempts.get(message.id, 0) + 1
        if attempts < self.unavailable_attempts:
            self._attempts[message.id] = attempts
            raise TransientFailure("unavailable", exc) from exc
        logger.warning("Stream %s: message %s unavailable after %d attempts", self.adapter.source, message.id, attempts)
        return result_error(message, text=text, extra=extra or {}), "unavailable"
