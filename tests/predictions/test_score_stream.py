"""Event-stream scoring against the real Redis: what a result says (exactly what /predict says), what a bad
message gets (an error result, acknowledged), and that a request is logged once however often it is
delivered: redelivered, claimed from a dead consumer, or retried after the database was down.

The consumer runs in the test's thread, so the tests use transactional databases (it closes stale
connections between batches, as a worker does) and Django's own execute_wrapper to watch or break queries.
"""

from __future__ import annotations

import io
import os
import threading
import time
import uuid
from dataclasses import dataclass

import orjson
import pytest
import redis
from django.core.management import CommandError, call_command
from django.db import DataError, OperationalError, connection
from prometheus_client import REGISTRY

from apps.predictions.models import PredictionRecord
from apps.predictions.services import prediction_make
from apps.predictions.streams import RedisStreamAdapter, StreamScorer, StreamTally
from tests.conftest import valid_row

# CI's SQLite phase runs without REDIS_URL; the Redis server is there all the same.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
PREDICT_URL = "/api/v1/models/loan-risk/predict"
RUN_TIMEOUT_SECONDS = 60.0

pytestmark = pytest.mark.django_db(transaction=True)


@dataclass(frozen=True)
class Streams:
    input: str
    output: str
    group: str = "scorers"


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def streams(redis_client):
    prefix = f"faro-test:{uuid.uuid4().hex[:16]}"
    made = Streams(input=f"{prefix}:requests", output=f"{prefix}:results")
    yield made
    redis_client.delete(made.input, made.output)


def adapter_for(streams: Streams, consumer: str = "consumer-1") -> RedisStreamAdapter:
    adapter = RedisStreamAdapter.from_url(
        REDIS_URL,
        block_ms=50,
        input_stream=streams.input,
        output_stream=streams.output,
        group=streams.group,
        consumer=consumer,
    )
    adapter.setup()
    return adapter


def score(streams: Streams, *, max_messages: int, consumer: str = "consumer-1", **options) -> StreamTally:
    """Run a consumer until it has answered `max_messages` (failing the test if it hangs)."""
    adapter = adapter_for(streams, consumer)
    scorer = StreamScorer(adapter, block_ms=50, max_messages=max_messages, backoff_seconds=0.01, **options)
    watchdog = threading.Timer(RUN_TIMEOUT_SECONDS, scorer.stop)
    watchdog.start()
    try:
        tally = scorer.run()
    finally:
        watchdog.cancel()
        adapter.close()
    assert tally.answered == max_messages, f"stopped by the watchdog: {tally}"
    return tally


def message(rows, *, request_id: uuid.UUID | None = None, **fields) -> dict[str, str | bytes]:
    return {
        "request_id": str(request_id or uuid.uuid4()),
        "model": "loan-risk",
        "inputs": orjson.dumps(rows).decode(),
        **fields,
    }


def send(redis_client, streams: Streams, fields) -> str:
    return redis_client.xadd(streams.input, fields).decode()


def results(redis_client, streams: Streams) -> list[dict]:
    """The output stream, its JSON fields decoded."""
    found = []
    for _id, fields in redis_client.xrange(streams.output):
        result = {key.decode(): value.decode() for key, value in fields.items()}
        for key in ("outputs", "explanations", "error"):
            if key in result:
                result[key] = orjson.loads(result[key])
        found.append(result)
    return found


def pending(redis_client, streams: Streams) -> list[tuple[str, str, int]]:
    """(message id, consumer, times delivered) of each unacknowledged message."""
    return [
        (item["message_id"].decode(), item["consumer"].decode(), item["times_delivered"])
        for item in redis_client.xpending_range(streams.input, streams.group, "-", "+", 100)
    ]


def wait_until_idle(redis_client, streams: Streams, idle_ms: int, timeout: float = 10.0) -> None:
    """Until every unacknowledged message has been idle (undelivered) for at least `idle_ms`, as Redis counts."""
    deadline = time.monotonic() + timeout
    while True:
        entries = redis_client.xpending_range(streams.input, streams.group, "-", "+", 100)
        if all(item["time_since_delivered"] >= idle_ms for item in entries):
            return
        assert time.monotonic() < deadline, f"messages not idle for {idle_ms} ms within {timeout} s: {entries}"
        time.sleep(0.01)


def counter(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(f"{name}_total", labels) or 0.0


def logged(request_id) -> list[PredictionRecord]:
    return list(PredictionRecord.objects.filter(request_id=request_id).order_by("row"))


@pytest.fixture
def predict_api(api, tokens):
    def call(body, path=PREDICT_URL):
        return api.call("post", path, tokens["predict"], body)

    return call


# -- answers ---------------------------------------------------------------------------------------------------


def test_results_equal_predict_and_decisions_are_logged_with_channel_stream(
    redis_client, streams, champion, predict_api
):
    rows = [valid_row(), valid_row(income=1500.0, city="south"), valid_row(age=70, city="east", customer_id="C0042")]
    api_body = predict_api({"inputs": rows}).json()
    explained = predict_api({"inputs": rows[:1], "explain": True}).json()
    many, one, with_reasons = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    ids = [
        send(redis_client, streams, message(rows, request_id=many)),
        send(redis_client, streams, message(rows[0], request_id=one)),  # a row object alone is one row
        send(redis_client, streams, message(rows[:1], request_id=with_reasons, explain="true", alias="champion")),
    ]

    tally = score(streams, max_messages=3)

    assert tally == StreamTally(answered=3, ok=3, errors=0, failures=0, claimed=0)
    common = {"status": "ok", "model": "loan-risk", "version": "1"}
    assert results(redis_client, streams) == [
        {"request_id": str(many), "message_id": ids[0], **common, "outputs": api_body["outputs"]},
        {"request_id": str(one), "message_id": ids[1], **common, "outputs": api_body["outputs"][:1]},
        {
            "request_id": str(with_reasons),
            "message_id": ids[2],
            **common,
            "outputs": explained["outputs"],
            "explanations": explained["explanations"],
        },
    ]
    records = logged(many)
    assert [(r.row, r.channel, r.client, r.model_version_id, r.output) for r in records] == [
        (index, "stream", f"stream:{streams.input}", champion.pk, output)
        for index, output in enumerate(api_body["outputs"])
    ]
    assert records[2].subject_id == "C0042"
    assert [r.explanation for r in logged(with_reasons)] == explained["explanations"]
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_messages", stream=streams.input, status="ok") == 3


def test_malformed_messages_get_an_error_result_naming_the_field_and_are_acknowledged(
    redis_client, streams, champion, predict_api, settings
):
    settings.FARO_PREDICT_MAX_BODY_BYTES = 2000
    with pytest.raises(orjson.JSONDecodeError) as caught:
        orjson.loads("[{")
    bad_rows = [valid_row(income="lots"), {"age": 30}]
    refused_by_api = predict_api({"inputs": bad_rows})
    assert refused_by_api.status_code == 400
    rid = str(uuid.uuid4())
    cases = [
        (
            {"colour": "red"},
            {
                "colour": ["Unknown field."],
                "inputs": ["This field is required."],
                "model": ["This field is required."],
                "request_id": ["This field is required."],
            },
        ),
        (message([valid_row()], request_id=None) | {"request_id": "loan-42"}, {"request_id": ["Must be a UUID."]}),
        (message([valid_row()]) | {"inputs": "[{"}, {"inputs": [f"Malformed JSON: {caught.value}"]}),
        (
            message([valid_row()]) | {"inputs": "42"},
            {"inputs": ["Must be a JSON object (one row) or a list of row objects."]},
        ),
        (message([valid_row()]) | {"model": b"loan-\xff"}, {"model": ["Must be UTF-8 text."]}),
        (message([valid_row()]) | {"explain": "yes"}, {"explain": ["Must be true or false."]}),
        (message([valid_row()]) | {"version": "0"}, {"version": ["Must be a positive integer."]}),
        (
            message([valid_row()]) | {"version": "1", "alias": "champion"},
            {"version": ["Give an alias or a version, not both."]},
        ),
        (message([valid_row()]) | {"model": " "}, {"model": ["Must not be blank."]}),
    ]
    ids = [send(redis_client, streams, fields) for fields, _ in cases]
    ids.append(send(redis_client, streams, message(bad_rows, request_id=uuid.UUID(rid))))
    ids.append(send(redis_client, streams, message([valid_row()] * 100)))  # 100 rows: over 2000 bytes
    good = uuid.uuid4()
    ids.append(send(redis_client, streams, message([valid_row()], request_id=good)))

    tally = score(streams, max_messages=len(ids), batch_size=4)

    assert tally == StreamTally(answered=len(ids), ok=1, errors=len(ids) - 1, failures=0, claimed=0)
    found = results(redis_client, streams)
    assert [(r["message_id"], r["status"]) for r in found] == [(i, "ok" if i == ids[-1] else "error") for i in ids]
    assert [r["error"] for r in found[: len(cases)]] == [
        {"message": "Invalid message.", "extra": {"fields": fields}} for _, fields in cases
    ]
    # What the message said is echoed, as far as it can be.
    assert [(r["request_id"], r["model"], r["version"]) for r in found[:2]] == [
        ("", "", ""),
        ("loan-42", "loan-risk", ""),
    ]
    assert (found[4]["model"], found[6]["version"]) == ("loan-\ufffd", "0")
    # Rows the signature refuses: the very body /predict answers with.
    assert found[len(cases)] == {
        "request_id": rid,
        "message_id": ids[len(cases)],
        "status": "error",
        "model": "loan-risk",
        "version": "",
        "error": refused_by_api.json(),
    }
    inputs_size = len(orjson.dumps([valid_row()] * 100))
    assert found[len(cases) + 1]["error"] == {
        "message": f"'inputs' is {inputs_size} bytes; the limit is 2000 (FARO_PREDICT_MAX_BODY_BYTES).",
        "extra": {"fields": {"inputs": ["At most 2000 bytes."]}},
    }
    assert pending(redis_client, streams) == []
    assert PredictionRecord.objects.count() == 1 and len(logged(good)) == 1
    assert counter("faro_stream_messages", stream=streams.input, status="invalid") == len(cases) + 1
    assert counter("faro_stream_messages", stream=streams.input, status="too_large") == 1


def test_unknown_model_or_version_gets_an_error_result_naming_it(redis_client, streams, champion, predict_api):
    refused = predict_api({"inputs": [valid_row()]}, path="/api/v1/models/nope/predict")
    assert refused.status_code == 404
    unknown_model = message([valid_row()], model="nope")
    unknown_version = message([valid_row()], version="7")
    unknown_alias = message([valid_row()], alias="challenger")
    for fields in (unknown_model, unknown_version, unknown_alias):
        send(redis_client, streams, fields)

    score(streams, max_messages=3)

    assert [(r["request_id"], r["model"], r["version"], r["error"]) for r in results(redis_client, streams)] == [
        (unknown_model["request_id"], "nope", "", refused.json()),
        (unknown_version["request_id"], "loan-risk", "7", {"message": "loan-risk has no version 7.", "extra": {}}),
        (
            unknown_alias["request_id"],
            "loan-risk",
            "",
            {"message": "loan-risk has no version with the alias 'challenger'.", "extra": {}},
        ),
    ]
    assert pending(redis_client, streams) == []
    assert PredictionRecord.objects.count() == 0
    assert counter("faro_stream_messages", stream=streams.input, status="not_found") == 3


# -- at least once, logged once --------------------------------------------------------------------------------


def test_a_request_id_sent_again_gets_the_logged_result_and_is_not_logged_twice(redis_client, streams, champion):
    request_id = uuid.uuid4()
    rows = [valid_row(), valid_row(income=2500.0)]
    send(redis_client, streams, message(rows, request_id=request_id))
    score(streams, max_messages=1)
    first_records = [(r.pk, r.created_at, r.output) for r in logged(request_id)]
    # The producer retries: the same request, a new message.
    second_id = send(redis_client, streams, message(rows, request_id=request_id))

    # And a producer bug: the same request id for another model's request.
    send(redis_client, streams, message(rows, request_id=request_id, model="other-model"))

    score(streams, max_messages=2, consumer="consumer-2")

    first, second, reused = results(redis_client, streams)
    assert second == first | {"message_id": second_id}
    assert (reused["status"], reused["model"], reused["error"]) == (
        "error",
        "other-model",
        {
            "message": f"Request id {request_id} was already used for a decision of another model.",
            "extra": {"fields": {"request_id": ["already used for another model"]}},
        },
    )
    assert [(r.pk, r.created_at, r.output) for r in logged(request_id)] == first_records
    assert PredictionRecord.objects.count() == 2
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_messages", stream=streams.input, status="conflict") == 1


def test_a_message_logged_by_a_consumer_that_died_before_acknowledging_is_claimed_and_not_logged_again(
    redis_client, streams, champion
):
    request_id = uuid.uuid4()
    rows = [valid_row(city="east")]
    message_id = send(redis_client, streams, message(rows, request_id=request_id))
    # Consumer 1 reads the message and logs the decision as the scorer does, then dies before publishing.
    dead = adapter_for(streams, "consumer-1")
    [delivered] = dead.read(count=10, block_ms=50)
    assert delivered.id == message_id
    answer = prediction_make(
        model_name="loan-risk", rows=rows, channel="stream", client=f"stream:{streams.input}", request_id=request_id
    )
    dead.close()
    records = [(r.pk, r.output) for r in logged(request_id)]
    assert pending(redis_client, streams) == [(message_id, "consumer-1", 1)]
    wait_until_idle(redis_client, streams, 100)

    tally = score(streams, max_messages=1, consumer="consumer-2", claim_idle_ms=100)

    assert (tally.claimed, tally.ok) == (1, 1)
    assert results(redis_client, streams) == [
        {
            "request_id": str(request_id),
            "message_id": message_id,
            "status": "ok",
            "model": "loan-risk",
            "version": "1",
            "outputs": answer.outputs,
        }
    ]
    assert [(r.pk, r.output) for r in logged(request_id)] == records
    assert pending(redis_client, streams) == []


def test_messages_pending_at_a_dead_consumer_are_claimed_once_idle_and_scored_exactly_once(
    redis_client, streams, champion
):
    request_ids = [uuid.uuid4() for _ in range(3)]
    for request_id in request_ids:
        send(redis_client, streams, message([valid_row()], request_id=request_id))
    dead = adapter_for(streams, "consumer-1")
    taken = dead.read(count=10, block_ms=50)  # then it dies: nothing scored, nothing acknowledged
    dead.close()
    assert [(m, c) for m, c, _ in pending(redis_client, streams)] == [(m.id, "consumer-1") for m in taken]
    # Not idle long enough yet: a live consumer leaves them alone and answers only new messages.
    fresh = uuid.uuid4()
    send(redis_client, streams, message([valid_row()], request_id=fresh))
    tally = score(streams, max_messages=1, consumer="consumer-2", claim_idle_ms=60_000)
    assert (tally.claimed, [r["request_id"] for r in results(redis_client, streams)]) == (0, [str(fresh)])
    assert len(pending(redis_client, streams)) == 3
    wait_until_idle(redis_client, streams, 100)

    tally = score(streams, max_messages=3, consumer="consumer-2", claim_idle_ms=100)

    assert (tally.claimed, tally.ok) == (3, 3)
    assert [r["request_id"] for r in results(redis_client, streams)[1:]] == [str(r) for r in request_ids]
    assert [len(logged(request_id)) for request_id in request_ids] == [1, 1, 1]
    assert PredictionRecord.objects.count() == 4
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_claimed", stream=streams.input) == 3


def test_a_message_is_acknowledged_only_after_its_decision_is_logged_and_its_result_published(
    redis_client, streams, champion
):
    message_id = send(redis_client, streams, message([valid_row()]))
    seen = []

    def watch(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "predictions_predictionrecord"'):
            seen.append((pending(redis_client, streams), redis_client.xlen(streams.output)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        score(streams, max_messages=1)

    assert seen == [([(message_id, "consumer-1", 1)], 0)]  # when logging: still pending, nothing published
    assert pending(redis_client, streams) == []
    assert redis_client.xlen(streams.output) == 1


def test_while_the_database_is_down_nothing_is_acknowledged_then_the_message_is_scored_once(
    redis_client, streams, champion
):
    request_id = uuid.uuid4()
    message_id = send(redis_client, streams, message([valid_row()], request_id=request_id))
    outage = []

    def database_down(execute, sql, params, many, context):
        if len(outage) < 2:  # the first two attempts find the database down
            outage.append((pending(redis_client, streams), redis_client.xlen(streams.output)))
            raise OperationalError("connection refused")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(database_down):
        tally = score(streams, max_messages=1)

    # Each attempt: the message pending at this consumer (delivered again for the second), nothing published.
    assert outage == [([(message_id, "consumer-1", 1)], 0), ([(message_id, "consumer-1", 2)], 0)]
    assert tally == StreamTally(answered=1, ok=1, errors=0, failures=2, claimed=0)
    [result] = results(redis_client, streams)
    assert (result["request_id"], result["status"]) == (str(request_id), "ok")
    assert len(logged(request_id)) == 1
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_failures", stream=streams.input, reason="database") == 2


def test_a_message_the_decision_log_refuses_gets_an_error_result_and_does_not_hold_up_the_stream(
    redis_client, streams, champion
):
    # PostgreSQL refuses a NUL character in a text column with DataError; any backend may refuse a value so.
    poison, after = uuid.uuid4(), uuid.uuid4()
    poison_id = send(redis_client, streams, message([valid_row()], request_id=poison))
    send(redis_client, streams, message([valid_row()], request_id=after))

    def refuse_first_insert(execute, sql, params, many, context):
        if sql.startswith('INSERT INTO "predictions_predictionrecord"') and not refused:
            refused.append(sql)
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return execute(sql, params, many, context)

    refused = []
    with connection.execute_wrapper(refuse_first_insert):
        tally = score(streams, max_messages=2)

    assert tally == StreamTally(answered=2, ok=1, errors=1, failures=0, claimed=0)
    first, second = results(redis_client, streams)
    assert first == {
        "request_id": str(poison),
        "message_id": poison_id,
        "status": "error",
        "model": "loan-risk",
        "version": "",
        "error": {"message": "The request could not be scored (internal error).", "extra": {}},
    }
    assert (second["request_id"], second["status"]) == (str(after), "ok")
    assert (len(logged(poison)), len(logged(after))) == (0, 1)
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_messages", stream=streams.input, status="error") == 1


def test_a_model_that_cannot_be_served_is_retried_a_few_times_then_answered_with_the_error(
    redis_client, streams, champion, settings
):
    settings.FARO_ONLINE_STORE, settings.REDIS_URL = "redis", ""  # the store named cannot be reached
    by_entity, plain = uuid.uuid4(), uuid.uuid4()
    send(redis_client, streams, message([{"entity_id": "C0001"}], request_id=by_entity))
    send(redis_client, streams, message([valid_row()], request_id=plain))

    tally = score(streams, max_messages=2, unavailable_attempts=3)

    # Two attempts left it pending (the second message waiting behind it), the third answered it.
    assert tally == StreamTally(answered=2, ok=1, errors=1, failures=2, claimed=0)
    first, second = results(redis_client, streams)
    assert (first["request_id"], first["status"], first["error"]) == (
        str(by_entity),
        "error",
        {"message": "The online store is Redis, but REDIS_URL is not set.", "extra": {}},
    )
    assert (second["request_id"], second["status"]) == (str(plain), "ok")
    assert (len(logged(by_entity)), len(logged(plain))) == (0, 1)
    assert pending(redis_client, streams) == []
    assert counter("faro_stream_failures", stream=streams.input, reason="unavailable") == 2
    assert counter("faro_stream_messages", stream=streams.input, status="unavailable") == 1


def test_stop_finishes_the_batch_in_hand_acknowledges_it_and_reads_no_more(redis_client, streams, champion):
    ids = [send(redis_client, streams, message([valid_row()])) for _ in range(5)]
    adapter = adapter_for(streams)
    scorer = StreamScorer(adapter, batch_size=3, block_ms=50)

    def signal_while_logging_the_first(execute, sql, params, many, context):
        scorer.stop()  # what SIGTERM and SIGINT do in `manage.py score_stream`
        return execute(sql, params, many, context)

    with connection.execute_wrapper(signal_while_logging_the_first):
        tally = scorer.run()
    adapter.close()

    assert tally == StreamTally(answered=3, ok=3, errors=0, failures=0, claimed=0)
    assert [r["message_id"] for r in results(redis_client, streams)] == ids[:3]
    assert pending(redis_client, streams) == []
    [group] = redis_client.xinfo_groups(streams.input)
    assert (group["entries-read"], group["lag"]) == (3, 2)  # the last two wait for the next consumer


def test_a_message_deleted_while_pending_is_acknowledged_without_a_result(redis_client, streams, champion):
    gone = send(redis_client, streams, message([valid_row()]))
    kept = send(redis_client, streams, message([valid_row()]))
    adapter = adapter_for(streams, "consumer-1")
    adapter.read(count=10, block_ms=50)  # then the consumer stops, and someone trims the stream
    adapter.close()
    redis_client.xdel(streams.input, gone)

    tally = score(streams, max_messages=1)  # the same consumer, restarted: its own pending first

    assert tally.answered == 1
    assert [r["message_id"] for r in results(redis_client, streams)] == [kept]
    assert pending(redis_client, streams) == []


# -- the command -----------------------------------------------------------------------------------------------


def test_command_creates_the_group_reads_what_was_sent_before_and_reports(redis_client, streams, champion):
    assert not redis_client.exists(streams.input)
    ok = uuid.uuid4()
    send(redis_client, streams, message([valid_row()], request_id=ok))  # before any consumer group exists
    send(redis_client, streams, message([valid_row()], model="nope"))
    out = io.StringIO()

    call_command(
        "score_stream",
        f"--input-stream={streams.input}",
        f"--output-stream={streams.output}",
        "--group=stream-test",
        "--consumer=worker-a",
        f"--redis-url={REDIS_URL}",
        "--block-ms=50",
        "--max-messages=2",
        stdout=out,
    )

    assert out.getvalue().splitlines() == [
        f"Scoring {streams.input} into {streams.output} as worker-a of group stream-test.",
        "Answered 2 message(s): 1 ok, 1 error(s); 0 claimed from other consumers, 0 transient failure(s).",
    ]
    assert [r["status"] for r in results(redis_client, streams)] == ["ok", "error"]
    [group] = redis_client.xinfo_groups(streams.input)
    assert (group["name"], group["pending"]) == (b"stream-test", 0)
    assert len(logged(ok)) == 1


def test_command_refuses_without_redis_or_with_one_stream_for_both(settings, streams):
    settings.REDIS_URL = ""
    base = [f"--input-stream={streams.input}", f"--output-stream={streams.output}"]
    with pytest.raises(CommandError) as no_redis:
        call_command("score_stream", *base)
    assert str(no_redis.value) == "score_stream needs Redis: pass --redis-url or set REDIS_URL."
    with pytest.raises(CommandError) as same:
        call_command(
            "score_stream",
            f"--input-stream={streams.input}",
            f"--output-stream={streams.input}",
            f"--redis-url={REDIS_URL}",
        )
    assert str(same.value) == "--input-stream and --output-stream must differ: results would be read as requests."
    with pytest.raises(CommandError) as unreachable:
        call_command("score_stream", *base, "--redis-url=redis://user:secret@127.0.0.1:1/0")
    assert str(unreachable.value).startswith("Cannot reach Redis at redis://user:***@127.0.0.1:1/0: Redis: ")
