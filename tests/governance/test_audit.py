from itertools import pairwise

import pytest
from django.core.management import CommandError, call_command

from apps.governance.models import AuditEvent, AuditHead
from apps.governance.services import audit_record, audit_verify


@pytest.fixture
def chain(db):
    for index in range(5):
        audit_record(actor="system", action=f"test.step{index}", data={"index": index})
    return list(AuditEvent.objects.order_by("seq"))


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


def test_edited_row_is_named(chain):
    AuditEvent.objects.filter(seq=3).update(data={"index": 99})
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "edited" in result.reason
    with pytest.raises(CommandError, match=r"Audit chain broken at event #3"):
        call_command("audit_verify")


def test_deleted_row_is_named(chain):
    AuditEvent.objects.filter(seq=2).delete()
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 3)
    assert "deleted or inserted" in result.reason


def test_truncated_tail_is_detected(chain):
    AuditEvent.objects.filter(seq__gte=4).delete()
    result = audit_verify()
    assert (result.ok, result.checked) == (False, 3)
    assert "removed from the end" in result.reason


def test_rehashed_forgery_breaks_the_next_link(chain):
    forged = AuditEvent.objects.get(seq=2)
    forged.action = "test.forged"
    forged.hash = "f" * 64
    forged.save()
    result = audit_verify()
    assert (result.ok, result.broken_seq) == (False, 2)


def test_actor_references_are_pseudonymous(db, users):
    event = audit_record(actor=users["ds"], action="test.user")
    assert event.actor == f"user:{users['ds'].pk}"
    assert users["ds"].username not in str(event.data)
