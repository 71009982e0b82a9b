import contextlib
import csv
import logging
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import orjson
import pytest
from django.core.management import CommandError, call_command
from django.db import ProgrammingError, connection, transaction
from django.urls import reverse
from django.utils import timezone
from prometheus_client import REGISTRY

from apps.governance import chain as chain_module
from apps.governance.chain import GENESIS, event_hash, read_export, verify_rows
from apps.governance.models import AuditEvent, AuditHead
from apps.governance.services import audit_anchor, audit_record, audit_verify
from apps.governance.tasks import audit_anchor as audit_anchor_task

ON_POSTGRES = connection.vendor == "postgresql"
FIELDS = chain_module.FIELDS


@pytest.fixture
def chain(db):
    for index in range(5):
        audit_record(actor="system", action=f"test.step{index}", data={"index": index})
    return list(AuditEvent.objects.order_by("seq"))


@contextlib.contextmanager
def as_table_owner():
    """What an attacker with the table owner's rights does first on PostgreSQL: switch the append-only trigger
    off (SQLite has none). It happens inside the test's transaction, so the rollback undoes it anyway."""
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    if ON_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    yield
    if ON_POSTGRES:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def rehash(event: AuditEvent, prev_hash: str) -> AuditEvent:
    """Relink and rehash `event` as a forger who knows the hashing would; saved with the trigger off."""
    event.prev_hash = prev_hash
    event.hash = event_hash({name: getattr(event, name) for name in FIELDS})
    return event


def chain_rows() -> list[dict]:
    return list(AuditEvent.objects.order_by("seq").values(*FIELDS))


def test_each_event_links_to_the_previous_hash(chain):
    assert [event.seq for event in chain] == [1, 2, 3, 4, 5]
    assert chain[0].prev_hash == "0" * 64
    for previous, event in pairwise(chain):
        assert event.prev_hash == previous.hash
    head = AuditHead.objects.get()
    assert (head.seq, head.hash) == (5, chain[-1].hash)


def test_intact_chain_verifies(chain, capsys):
    result = audit_verify()
    assert (result.ok, result.checked, result.broken_seq) == (True, 5, None)
    call_command("audit_verify")
    assert capsys.readouterr().out.strip() == "Audit chain intact: 5 events verified."


# -- the database refuses changes (PostgreSQL) ---------------------------------------------------------------


def test_postgres_refuses_to_update_or_delete_an_event_and_sqlite_reveals_it(chain):
    if not ON_POSTGRES:
        # SQLite has no TRUNCATE: Django empties its tables with DELETE, which a DELETE trigger would refuse,
        # so on the embedded default an edit goes through and the chain check is what catches it.
        AuditEvent.objects.filter(seq=3).update(data={"index": 99})
        assert (audit_verify().ok, audit_verify().broken_seq) == (False, 3)
        return
    before = AuditEvent.objects.values(*FIELDS).get(seq=3)
    with pytest.raises(ProgrammingError, match=r"append-only: UPDATE"), transaction.atomic():
        AuditEvent.objects.filter(seq=3).update(data={"index": 99})
    with pytest.raises(ProgrammingError, match=r"append-only: DELETE"), transaction.atomic():
        AuditEvent.objects.filter(seq=3).delete()
    with pytest.raises(ProgrammingError, match=r"append-only: UPDATE"), transaction.atomic():
        AuditEvent.objects.filter(seq__gte=1).update(actor="user:1")
    assert AuditEvent.objects.values(*FIELDS).get(seq=3) == before
    assert AuditEvent.objects.count() == 5
    assert audit_verify().ok
    # Appending still works after the refusals.
    assert audit_record(actor="system", action="test.after").seq == 6


@pytest.mark.django_db(transaction=True)
def test_flush_still_empties_the_audit_log():
    """Outside a test transaction: pytest-django's flush after this test TRUNCATEs the audit table on
    PostgreSQL, which the trigger (UPDATE and DELETE only) must let through; the next test starts empty."""
    audit_record(actor="system", action="test.flushed")
    assert AuditEvent.objects.count() == 1


# -- each kind of tampering is named by its first bad seq -----------------------------------------------------


def test_edited_row_is_named(chain):
    with as_table_owner():
        AuditEvent.objects.filter(seq=3).update(data={"index": 99})
    result = audit_verify()
    assert (result.ok, result.broken_seq, result.checked) == (False, 3, 2)
    assert "edited" in result.reason
    with pytest.raises(CommandError, match=r"Audit chain broken at event #3"):
        call_command("audit_verify")


def test_rehashed_forgery_breaks_the_next_link(chain):
    with as_table_owner():
        forged = AuditEvent.objects.get(seq=2)
        forged.action = "test.forged"
        rehash(forged, forged.prev_hash).save()
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert result.reason == "prev_hash does not match the previous event's hash"


def test_deleted_row_is_named(chain):
    with as_table_owner():
        AuditEvent.objects.filter(seq=2).delete()
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "deleted or inserted" in result.reason


def test_inserted_row_is_named(chain):
    """A forged event slipped in after #2: the later events move up one seq and the head follows; the forgery
    itself links to #2 and hashes correctly, so the first bad event is the one after it."""
    with as_table_owner():
        for event in reversed(chain[2:]):
            AuditEvent.objects.filter(pk=event.pk).update(seq=event.seq + 1)
        forged = AuditEvent(
            seq=3, at=chain[2].at, actor="user:1", action="test.forged", object_type="", object_id="", data={}
        )
        rehash(forged, chain[1].hash).save()
        AuditHead.objects.filter(id=1).update(seq=6)
    assert AuditEvent.objects.get(seq=3).hash == event_hash(AuditEvent.objects.values(*FIELDS).get(seq=3))
    result = audit_verify()
    assert (result.ok, result.broken_seq, result.checked) == (False, 4, 3)


def test_truncated_tail_is_named(chain):
    with as_table_owner():
        AuditEvent.objects.filter(seq__gte=4).delete()
    result = audit_verify()
    assert (result.ok, result.checked, result.broken_seq) == (False, 3, 4)
    assert "removed from the end" in result.reason
    with pytest.raises(CommandError, match=r"Audit chain broken at event #4"):
        call_command("audit_verify")


def test_rewritten_head_hash_is_named(chain):
    AuditHead.objects.filter(id=1).update(hash="e" * 64)
    result = audit_verify()
    assert (result.ok, result.checked, result.broken_seq) == (False, 5, 5)
    assert result.reason == "the head's hash does not match event #5 (the head was rewritten)"


def test_head_rolled_back_is_named(chain):
    AuditHead.objects.filter(id=1).update(seq=3, hash=chain[2].hash)
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 4)
    assert result.reason == "the head records #3 but the chain goes on to #5 (the head was rewritten)"


# -- anchors outside the database -----------------------------------------------------------------------------


def anchor_lines(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_anchor_task_logs_and_sets_the_gauges(chain, settings, caplog):
    settings.FARO_AUDIT_ANCHOR_FILE = ""
    head = chain[-1].hash
    with caplog.at_level(logging.INFO, logger="apps.governance.services"):
        audit_anchor_task()
    assert [record.getMessage() for record in caplog.records] == [f"audit head anchored seq=5 hash={head}"]
    assert REGISTRY.get_sample_value("faro_audit_head_seq") == 5
    assert REGISTRY.get_sample_value("faro_audit_head_hash_prefix") == int(head[:12], 16)
    assert f"{int(REGISTRY.get_sample_value('faro_audit_head_hash_prefix')):012x}" == head[:12]
    assert REGISTRY.get_sample_value("faro_audit_anchor_timestamp_seconds") == pytest.approx(
        timezone.now().timestamp(), abs=60
    )


def test_beat_anchors_every_hour_by_default(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["governance.audit_anchor"]
    assert (entry["task"], entry["schedule"]) == ("governance.audit_anchor", timedelta(seconds=3600))
    assert audit_anchor_task.name == "governance.audit_anchor"


def test_anchor_task_appends_to_the_anchor_file(chain, settings, tmp_path):
    path = tmp_path / "anchors.jsonl"
    settings.FARO_AUDIT_ANCHOR_FILE = str(path)
    first = audit_anchor()
    audit_record(actor="system", action="test.later")
    second = audit_anchor()
    lines = anchor_lines(path)
    assert [(line["seq"], line["hash"]) for line in lines] == [(5, chain[-1].hash), (6, AuditHead.objects.get().hash)]
    assert [datetime.fromisoformat(line["at"]) for line in lines] == [first.at, second.at]


def test_empty_chain_is_anchored_as_the_genesis(db, settings, tmp_path):
    path = tmp_path / "anchors.jsonl"
    settings.FARO_AUDIT_ANCHOR_FILE = str(path)
    audit_anchor()
    assert [(line["seq"], line["hash"]) for line in anchor_lines(path)] == [(0, GENESIS)]
    call_command("audit_verify", anchors=str(path))


def test_anchors_match_an_intact_chain(chain, settings, tmp_path, capsys):
    settings.FARO_AUDIT_ANCHOR_FILE = str(tmp_path / "anchors.jsonl")
    audit_anchor()
    audit_anchor()  # the head did not move: the same anchor twice
    call_command("audit_verify", anchors=settings.FARO_AUDIT_ANCHOR_FILE)
    assert capsys.readouterr().out.strip() == "Audit chain intact: 5 events verified, 1 anchor matched."


def test_anchor_names_a_chain_rewritten_after_it(db, settings, tmp_path):
    """The attacker edits #2 and recomputes every later hash and the head: the chain alone verifies, and only
    the hashes anchored outside the database show the rewrite, at the first anchored seq that changed."""
    path = tmp_path / "anchors.jsonl"
    settings.FARO_AUDIT_ANCHOR_FILE = str(path)
    for index in range(5):
        audit_record(actor="system", action=f"test.step{index}", data={"index": index})
        if index in (2, 4):
            audit_anchor()
    original = list(AuditEvent.objects.order_by("seq"))
    assert [(line["seq"], line["hash"]) for line in anchor_lines(path)] == [
        (3, original[2].hash),
        (5, original[4].hash),
    ]

    with as_table_owner():
        prev_hash = original[0].hash
        for event in AuditEvent.objects.filter(seq__gte=2).order_by("seq"):
            if event.seq == 2:
                event.data = {"index": 99}
            rehash(event, prev_hash).save()
            prev_hash = event.hash
        AuditHead.objects.filter(id=1).update(seq=5, hash=prev_hash)
    assert audit_verify().ok
    result = audit_verify(anchors={3: original[2].hash, 5: original[4].hash})
    assert (result.ok, result.broken_seq) == (False, 3)
    assert (
        result.reason == "its hash differs from the one anchored for #3 (the chain was rewritten after it was anchored)"
    )
    with pytest.raises(CommandError, match=r"Audit chain broken at event #3: its hash differs"):
        call_command("audit_verify", anchors=str(path))


def test_anchor_names_events_removed_after_it(chain, settings, tmp_path):
    path = tmp_path / "anchors.jsonl"
    settings.FARO_AUDIT_ANCHOR_FILE = str(path)
    audit_anchor()
    with as_table_owner():
        AuditEvent.objects.filter(seq__gte=4).delete()
        AuditHead.objects.filter(id=1).update(seq=3, hash=chain[2].hash)
    assert audit_verify().ok
    with pytest.raises(CommandError, match=r"broken at event #4: the chain ends at #3 but #5 was anchored"):
        call_command("audit_verify", anchors=str(path))


def test_malformed_anchor_file_is_named(chain, tmp_path):
    path = tmp_path / "anchors.jsonl"
    path.write_text(f'{{"seq": 5, "hash": "{chain[-1].hash}"}}\nnot json\n')
    with pytest.raises(CommandError, match=r"anchors.jsonl: line 2 is not an anchor"):
        call_command("audit_verify", anchors=str(path))
    path.write_text(f'{{"seq": 5, "hash": "{chain[-1].hash}"}}\n{{"seq": 5, "hash": "{"a" * 64}"}}\n')
    with pytest.raises(CommandError, match=r"line 2 anchors #5 with a different hash"):
        call_command("audit_verify", anchors=str(path))
    with pytest.raises(CommandError, match=r"Cannot read the anchor file"):
        call_command("audit_verify", anchors=str(tmp_path / "missing.jsonl"))


# -- export for auditors --------------------------------------------------------------------------------------

DAYS = [
    datetime(2026, 1, 30, 12, tzinfo=UTC),
    datetime(2026, 1, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 2, 1, tzinfo=UTC),
    datetime(2026, 2, 15, 8, 30, 0, 250, tzinfo=UTC),
    datetime(2026, 3, 1, tzinfo=UTC),
]


@pytest.fixture
def dated_chain(db, monkeypatch):
    events = []
    for index, moment in enumerate(DAYS):
        monkeypatch.setattr(timezone, "now", lambda moment=moment: moment)
        events.append(audit_record(actor="system", action="test.dated", data={"index": index, "name": "Zoë"}))
    monkeypatch.undo()
    return events


def test_export_jsonl_holds_every_field_of_the_range(dated_chain, tmp_path, capsys):
    path = tmp_path / "audit.jsonl"
    call_command("audit_export", since="2026-02-01", until="2026-03-01", format="jsonl", output=str(path))
    assert capsys.readouterr().out.strip() == f"Exported 2 audit events to {path}."
    rows = list(read_export(path))
    assert [row["seq"] for row in rows] == [3, 4]
    assert rows[1] == {
        "seq": 4,
        "at": "2026-02-15T08:30:00.000250+00:00",
        "actor": "system",
        "action": "test.dated",
        "object_type": "",
        "object_id": "",
        "data": {"index": 3, "name": "Zoë"},
        "prev_hash": dated_chain[2].hash,
        "hash": dated_chain[3].hash,
    }
    # A slice: its first event's link is taken on trust, everything after it is checked.
    assert verify_rows(rows, after=None).ok
    assert verify_rows(rows, after=(2, dated_chain[1].hash)).ok
    assert verify_rows(rows).broken_seq == 3  # not a whole chain: #1 is missing


def test_export_csv_of_the_whole_chain_reverifies_offline(dated_chain, tmp_path, capsys):
    path = tmp_path / "audit.csv"
    call_command("audit_export", format="csv", output=str(path))
    with path.open(newline="", encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == list(FIELDS)
    rows = list(read_export(path))
    assert [row["seq"] for row in rows] == [1, 2, 3, 4, 5]
    assert [row["at"] for row in rows] == [moment.isoformat() for moment in DAYS]
    assert rows == [chain_module.export_row(row) for row in chain_rows()]
    assert verify_rows(rows, head=(5, dated_chain[-1].hash)).ok
    assert verify_rows(rows).ok

    capsys.readouterr()
    assert chain_module.main([str(path)]) == 0
    assert capsys.readouterr().out.strip() == "Audit chain intact: 5 events verified, up to #5."
    tampered = tmp_path / "tampered.csv"
    tampered.write_text(path.read_text(encoding="utf-8").replace('"index"":2', '"index"":7'), encoding="utf-8")
    assert chain_module.main([str(tampered)]) == 1
    assert capsys.readouterr().err.strip() == (
        "Audit chain broken at event #3: content does not match its hash (the row was edited)"
    )


def test_offline_check_against_anchors(dated_chain, tmp_path, capsys):
    export, anchors = tmp_path / "audit.jsonl", tmp_path / "anchors.jsonl"
    call_command("audit_export", since="2026-02-01", output=str(export))
    anchors.write_text(
        "".join(f'{{"seq": {event.seq}, "hash": "{event.hash}"}}\n' for event in dated_chain[1:4])
        + f'{{"seq": 9, "hash": "{"b" * 64}"}}\n'  # anchored after the export was taken: not covered by it
    )
    capsys.readouterr()
    assert chain_module.main(["--slice", "--anchors", str(anchors), str(export)]) == 0
    assert capsys.readouterr().out.strip() == "Audit chain intact: 3 events verified, up to #5, 2 anchors matched."
    anchors.write_text(f'{{"seq": 4, "hash": "{"c" * 64}"}}\n')
    assert chain_module.main(["--slice", "--anchors", str(anchors), str(export)]) == 1
    assert "broken at event #4: its hash differs from the one anchored for #4" in capsys.readouterr().err
    anchors.write_text("not json\n")
    assert chain_module.main(["--slice", "--anchors", str(anchors), str(export)]) == 2
    assert capsys.readouterr().err.startswith("Cannot check: line 1 is not an anchor")


def test_export_rejects_bad_dates(db, tmp_path):
    with pytest.raises(CommandError, match=r"--since '31/01/2026' is not a date"):
        call_command("audit_export", since="31/01/2026", output=str(tmp_path / "x.jsonl"))
    with pytest.raises(CommandError, match=r"--until must be later than --since"):
        call_command("audit_export", since="2026-02-01", until="2026-02-01", output=str(tmp_path / "x.jsonl"))
    assert not (tmp_path / "x.jsonl").exists()


def test_console_exports_the_selected_events(dated_chain, admin_client):
    changelist = reverse("admin:governance_auditevent_changelist")
    page = admin_client.get(changelist)
    assert page.status_code == 200
    assert list(page.context["action_form"].fields["action"].choices)[1:] == [
        ("export_jsonl", "Export the selected events (JSON lines)")
    ]
    assert admin_client.get(changelist, {"at__year": "2026", "at__month": "2"}).context["cl"].result_count == 2
    assert admin_client.get(changelist, {"action__exact": "test.dated"}).context["cl"].result_count == 5

    selected = [event.pk for event in dated_chain[1:4]]
    response = admin_client.post(changelist, {"action": "export_jsonl", "_selected_action": selected})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/jsonl"
    assert response["Content-Disposition"] == 'attachment; filename="audit-events-2-4.jsonl"'
    rows = [orjson.loads(line) for line in response.content.splitlines()]
    assert [row["seq"] for row in rows] == [2, 3, 4]
    assert set(rows[0]) == set(FIELDS)
    assert verify_rows(rows, after=(1, dated_chain[0].hash)).ok
    assert AuditEvent.objects.count() == 5  # reading records nothing and changes nothing


def test_actor_references_are_pseudonymous(db, users):
    event = audit_record(actor=users["ds"], action="test.user")
    assert event.actor == f"user:{users['ds'].pk}"
    assert users["ds"].username not in str(event.data)
