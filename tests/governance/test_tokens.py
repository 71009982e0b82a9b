import hashlib
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from apps.core.errors import InvalidInput
from apps.governance.models import ApiToken, AuditEvent
from apps.governance.services import token_authenticate, token_create, token_revoke


def test_token_is_stored_hashed_and_printed_once(db, capsys):
    call_command("token_create", "billing", "--scopes", "predict,read")
    captured = capsys.readouterr()
    plaintext = captured.out.strip()
    token = ApiToken.objects.get(name="billing")
    assert plaintext.startswith(f"faro_{token.prefix}_")
    assert token.digest == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in str(ApiToken.objects.values().get())
    assert token.scopes == ["predict", "read"]
    assert "shown once" in captured.err
    assert token_authenticate(plaintext) == token
    assert AuditEvent.objects.filter(action="token.created", object_id=str(token.pk)).count() == 1


def test_unknown_scope_is_refused_and_nothing_is_created(db):
    with pytest.raises(CommandError, match="Unknown scopes: deploy"):
        call_command("token_create", "x", "--scopes", "predict,deploy")
    with pytest.raises(InvalidInput):
        token_create(name="x", scopes=[])
    assert ApiToken.objects.count() == 0
    assert AuditEvent.objects.count() == 0


def test_revoked_expired_and_forged_tokens_do_not_authenticate(db):
    token, plaintext = token_create(name="a", scopes=["predict"])
    assert token_authenticate(plaintext[:-1] + ("A" if plaintext[-1] != "A" else "B")) is None
    assert token_authenticate("not-a-token") is None
    token_revoke(token=token, actor="system")
    assert token_authenticate(plaintext) is None
    _, expiring = token_create(name="b", scopes=["predict"], expires_at=timezone.now() - timedelta(seconds=1))
    assert token_authenticate(expiring) is None


def test_admin_scope_implies_every_scope(db):
    token, _ = token_create(name="ops", scopes=["admin"])
    assert all(token.has_scope(scope) for scope in ApiToken.Scope.values)
    reader, _ = token_create(name="reader", scopes=["read"])
    assert (reader.has_scope("read"), reader.has_scope("predict")) == (True, False)
