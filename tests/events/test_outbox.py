"""The outbox: events exist iff their transaction commits; deliveries are signed, retried with backoff,
claimed by one worker at a time, and visible and retryable in the console. Deliveries go to a real HTTP
server on loopback."""

import json
import socket
import threading
import time
from collections import deque
from datetime import UTC, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, transaction
from django.urls import reverse

from apps.core.errors import Conflict, InvalidInput
from apps.events import tasks
from apps.events.delivery import backoff_seconds, sign, verify
from apps.events.models import OutboxEvent, WebhookDelivery
from apps.events.services import (
    deliveries_due,
    delivery_attempt,
    event_emit,
    webhook_create,
    webhook_delivery_retry,
)
from config.celery import app as celery_app

SECRET_ENV = "FARO_WEBHOOK_SECRET_TEST"
SECRET = "s3cret-for-tests"
KIND = "model_version.ready"


class Receiver:
    """What the webhook server saw, and how it answers: statuses queued in order, then 200."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.requests: list[dict] = []
        self.statuses: deque[int] = deque()
        self.delay = 0.0
        self.lock = threading.Lock()

    def url(self, path: str = "/hook") -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def answer(self, *statuses: int) -> None:
        self.statuses.extend(statuses)

    def next_status(self) -> int:
        with self.lock:
            return self.statuses.popleft() if self.statuses else 200


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        receiver: Receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with receiver.lock:
            receiver.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
        time.sleep(receiver.delay)
        status = receiver.next_status()
        reply = b"ok" if status < 300 else b"receiver says no"
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/elsewhere")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format, *args):
        pass


@pytest.fixture
def receiver():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.receiver = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.receiver
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return SECRET.encode()


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def hook(receiver: Receiver, name: str = "crm", **fields):
    return webhook_create(name=name, url=fields.pop("url", receiver.url(f"/{name}")), secret_env=SECRET_ENV, **fields)


def emit_uncommitted(kind: str = KIND, payload: dict | None = None) -> OutboxEvent:
    """Inside a test's transaction, which never commits: the deliveries exist, no task has run."""
    with transaction.atomic():
        return event_emit(kind=kind, payload=payload or {"model": "loan-risk", "version": 3})


# --- the transaction boundary -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_event_emit_outside_a_transaction_is_a_programming_error(receiver):
    hook(receiver)
    with pytest.raises(RuntimeError, match="inside the transaction"):
        event_emit(kind=KIND, payload={})
    assert not OutboxEvent.objects.exists()
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_rolled_back_change_leaves_no_event_no_delivery_no_request(receiver, secret):
    hook(receiver)

    class Boom(Exception):
        pass

    with pytest.raises(Boom), transaction.atomic():
        event_emit(kind=KIND, payload={"model": "loan-risk"})
        raise Boom

    assert not OutboxEvent.objects.exists()
    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


@pytest.mark.django_db(transaction=True)
def test_committed_event_is_posted_once_signed_with_the_secret_from_the_environment(receiver, secret):
    webhook = hook(receiver)
    with transaction.atomic():
        event = event_emit(kind=KIND, payload={"model": "loan-risk", "version": 3})

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    delivery = WebhookDelivery.objects.get()
    headers = request["headers"]
    assert request["path"] == "/crm"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Faro-Event"] == KIND
    assert headers["X-Faro-Delivery"] == str(delivery.pk)
    timestamp, signature = headers["X-Faro-Timestamp"], headers["X-Faro-Signature"]
    assert verify(secret, timestamp, request["body"], signature, now=time.time())
    assert not verify(b"another secret", timestamp, request["body"], signature, now=time.time())
    event = OutboxEvent.objects.get(pk=event.pk)
    assert json.loads(request["body"]) == {
        "id": str(event.event_id),
        "kind": KIND,
        "created_at": event.created_at.astimezone(UTC).isoformat(),
        "payload": {"model": "loan-risk", "version": 3},
    }
    assert (delivery.webhook, delivery.event, delivery.status) == (webhook, event, WebhookDelivery.Status.DELIVERED)
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert delivery.next_attempt_at is None
    assert delivery.delivered_at is not None
    assert SECRET not in request["body"].decode() and SECRET not in json.dumps(headers)


@pytest.mark.django_db
def test_only_active_webhooks_that_want_the_kind_get_a_delivery(receiver, secret, django_capture_on_commit_callbacks):
    everything = hook(receiver, "everything")
    wants_it = hook(receiver, "wants-it", event_kinds=[KIND, "model_version.promoted"])
    hook(receiver, "other-kind", event_kinds=["dataset_version.created"])
    hook(receiver, "inactive", active=False)

    with django_capture_on_commit_callbacks(execute=True):
        event = emit_uncommitted()

    assert set(event.deliveries.values_list("webhook", flat=True)) == {everything.pk, wants_it.pk}
    assert sorted(request["path"] for request in receiver.requests) == ["/everything", "/wants-it"]
    assert set(event.deliveries.values_list("status", flat=True)) == {WebhookDelivery.Status.DELIVERED}


# --- retries and backoff ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_500_is_retried_after_the_base_backoff_and_then_delivered(receiver, secret):
    hook(receiver)
    receiver.answer(500)
    event = emit_uncommitted()
    delivery = event.deliveries.get()
    start = event.created_at + timedelta(seconds=1)

    first = delivery_attempt(delivery_id=delivery.pk, now=start)
    assert (first.status, first.attempts, first.last_status_code) == (WebhookDelivery.Status.PENDING, 1, 500)
    assert first.last_error == "HTTP 500: receiver says no"
    assert first.next_attempt_at == start + timedelta(seconds=30)

    early = delivery_attempt(delivery_id=delivery.pk, now=start + timedelta(seconds=29))
    assert (early.attempts, early.next_attempt_at) == (1, start + timedelta(seconds=30))
    assert len(receiver.requests) == 1

    second = delivery_attempt(delivery_id=delivery.pk, now=start + timedelta(seconds=30))
    assert (second.status, second.attempts, second.last_status_code) == (WebhookDelivery.Status.DELIVERED, 2, 200)
    assert (second.last_error, second.next_attempt_at) == ("", None)
    assert second.delivered_at == start + timedelta(seconds=30)
    assert len(receiver.requests) == 2
    assert receiver.requests[1]["headers"]["X-Faro-Timestamp"] == str(int((start + timedelta(seconds=30)).timestamp()))


@pytest.mark.django_db
def test_backoff_doubles_up_to_an_hour_then_the_delivery_fails_after_the_last_attempt(receiver, secret, settings):
    settings.FARO_WEBHOOK_MAX_ATTEMPTS = 10
    hook(receiver)
    receiver.answer(*[503] * 10)
    delivery = emit_uncommitted().deliveries.get()
    now = delivery.next_attempt_at

    waits = []
    for _ in range(9):
        delivery = delivery_attempt(delivery_id=delivery.pk, now=now)
        waits.append((delivery.next_attempt_at - now).total_seconds())
        now = delivery.next_attempt_at
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]

    delivery = delivery_attempt(delivery_id=delivery.pk, now=now)
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == (WebhookDelivery.Status.FAILED, 10, None)
    assert (delivery.last_status_code, delivery.last_error) == (503, "HTTP 503: receiver says no")
    assert len(receiver.requests) == 10

    after = delivery_attempt(delivery_id=delivery.pk, now=now + timedelta(days=1))
    assert (after.status, after.attempts) == (WebhookDelivery.Status.FAILED, 10)
    assert len(receiver.requests) == 10


@pytest.mark.django_db
def test_default_maximum_is_eight_attempts(receiver, secret):
    hook(receiver)
    receiver.answer(*[500] * 8)
    delivery = emit_uncommitted().deliveries.get()
    now = delivery.next_attempt_at
    statuses = []
    for _ in range(8):
        delivery = delivery_attempt(delivery_id=delivery.pk, now=now)
        statuses.append(delivery.status)
        now = delivery.next_attempt_at
    assert statuses == [WebhookDelivery.Status.PENDING] * 7 + [WebhookDelivery.Status.FAILED]
    assert delivery.attempts == 8


def test_backoff_and_signature_helpers():
    assert [backoff_seconds(n, base=30) for n in (1, 2, 3, 8, 9, 1000)] == [30, 60, 120, 3600, 3600, 3600]
    body = b'{"id":"x"}'
    signature = sign(b"k", 1_700_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == len("sha256=") + 64
    assert verify(b"k", "1700000000", body, signature, now=1_700_000_300)
    assert not verify(b"k", 1_700_000_000, body, signature, now=1_700_000_301)  # too old: a replay
    assert not verify(b"k", 1_700_000_000, body + b" ", signature, now=1_700_000_000)  # body changed
    assert not verify(b"k", 1_700_000_001, body, signature, now=1_700_000_000)  # timestamp changed
    assert not verify(b"k", "soon", body, signature, now=1_700_000_000)


# --- failures that never reach a 2xx ------------------------------------------------------------------


@pytest.mark.django_db
def test_missing_secret_variable_fails_the_attempt_without_a_request(receiver, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    hook(receiver)
    delivery = emit_uncommitted().deliveries.get()
    now = delivery.next_attempt_at

    delivery = delivery_attempt(delivery_id=delivery.pk, now=now)

    assert delivery.last_error == f"environment variable {SECRET_ENV} is not set"
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (WebhookDelivery.Status.PENDING, 1, None)
    assert delivery.next_attempt_at == now + timedelta(seconds=30)
    assert receiver.requests == []


@pytest.mark.django_db
def test_connection_refused_is_recorded_and_retried(receiver, secret):
    hook(receiver, url=closed_port_url())
    delivery = emit_uncommitted().deliveries.get()
    now = delivery.next_attempt_at

    delivery = delivery_attempt(delivery_id=delivery.pk, now=now)

    assert delivery.last_error.startswith("request failed: ConnectionRefusedError:")
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (WebhookDelivery.Status.PENDING, 1, None)
    assert delivery.next_attempt_at == now + timedelta(seconds=30)


@pytest.mark.django_db
def test_a_redirect_is_a_failure_and_is_not_followed(receiver, secret):
    hook(receiver)
    receiver.answer(302)
    delivery = emit_uncommitted().deliveries.get()

    delivery = delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)

    assert (delivery.status, delivery.last_status_code) == (WebhookDelivery.Status.PENDING, 302)
    assert [request["path"] for request in receiver.requests] == ["/crm"]


# --- one worker per delivery --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_attempts_on_one_delivery_send_one_request(receiver, secret, monkeypatch):
    hook(receiver)
    # The first attempt, run on commit, finds no secret: the delivery stays pending, nothing is sent.
    monkeypatch.delenv(SECRET_ENV)
    with transaction.atomic():
        event_emit(kind=KIND, payload={"model": "loan-risk"})
    delivery = WebhookDelivery.objects.get()
    assert (delivery.attempts, receiver.requests) == (1, [])
    monkeypatch.setenv(SECRET_ENV, SECRET)
    receiver.delay = 0.5  # both workers are inside delivery_attempt while the first request is in flight
    due = delivery.next_attempt_at
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            barrier.wait(timeout=10)
            results.append(delivery_attempt(delivery_id=delivery.pk, now=due))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert errors == []
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookDelivery.Status.DELIVERED, 2)


# --- the retry task -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_deliveries_due_attempts_pending_due_deliveries_of_active_webhooks_only(receiver, secret):
    crm = hook(receiver, "crm")
    paused = hook(receiver, "paused")
    first = emit_uncommitted(payload={"n": 1})
    later = emit_uncommitted(payload={"n": 2})
    paused.active = False
    paused.save()
    not_yet = later.deliveries.get(webhook=crm)
    WebhookDelivery.objects.filter(pk=not_yet.pk).update(next_attempt_at=not_yet.next_attempt_at + timedelta(hours=1))

    assert deliveries_due(now=first.created_at - timedelta(seconds=1)) == 0
    assert tasks.deliveries_retry.delay().get() == 1

    assert [json.loads(request["body"])["payload"] for request in receiver.requests] == [{"n": 1}]
    assert first.deliveries.get(webhook=crm).status == WebhookDelivery.Status.DELIVERED
    assert first.deliveries.get(webhook=paused).status == WebhookDelivery.Status.PENDING
    assert deliveries_due() == 0


def test_beat_runs_the_retry_task(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["events.deliveries_retry"]
    assert entry["task"] == "events.deliveries_retry"
    assert entry["schedule"] == timedelta(seconds=settings.FARO_WEBHOOK_RETRY_SECONDS)
    assert {"events.deliveries_retry", "events.delivery_attempt"} <= set(celery_app.tasks)


# --- configuration ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_configuration_is_validated():
    with pytest.raises(InvalidInput) as caught:
        webhook_create(name="bad", url="ftp://example.com/x", secret_env="my secret value", event_kinds=["Bad Kind"])
    assert set(caught.value.extra["fields"]) == {"url", "secret_env", "event_kinds"}
    internal = webhook_create(name="ok", url="http://crm:8080/hooks/faro", secret_env="CRM_HOOK_SECRET")
    assert internal.wants("anything.at_all")


# --- the console --------------------------------------------------------------------------------------


@pytest.fixture
def failed_delivery(receiver, secret, settings) -> WebhookDelivery:
    settings.FARO_WEBHOOK_MAX_ATTEMPTS = 1
    hook(receiver)
    receiver.answer(500)
    delivery = emit_uncommitted().deliveries.get()
    delivery = delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)
    assert delivery.status == WebhookDelivery.Status.FAILED
    return delivery


@pytest.mark.django_db
def test_console_lists_webhooks_events_and_deliveries(admin_client, failed_delivery):
    webhooks = admin_client.get(reverse("admin:events_webhook_changelist")).content.decode()
    assert "crm" in webhooks and "all" in webhooks
    event_page = admin_client.get(reverse("admin:events_outboxevent_change", args=[failed_delivery.event_id]))
    assert event_page.status_code == 200 and "HTTP 500: receiver says no" in event_page.content.decode()
    changelist = reverse("admin:events_webhookdelivery_changelist")
    for query in ("", "?status=failed", f"?event__kind={KIND}", f"?webhook__id__exact={failed_delivery.webhook_id}"):
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        assert response.context["cl"].result_count == 1
    assert admin_client.get(changelist + "?status=delivered").context["cl"].result_count == 0
    assert admin_client.get(reverse("admin:events_outboxevent_add")).status_code == 403


@pytest.mark.django_db
def test_retry_now_sends_a_failed_delivery_again(
    admin_client, failed_delivery, receiver, settings, django_capture_on_commit_callbacks
):
    settings.FARO_WEBHOOK_MAX_ATTEMPTS = 8
    changelist = reverse("admin:events_webhookdelivery_changelist")
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            changelist, {"action": "retry_now", helpers.ACTION_CHECKBOX_NAME: [failed_delivery.pk]}, follow=True
        )
    assert "1 delivery queued for a new attempt." in response.content.decode()
    failed_delivery.refresh_from_db()
    assert (failed_delivery.status, failed_delivery.attempts) == (WebhookDelivery.Status.DELIVERED, 1)
    assert len(receiver.requests) == 2

    response = admin_client.post(
        changelist, {"action": "retry_now", helpers.ACTION_CHECKBOX_NAME: [failed_delivery.pk]}, follow=True
    )
    assert (
        f"Delivery #{failed_delivery.pk} is delivered; only failed deliveries can be retried."
        in response.content.decode()
    )
    with pytest.raises(Conflict):
        webhook_delivery_retry(delivery=failed_delivery)
    assert len(receiver.requests) == 2


@pytest.mark.django_db
def test_staff_who_may_only_view_deliveries_cannot_retry(client, failed_delivery, receiver):
    viewer = get_user_model().objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client.force_login(viewer)
    changelist = reverse("admin:events_webhookdelivery_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "retry_now", helpers.ACTION_CHECKBOX_NAME: [failed_delivery.pk]})
    failed_delivery.refresh_from_db()
    assert (failed_delivery.status, failed_delivery.attempts) == (WebhookDelivery.Status.FAILED, 1)
    assert len(receiver.requests) == 1
