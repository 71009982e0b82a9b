"""Queue depth and oldest-message age, against a real Redis, the real filesystem transport and kombu's memory
transport: real Celery messages published with send_task, no worker consuming them."""

import json
import logging
import os
import socket
import threading
import time
import uuid

import pytest
import redis
from celery import Celery
from django.conf import settings
from kombu import Queue

from apps.monitoring.queues import PUBLISHED_AT_HEADER, QueueStat, queue_names, queue_stats

# Always the local Redis, whatever REDIS_URL says: a database of its own, keys named per test.
REDIS_URL = "redis://127.0.0.1:6379/5"
PRIORITY_SEP = "\x06\x16"  # kombu.transport.redis.Channel.sep


def unique_name() -> str:
    return f"faro-test-queues-{uuid.uuid4().hex[:12]}"


def celery_app(broker: str, queue: str, **conf) -> Celery:
    app = Celery("faro-queues-test", broker=broker, set_as_current=False)
    app.conf.update(task_default_queue=queue, **conf)
    return app


def published_at(raw: bytes) -> float:
    return json.loads(raw)["headers"][PUBLISHED_AT_HEADER]


@pytest.fixture
def redis_client():
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # no Redis is a failure, not a skip
    yield client
    client.close()


@pytest.fixture
def redis_queue(redis_client):
    """A unique queue name; afterwards every key naming it (lists, kombu's binding sets) is deleted."""
    name = unique_name()
    yield name
    keys = list(redis_client.scan_iter(match=f"*{name}*"))
    if keys:
        redis_client.delete(*keys)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_queue_names_come_from_the_app_configuration():
    app = celery_app(
        "memory://",
        "main",
        task_queues=[Queue("main"), Queue("training"), Queue("scoring")],
        task_routes=[
            {"registry.*": {"queue": "training"}, "predictions.batch": "batch", "drift": {"queue": Queue("drift")}},
            [("events.*", {"queue": "events"})],
            "apps.core.routers.route_task",  # a router by import path: its queues cannot be read
        ],
    )

    assert queue_names(app) == ["main", "training", "scoring", "batch", "drift", "events"]


def test_faro_app_is_the_default():
    assert queue_names()[0] == settings.CELERY_TASK_DEFAULT_QUEUE


def test_published_tasks_carry_their_publish_time(redis_client, redis_queue):
    app = celery_app(REDIS_URL, redis_queue)
    before = time.time()
    app.send_task("tests.noop")
    after = time.time()
    app.close()

    assert before <= published_at(redis_client.lindex(redis_queue, -1)) <= after


def test_redis_depth_counts_every_priority_list_and_age_is_the_oldest(redis_client, redis_queue):
    app = celery_app(REDIS_URL, redis_queue)
    for priority in (9, None, None, 5, 9):
        app.send_task("tests.noop", priority=priority)
    app.close()

    # kombu keeps priorities 0-2 in the queue's own list, 3-5 in <queue>SEP3, 6-8 in SEP6, 9 in SEP9.
    lengths = {key.decode(): redis_client.llen(key) for key in redis_client.scan_iter(match=f"{redis_queue}*")}
    assert lengths == {redis_queue: 2, f"{redis_queue}{PRIORITY_SEP}3": 1, f"{redis_queue}{PRIORITY_SEP}9": 2}
    first = published_at(redis_client.lindex(f"{redis_queue}{PRIORITY_SEP}9", -1))  # the first one published
    assert first < published_at(redis_client.lindex(redis_queue, -1))

    assert queue_stats(app, now=first + 12.5) == [QueueStat(redis_queue, 5, 12.5)]


def test_redis_age_grows_while_messages_wait(redis_queue):
    app = celery_app(REDIS_URL, redis_queue)
    app.send_task("tests.noop")
    app.send_task("tests.noop")
    app.close()
    deadline = time.monotonic() + 5
    while (stat := queue_stats(app)[0]).oldest_age_seconds < 0.2:  # wait until the oldest has waited 0.2 s
        assert time.monotonic() < deadline, f"the oldest message's age stayed at {stat.oldest_age_seconds}"
        time.sleep(0.02)

    assert (stat.name, stat.depth) == (redis_queue, 2)
    assert 0.2 <= stat.oldest_age_seconds < 10


def test_redis_messages_without_the_header_count_with_unknown_age(redis_client, redis_queue):
    app = celery_app(REDIS_URL, redis_queue)
    with app.connection_for_write() as conn, conn.SimpleQueue(redis_queue) as queue:  # plain kombu: no stamp
        queue.put({"published": "by older code"})
        queue.put({"published": "by older code"})

    assert queue_stats(app) == [QueueStat(redis_queue, 2, None)]

    app.send_task("tests.noop", priority=9)  # a stamped message in another priority list
    app.close()
    stamp = published_at(redis_client.lindex(f"{redis_queue}{PRIORITY_SEP}9", -1))

    assert queue_stats(app, now=stamp + 3.0) == [QueueStat(redis_queue, 3, 3.0)]


def test_redis_empty_and_routed_queues(redis_queue):
    other = f"{redis_queue}-other"
    app = celery_app(REDIS_URL, redis_queue, task_routes={"tests.other": {"queue": other}})
    app.send_task("tests.other")
    app.close()

    [default, routed] = queue_stats(app)

    assert default == QueueStat(redis_queue, 0, None)
    assert (routed.name, routed.depth) == (other, 1)
    assert routed.oldest_age_seconds is not None


def test_redis_global_key_prefix(redis_client, redis_queue):
    prefix = f"{redis_queue}:"
    app = celery_app(REDIS_URL, redis_queue, broker_transport_options={"global_keyprefix": prefix})
    app.send_task("tests.noop")
    app.send_task("tests.noop", priority=4)
    app.close()
    stamp = published_at(redis_client.lindex(f"{prefix}{redis_queue}", -1))

    assert redis_client.llen(f"{prefix}{redis_queue}{PRIORITY_SEP}3") == 1
    assert queue_stats(app, now=stamp + 1.0) == [QueueStat(redis_queue, 2, 1.0)]


def test_redis_down_returns_nothing_quickly_and_warns_once(caplog):
    app = celery_app(f"redis://127.0.0.1:{closed_port()}/5", unique_name())
    caplog.set_level(logging.WARNING, logger="apps.monitoring.queues")

    started = time.monotonic()
    results = [queue_stats(app, timeout=0.3), queue_stats(app, timeout=0.3)]
    elapsed = time.monotonic() - started

    assert results == [[], []]
    assert elapsed < 5
    warnings = [record for record in caplog.records if record.name == "apps.monitoring.queues"]
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0].getMessage()


def test_redis_that_never_answers_times_out():
    with socket.socket() as server:  # accepts connections (the kernel's backlog) and never replies
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        app = celery_app(f"redis://127.0.0.1:{server.getsockname()[1]}/5", unique_name())

        result: list = []
        worker = threading.Thread(target=lambda: result.append(queue_stats(app, timeout=0.3)), daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(timeout=10)
        elapsed = time.monotonic() - started

    assert result == [[]]
    assert elapsed < 5


@pytest.fixture
def broker_folder(tmp_path):
    for folder in ("queue", "control"):
        (tmp_path / folder).mkdir()
    return tmp_path


def filesystem_app(folder, queue: str, **conf) -> Celery:
    options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "control_folder": str(folder / "control"),
    }
    return celery_app("filesystem://localhost//", queue, broker_transport_options=options, **conf)


def queue_files(folder) -> list[str]:
    return sorted(os.listdir(folder / "queue"), key=lambda name: int(name.partition("_")[0]))


def test_filesystem_depth_and_age(broker_folder):
    name = unique_name()
    dotted = f"{name}.retry"  # kombu takes everything after the first dot as the queue: no mix-up
    app = filesystem_app(broker_folder, name, task_routes={"tests.retry": {"queue": dotted}})
    for _ in range(3):
        app.send_task("tests.noop")
        published_ms = round(time.monotonic() * 1000)
        while round(time.monotonic() * 1000) == published_ms:  # distinct millisecond prefixes, so the
            pass  # publish order is the file order: wait for the clock's next millisecond
    app.send_task("tests.retry")
    app.close()

    files = queue_files(broker_folder)
    assert [file.partition(".")[2] for file in files] == [f"{name}.msg"] * 3 + [f"{dotted}.msg"]
    first = published_at((broker_folder / "queue" / files[0]).read_bytes())
    retry_stamp = published_at((broker_folder / "queue" / files[3]).read_bytes())

    assert queue_stats(app, now=first + 12.5) == [
        QueueStat(name, 3, 12.5),
        QueueStat(dotted, 1, first + 12.5 - retry_stamp),
    ]


def test_filesystem_message_without_header_takes_the_file_time(broker_folder):
    name = unique_name()
    app = filesystem_app(broker_folder, name)
    with app.connection_for_write() as conn, conn.SimpleQueue(name) as queue:  # plain kombu: no stamp
        queue.put({"published": "by older code"})
    [file] = os.listdir(broker_folder / "queue")
    os.utime(broker_folder / "queue" / file, (1_700_000_000.0, 1_700_000_000.0))

    assert queue_stats(app, now=1_700_000_007.25) == [QueueStat(name, 1, 7.25)]


def test_filesystem_empty_queue_and_missing_folder(broker_folder, caplog):
    name = unique_name()
    assert queue_stats(filesystem_app(broker_folder, name)) == [QueueStat(name, 0, None)]

    caplog.set_level(logging.WARNING, logger="apps.monitoring.queues")
    assert queue_stats(filesystem_app(broker_folder / "gone", name)) == []
    assert "FileNotFoundError" in caplog.records[-1].getMessage()


def test_other_transports_report_depth_from_a_passive_declare():
    name, never_declared = unique_name(), unique_name()
    app = celery_app("memory://", name, task_queues=[Queue(name), Queue(never_declared)])
    app.send_task("tests.noop")
    app.send_task("tests.noop")

    assert queue_stats(app) == [QueueStat(name, 2, None), QueueStat(never_declared, 0, None)]
    app.close()
