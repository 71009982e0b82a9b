"""Celery queue depth and the age of the oldest waiting message, per queue, for the metrics scrape.

The Prometheus collector calls `queue_stats()` from the web process at scrape time, so every path here is
bounded (one Redis round trip, one directory listing, or one passive declare per queue, all under
`timeout`) and nothing raises: when the broker fails, the stats gathered so far are returned (usually
none) and a warning is logged once per broker until it answers again.

Age needs the publish time, which Celery messages do not carry: `record_published_at` (connected to
`before_task_publish` in `MonitoringConfig.ready`) stamps every task message with the
`faro_published_at` header. Messages published without it (by older code, or by plain kombu) count in
the depth with an unknown age.

Depth counts messages waiting in the queue. Messages a worker has already taken (reserved, or held
until their ETA) are not waiting and are not counted.
"""

import contextlib
import heapq
import json
import logging
import os
import time
from bisect import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from celery import Celery, current_app
from kombu import Connection
from kombu.transport import filesystem as kombu_filesystem
from kombu.transport import redis as kombu_redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

PUBLISHED_AT_HEADER = "faro_published_at"
DEFAULT_TIMEOUT_SECONDS = 1.0
# A file can be consumed between the listing and the read; try the next oldest a few times, no more.
_FILESYSTEM_READ_ATTEMPTS = 3

# Brokers whose last scrape failed: each failure episode is logged once, not at every scrape.
_failing_brokers: set[str] = set()


@dataclass(frozen=True)
class QueueStat:
    """One queue: messages waiting, and how long the oldest of them has waited (None: empty or unknown)."""

    name: str
    depth: int
    oldest_age_seconds: float | None


def record_published_at(sender=None, headers=None, **kwargs) -> None:
    """`before_task_publish` receiver: stamp the message with its publish time (epoch seconds).

    Always overwrites: a retried task is a new message that starts waiting now.
    """
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()


def queue_names(app: Celery | None = None) -> list[str]:
    """The queues the app publishes to: the default queue, then those in task_queues and task_routes.

    Routers given as functions or import paths cannot be read without calling them; their queues
    appear only if task_queues also names them.
    """
    conf = (app or current_app).conf
    names = [conf.task_default_queue]
    queues = conf.task_queues or ()
    names.extend(queues.keys() if isinstance(queues, Mapping) else (queue.name for queue in queues))
    routes = conf.task_routes
    for router in routes if isinstance(routes, list | tuple) else (routes,):
        if isinstance(router, Mapping):
            names.extend(_routed_queue(route) for route in router.values())
        elif isinstance(router, list | tuple):  # MapRoute also takes (pattern, route) pairs
            names.extend(_routed_queue(route) for _pattern, route in router)
    return [name for name in dict.fromkeys(names) if isinstance(name, str) and name]


def _routed_queue(route) -> str | None:
    queue = route.get("queue") if isinstance(route, Mapping) else route
    return queue if isinstance(queue, str) else getattr(queue, "name", None)


def queue_stats(
    app: Celery | None = None, now: float | None = None, *, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> list[QueueStat]:
    """Depth and oldest-message age of each of the app's queues (see `queue_names`), in that order.

    - Redis (redis://, rediss://): one MULTI/EXEC of LLEN and LINDEX -1 over every priority list of
      every queue; the age is that of the oldest stamped message at the tails of those lists. When
      some tails carry no stamp, the age is a lower bound.
    - Filesystem: one listing of data_folder_in (where consumers take messages from, as kombu's own
      queue size does); the age comes from the oldest file's stamp, else from its modification time.
    - Anything else (AMQP, Redis over a Unix socket or Sentinel, SQS, memory): depth from a passive
      queue declare per queue, through kombu, with connection retries off; the age is None. A queue
      the broker does not know yet has depth 0.

    `now` (epoch seconds) defaults to the current time; `timeout` bounds each network wait.
    Never raises: on a broker error, returns what was gathered (usually nothing) and logs a warning
    once until the broker answers again.
    """
    app = app or current_app
    now = time.time() if now is None else now
    stats: list[QueueStat] = []
    broker = "the Celery broker"
    try:
        names = queue_names(app)
        conn = app.connection_for_read(
            connect_timeout=timeout,
            transport_options={"socket_timeout": timeout, "socket_connect_timeout": timeout, "max_retries": 0},
        )
        broker = conn.as_uri()  # password masked: this goes to the log
        try:
            transport = conn.transport
            if _is_plain_redis(conn, transport):
                stats.extend(_redis_stats(conn, transport, names, now, timeout))
            elif isinstance(transport, kombu_filesystem.Transport):
                stats.extend(_filesystem_stats(conn, names, now))
            else:
                _declared_stats(conn, names, stats)
        finally:
            conn.release()
    except Exception as exc:
        if broker not in _failing_brokers:
            _failing_brokers.add(broker)
            logger.warning("Queue stats unavailable from %s: %s: %s", broker, type(exc).__name__, exc)
        return stats
    if broker in _failing_brokers:
        _failing_brokers.discard(broker)
        logger.info("Queue stats available again from %s", broker)
    return stats


def _published_at(raw: bytes | str) -> float | None:
    """The stamp in a kombu JSON envelope ({"body": ..., "headers": {...}, ...}), if there is one."""
    try:
        value = json.loads(raw)["headers"][PUBLISHED_AT_HEADER]
    except (ValueError, TypeError, KeyError):
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _age(now: float, published_at: float) -> float:
    return max(0.0, now - published_at)  # clocks of publisher and scraper may disagree a little


# Redis ------------------------------------------------------------------------------------------------


def _is_plain_redis(conn: Connection, transport) -> bool:
    """kombu's Redis transport over TCP, with credentials in the URL: the cases `_redis_client` builds."""
    return (
        isinstance(transport, kombu_redis.Transport)
        and not isinstance(transport, kombu_redis.SentinelTransport)
        and "://" not in (conn.hostname or "")  # redis+socket:// keeps the socket URL in the host name
        and getattr(conn, "credential_provider", None) is None
    )


def _redis_keys(queue: str, steps: list[int], sep: str, prefix: str) -> list[str]:
    """The lists kombu keeps `queue` in, one per priority step (kombu.transport.redis.Channel._q_for_pri).

    A message goes to the list of the highest step not above its priority; the list of step 0 (the
    default priority) is named like the queue, the others `<queue><sep><step>`. global_keyprefix is
    prepended to every key.
    """
    keys = []
    for step in steps:
        priority = steps[bisect(steps, step) - 1]
        keys.append(prefix + (f"{queue}{sep}{priority}" if priority else queue))
    return list(dict.fromkeys(keys))


def _redis_client(conn: Connection, transport, timeout: float) -> Redis:
    """A client for the broker's Redis, like kombu's (Channel._connparams), but failing fast: no retries."""
    params = {
        "host": conn.hostname or "127.0.0.1",
        "port": conn.port or transport.default_port,
        "db": _redis_db(conn.virtual_host),
        "username": conn.userid or None,
        "password": conn.password or None,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if conn.ssl:
        params["ssl"] = True
        if isinstance(conn.ssl, Mapping):  # ssl_cert_reqs, ssl_ca_certs, ssl_certfile, ssl_keyfile
            params.update(conn.ssl)
    return Redis(**params)


def _redis_db(virtual_host) -> int:
    if isinstance(virtual_host, int):
        return virtual_host
    virtual_host = (virtual_host or "").lstrip("/")
    return int(virtual_host) if virtual_host else 0


def _redis_stats(conn: Connection, transport, names: list[str], now: float, timeout: float) -> list[QueueStat]:
    options = conn.transport_options or {}
    channel = transport.Channel
    steps = list(options.get("priority_steps", channel.priority_steps))
    sep = options.get("sep", channel.sep)
    prefix = options.get("global_keyprefix", channel.global_keyprefix)
    keys = {name: _redis_keys(name, steps, sep, prefix) for name in names}
    client = _redis_client(conn, transport, timeout)
    try:
        # One transaction, so each depth and its tails describe the same moment.
        with client.pipeline(transaction=True) as pipe:
            for name in names:
                for key in keys[name]:
                    pipe.llen(key)
                    pipe.lindex(key, -1)  # LPUSH on publish, BRPOP on consume: the oldest is last
            replies = iter(pipe.execute())
    finally:
        client.close()
    stats = []
    for name in names:
        depth, stamps = 0, []
        for _key in keys[name]:
            length, tail = next(replies), next(replies)
            depth += length
            if tail is not None and (published_at := _published_at(tail)) is not None:
                stamps.append(published_at)
        stats.append(QueueStat(name, depth, _age(now, min(stamps)) if stamps else None))
    return stats


# Filesystem -------------------------------------------------------------------------------------------


def _filesystem_stats(conn: Connection, names: list[str], now: float) -> list[QueueStat]:
    """Files are named `<monotonic ms>_<uuid4>.<queue>.msg` (kombu.transport.filesystem.Channel._put)."""
    folder = Path((conn.transport_options or {}).get("data_folder_in", "data_in"))
    by_queue: dict[str, list[str]] = {name: [] for name in names}
    for filename in os.listdir(folder):
        # kombu matches a queue by everything after the first dot, so dotted queue names work.
        rest = filename.partition(".")[2]
        if rest.endswith(".msg") and rest[: -len(".msg")] in by_queue:
            by_queue[rest[: -len(".msg")]].append(filename)
    stats = []
    for name, files in by_queue.items():
        oldest = heapq.nsmallest(_FILESYSTEM_READ_ATTEMPTS, files, key=_filesystem_order)
        stats.append(QueueStat(name, len(files), _filesystem_oldest_age(folder, oldest, now)))
    return stats


def _filesystem_order(filename: str) -> tuple[int, int, str]:
    """Publish order: by the millisecond prefix as a number (kombu sorts names as text, so 999 after 1000)."""
    prefix = filename.partition("_")[0]
    return (0, int(prefix), filename) if prefix.isdigit() else (1, 0, filename)


def _filesystem_oldest_age(folder: Path, oldest: Iterable[str], now: float) -> float | None:
    for filename in oldest:
        path = folder / filename
        try:
            published_at = _published_at(path.read_bytes())
            if published_at is None:  # published without the stamp: the file's time is close enough
                published_at = path.stat().st_mtime
        except FileNotFoundError:  # consumed since the listing
            continue
        return _age(now, published_at)
    return None


# Other transports -------------------------------------------------------------------------------------


def _declared_stats(conn: Connection, names: list[str], stats: list[QueueStat]) -> None:
    """Depth from a passive declare, which every kombu transport answers; appends as it goes."""
    conn.ensure_connection(max_retries=0)
    for name in names:
        channel = conn.channel()
        try:
            _queue, depth, _consumers = channel.queue_declare(queue=name, passive=True)
        except conn.channel_errors:  # not declared yet: nothing waits there
            depth = 0
        finally:
            with contextlib.suppress(Exception):  # AMQP closes the channel itself after NOT_FOUND
                channel.close()
        stats.append(QueueStat(name, depth, None))
