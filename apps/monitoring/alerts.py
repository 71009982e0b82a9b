"""Alerts: raise one when a cause appears, count it while it lasts, resolve it when it goes away.

One unresolved alert per key (a database constraint): raising a key that is already open or acknowledged
counts an occurrence and notifies nobody again; raising it after it was resolved opens a new alert. Opening
notifies by e-mail (FARO_ALERT_EMAILS and the model's owner) and emits `alert.opened` to the webhooks that
want it, signed like every Faro webhook; resolving emits `alert.resolved`. Every change is audited.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, NotFound
from apps.events.services import event_emit
from apps.governance.services import actor_ref, audit_record
from apps.monitoring.models import Alert
from apps.registry.models import RegisteredModel

logger = logging.getLogger(__name__)

UNRESOLVED = (Alert.Status.OPEN, Alert.Status.ACKNOWLEDGED)


def _payload(alert: Alert) -> dict[str, Any]:
    return {
        "id": alert.pk,
        "key": alert.key,
        "kind": alert.kind,
        "severity": alert.severity,
        "status": alert.status,
        "model": alert.registered_model.name if alert.registered_model_id else None,
        "title": alert.title,
        "detail": alert.detail,
    }


def _recipients(alert: Alert) -> list[str]:
    addresses = list(settings.FARO_ALERT_EMAILS)
    owner = alert.registered_model.owner if alert.registered_model_id else None
    if owner is not None and owner.email and owner.email not in addresses:
        addresses.append(owner.email)
    return addresses


def _mail(alert: Alert) -> None:
    """Sent after the alert commits; a mail server that is down is logged, never undoes the alert."""
    recipients = _recipients(alert)
    if not recipients:
        return
    subject = f"[Faro {alert.severity}] {alert.title}"
    opened = f"{alert.opened_at:%Y-%m-%d %H:%M %Z}"
    body = f"{alert.detail}\n\nAlert {alert.pk} ({alert.kind}, key {alert.key}) opened at {opened}."
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception as exc:
        logger.warning("Alert %s: e-mail to %d recipient(s) failed: %s", alert.pk, len(recipients), exc)


def alert_raise(
    *,
    key: str,
    kind: str,
    severity: str,
    title: str,
    detail: str = "",
    registered_model: RegisteredModel | None = None,
    data: dict[str, Any] | None = None,
) -> tuple[Alert, bool]:
    """Open an alert for `key`, or count another occurrence of the unresolved one. Returns (alert, opened)."""
    now = timezone.now()
    with transaction.atomic():
        current = Alert.objects.select_for_update().filter(key=key, status__in=UNRESOLVED).first()
        if current is not None:
            current.occurrences += 1
            current.last_seen_at = now
            current.detail, current.data = detail, data or {}
            if severity == Alert.Severity.CRITICAL:
                current.severity = severity
            current.save(update_fields=["occurrences", "last_seen_at", "detail", "data", "severity"])
            return current, False
        try:
            with transaction.atomic():
                alert = Alert.objects.create(
                    key=key,
                    kind=kind,
                    severity=severity,
                    title=title[:200],
                    detail=detail,
                    registered_model=registered_model,
                    data=data or {},
                    last_seen_at=now,
                )
        except IntegrityError:  # another process opened it meanwhile
            return Alert.objects.get(key=key, status__in=UNRESOLVED), False
        audit_record(
            actor="system",
            action="alert.opened",
            target=alert,
            data={"key": key, "kind": kind, "severity": severity},
        )
        event_emit(kind="alert.opened", payload=_payload(alert))
        transaction.on_commit(lambda: _mail(alert))
    logger.warning("Alert opened (%s, %s): %s", kind, severity, title)
    return alert, True


def alert_resolve_key(*, key: str, reason: str) -> Alert | None:
    """The cause of `key` went away: resolve its unresolved alert, if any, by the system."""
    with transaction.atomic():
        alert = Alert.objects.select_for_update().filter(key=key, status__in=UNRESOLVED).first()
        if alert is None:
            return None
        _resolve(alert, actor="system", reason=reason)
    return alert


def _resolve(alert: Alert, *, actor: Any, reason: str) -> None:
    alert.status, alert.resolved_at, alert.resolved_by = Alert.Status.RESOLVED, timezone.now(), actor_ref(actor)
    alert.save(update_fields=["status", "resolved_at", "resolved_by"])
    audit_record(actor=actor, action="alert.resolved", target=alert, data={"key": alert.key, "reason": reason})
    event_emit(kind="alert.resolved", payload={**_payload(alert), "reason": reason})


def alert_get(*, alert_id: int) -> Alert:
    alert = Alert.objects.select_related("registered_model").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


def _locked(alert_id: int) -> Alert:
    alert = Alert.objects.select_for_update(of=("self",)).select_related("registered_model").filter(pk=alert_id).first()
    if alert is None:
        raise NotFound(f"No alert {alert_id}.")
    return alert


def alert_acknowledge(*, alert_id: int, actor: Any) -> Alert:
    """Someone is on it: an open alert becomes acknowledged (still unresolved, no more notifications)."""
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.status != Alert.Status.OPEN:
            raise Conflict(f"Alert {alert.pk} is {alert.status}; only an open alert can be acknowledged.")
        alert.status, alert.acknowledged_at, alert.acknowledged_by = (
            Alert.Status.ACKNOWLEDGED,
            timezone.now(),
            actor_ref(actor),
        )
        alert.save(update_fields=["status", "acknowledged_at", "acknowledged_by"])
        audit_record(actor=actor, action="alert.acknowledged", target=alert, data={"key": alert.key})
    return alert


def alert_resolve(*, alert_id: int, actor: Any, reason: str = "resolved by hand") -> Alert:
    """A person closes an alert (its cause fixed, or not worth following)."""
    with transaction.atomic():
        alert = _locked(alert_id)
        if alert.status == Alert.Status.RESOLVED:
            raise Conflict(f"Alert {alert.pk} is already resolved.")
        _resolve(alert, actor=actor, reason=reason)
    return alert
