"""apps.predictions.decision_log: what it writes is what the ORM reads back, exactly, on either database;
a request's rows are written all or none."""

import uuid
from datetime import UTC, datetime

import pytest
from django.db import DataError, IntegrityError, connection

from apps.predictions.decision_log import MULTI_ROW_INSERT, Decision, decisions_write, json_text
from apps.predictions.models import PredictionRecord, Route

WHEN = datetime(2026, 12, 7, 9, 30, 15, 123456, tzinfo=UTC)


def write(version, decisions, request_id, **overrides):
    decisions_write(
        decisions,
        request_id=request_id,
        model_version_id=version.pk,
        route=overrides.get("route", Route.CHAMPION),
        channel=overrides.get("channel", PredictionRecord.Channel.API),
        client=overrides.get("client", "token:7"),
        latency_ms=overrides.get("latency_ms", 1.25),
        created_at=WHEN,
    )


def decision(row, **inputs):
    return Decision(
        row=row,
        subject_id=f"S{row}",
        inputs={"city": "north", "income": 100.5 + row, **inputs},
        output={"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}},
        explanation={"reasons": [{"feature": "income", "contribution": -0.5}]} if row % 2 else None,
    )


@pytest.mark.parametrize("count", [1, 3, MULTI_ROW_INSERT, MULTI_ROW_INSERT + 1, 400])
def test_rows_read_back_exactly(champion, count):
    """Up to MULTI_ROW_INSERT rows one INSERT; beyond, COPY on PostgreSQL and a transaction elsewhere."""
    request_id = uuid.uuid4()
    write(champion, [decision(index) for index in range(count)], request_id)
    records = list(PredictionRecord.objects.filter(request_id=request_id).order_by("row"))
    assert len(records) == count
    for index, record in enumerate(records):
        assert (record.row, record.subject_id, record.model_version_id) == (index, f"S{index}", champion.pk)
        assert (record.route, record.channel, record.client, record.latency_ms) == ("champion", "api", "token:7", 1.25)
        assert record.created_at == WHEN
        assert record.inputs == {"city": "north", "income": 100.5 + index}
        assert record.output == {"label": "yes", "probabilities": {"no": 0.25, "yes": 0.75}}
        expected = {"reasons": [{"feature": "income", "contribution": -0.5}]} if index % 2 else None
        assert record.explanation == expected
        assert (record.actual, record.actual_at) == (None, None)


@pytest.mark.parametrize("count", [2, MULTI_ROW_INSERT + 5])
def test_a_request_id_already_logged_is_refused_and_nothing_is_written(champion, count):
    request_id = uuid.uuid4()
    write(champion, [decision(count - 1)], request_id)
    with pytest.raises(IntegrityError):
        write(champion, [decision(index) for index in range(count)], request_id)
    assert list(PredictionRecord.objects.filter(request_id=request_id).values_list("row", flat=True)) == [count - 1]


def test_the_same_request_id_is_logged_again_for_another_version(champion, registered_model, dataset_version):
    """A shadow logs under the champion's request id: the key is request, row and version."""
    from tests.conftest import train_version

    shadow = train_version(registered_model, dataset_version)
    request_id = uuid.uuid4()
    write(champion, [decision(0)], request_id)
    write(shadow, [decision(0)], request_id, route=Route.SHADOW)
    assert sorted(PredictionRecord.objects.filter(request_id=request_id).values_list("route", flat=True)) == [
        "champion",
        "shadow",
    ]


def test_json_beyond_what_orjson_encodes_is_kept(champion):
    """A client may send an integer beyond 64 bits; it is logged as given, not refused or rounded."""
    request_id = uuid.uuid4()
    write(champion, [decision(0, reference=2**70, name="Zoë \u2603")], request_id)
    record = PredictionRecord.objects.get(request_id=request_id)
    assert record.inputs == {"city": "north", "income": 100.5, "reference": 2**70, "name": "Zoë \u2603"}
    assert json_text(None) is None
    assert json_text({"n": 2**70}) == '{"n": 1180591620717411303424}'
    assert json_text({"n": 1}) == '{"n":1}'


def test_nothing_to_write_writes_nothing(champion):
    write(champion, [], uuid.uuid4())
    assert PredictionRecord.objects.count() == 0


def test_execute_wrappers_see_every_write(champion):
    """Instrumentation that hooks Django's execute wrappers sees the log's statements, COPY included (as an
    executemany of its rows), and can refuse them: nothing is written then."""
    seen = []

    def watch(execute, sql, params, many, context):
        if "predictions_predictionrecord" in sql:  # not the test's savepoints
            seen.append((sql.split()[0], many, len(params)))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        write(champion, [decision(0)], uuid.uuid4())
        write(champion, [decision(index) for index in range(MULTI_ROW_INSERT + 10)], uuid.uuid4())
    many_statement = "COPY" if connection.vendor == "postgresql" else "INSERT"
    assert seen == [("INSERT", False, 12), (many_statement, True, MULTI_ROW_INSERT + 10)]

    def refuse(execute, sql, params, many, context):
        if "predictions_predictionrecord" in sql:
            raise DataError("refused by a wrapper")
        return execute(sql, params, many, context)

    request_id = uuid.uuid4()
    for count in (1, MULTI_ROW_INSERT + 10):
        with connection.execute_wrapper(refuse), pytest.raises(DataError):
            write(champion, [decision(index) for index in range(count)], request_id)
    assert not PredictionRecord.objects.filter(request_id=request_id).exists()
