"""The online store: the latest source values per entity, looked up by id when a prediction is requested.

Two backends behind one small interface, chosen by FARO_ONLINE_STORE:
- `DatabaseStore`: one `OnlineFeatureRow` per (dataset, entity), upserted in chunks (SQLite and PostgreSQL).
- `RedisStore`: one hash per entity under `faro:online:<dataset>:<entity>` with the fields `values` (JSON),
  `event_time` and `materialised_at` (ISO 8601, empty when unknown) and `dataset_version`.

`materialise` reads a dataset version's Parquet file batch by batch, keeps each entity's latest row (by a
timestamp column, or the last row in file order) and writes those rows to a store in chunks. A store is
upserted, never cleared: an entity missing from a newer version keeps its older values and their times.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction

from apps.core.errors import Unavailable
from apps.data.models import Dataset, DatasetVersion
from apps.features.models import OnlineFeatureRow, OnlineStoreKind

BATCH_ROWS = 65_536
WRITE_CHUNK = 1_000
REDIS_PREFIX = "faro:online"
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

# What a lookup returns per entity: (values, event_time, materialised_at).
Stored = tuple[dict[str, Any], dt.datetime | None, dt.datetime]


@dataclass(frozen=True)
class EntityRow:
    entity_id: str
    values: dict[str, Any]
    event_time: dt.datetime | None


class OnlineStore:
    """Where the latest values per entity live. Writes are upserts; reads take many ids in one round trip."""

    name: str = ""

    def write(
        self,
        *,
        dataset: Dataset,
        dataset_version: DatasetVersion,
        rows: Sequence[EntityRow],
        materialised_at: dt.datetime,
    ) -> int:
        raise NotImplementedError

    def get_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> dict[str, Stored]:
        raise NotImplementedError

    def delete_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> int:
        raise NotImplementedError

    def entity_ids(self, dataset: Dataset) -> Iterator[str]:
        """Every entity id the store holds for `dataset`, streamed (erasure by a subject's digest matches on them)."""
        raise NotImplementedError


class DatabaseStore(OnlineStore):
    name = OnlineStoreKind.DATABASE

    def write(
        self,
        *,
        dataset: Dataset,
        dataset_version: DatasetVersion,
        rows: Sequence[EntityRow],
        materialised_at: dt.datetime,
    ) -> int:
        objects = [
            OnlineFeatureRow(
                dataset=dataset,
                entity_id=row.entity_id,
                values=row.values,
                event_time=row.event_time,
                materialised_at=materialised_at,
                dataset_version=dataset_version,
            )
            for row in rows
        ]
        with transaction.atomic():
            OnlineFeatureRow.objects.bulk_create(
                objects,
                batch_size=WRITE_CHUNK,
                update_conflicts=True,
                unique_fields=["dataset", "entity_id"],
                update_fields=["values", "event_time", "materialised_at", "dataset_version"],
            )
        return len(objects)

    def get_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> dict[str, Stored]:
        found = OnlineFeatureRow.objects.filter(dataset=dataset, entity_id__in=set(entity_ids)).values_list(
            "entity_id", "values", "event_time", "materialised_at"
        )
        return {
            entity_id: (values, event_time, materialised_at) for entity_id, values, event_time, materialised_at in found
        }

    def delete_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> int:
        deleted, _ = OnlineFeatureRow.objects.filter(dataset=dataset, entity_id__in=set(entity_ids)).delete()
        return deleted

    def entity_ids(self, dataset: Dataset) -> Iterator[str]:
        rows = OnlineFeatureRow.objects.filter(dataset=dataset).order_by().values_list("entity_id", flat=True)
        return rows.iterator(chunk_size=10_000)


_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def _redis_client(url: str) -> Any:
    """One client (and connection pool) per URL and process."""
    import redis

    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5, socket_connect_timeout=5)
            _clients[url] = client
        return client


def _iso(moment: dt.datetime | None) -> str:
    return moment.isoformat() if moment is not None else ""


def _moment(text: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class RedisStore(OnlineStore):
    name = OnlineStoreKind.REDIS

    def __init__(self, url: str) -> None:
        self.url = url

    @staticmethod
    def key(dataset: Dataset, entity_id: str) -> str:
        return f"{REDIS_PREFIX}:{dataset.name}:{entity_id}"

    def _run(self, commands: Callable[[Any], None]) -> list[Any]:
        import redis

        try:
            pipe = _redis_client(self.url).pipeline(transaction=False)
            commands(pipe)
            return pipe.execute()
        except redis.RedisError as exc:
            raise Unavailable(f"The online store (Redis) is unavailable: {exc}") from None

    def write(
        self,
        *,
        dataset: Dataset,
        dataset_version: DatasetVersion,
        rows: Sequence[EntityRow],
        materialised_at: dt.datetime,
    ) -> int:
        stamp = _iso(materialised_at)
        for start in range(0, len(rows), WRITE_CHUNK):

            def commands(pipe: Any, chunk: Sequence[EntityRow] = rows[start : start + WRITE_CHUNK]) -> None:
                for row in chunk:
                    pipe.hset(
                        self.key(dataset, row.entity_id),
                        mapping={
                            "values": json.dumps(row.values, separators=(",", ":"), allow_nan=False),
                            "event_time": _iso(row.event_time),
                            "materialised_at": stamp,
                            "dataset_version": str(dataset_version.number),
                        },
                    )

            self._run(commands)
        return len(rows)

    def get_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> dict[str, Stored]:
        ids = list(dict.fromkeys(entity_ids))
        if not ids:
            return {}
        replies = self._run(lambda pipe: [pipe.hgetall(self.key(dataset, entity_id)) for entity_id in ids])
        return {
            entity_id: (json.loads(reply["values"]), _moment(reply["event_time"]), _moment(reply["materialised_at"]))
            for entity_id, reply in zip(ids, replies, strict=True)
            if reply
        }

    def delete_many(self, dataset: Dataset, entity_ids: Iterable[str]) -> int:
        keys = [self.key(dataset, entity_id) for entity_id in dict.fromkeys(entity_ids)]
        if not keys:
            return 0
        return int(self._run(lambda pipe: pipe.delete(*keys))[0])

    def entity_ids(self, dataset: Dataset) -> Iterator[str]:
        """SCAN over the dataset's key prefix, in steps, so Redis is never blocked as KEYS would block it (SCAN may
        name a key twice)."""
        import redis

        prefix = self.key(dataset, "")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        try:
            for key in _redis_client(self.url).scan_iter(match=pattern, count=1_000):
                yield key[len(prefix) :]
        except redis.RedisError as exc:
            raise Unavailable(f"The online store (Redis) is unavailable: {exc}") from None


def store_named(name: str) -> OnlineStore:
    if name == OnlineStoreKind.DATABASE:
        return DatabaseStore()
    if name == OnlineStoreKind.REDIS:
        if not settings.REDIS_URL:
            raise Unavailable("The online store is Redis, but REDIS_URL is not set.")
        return RedisStore(settings.REDIS_URL)
    raise Unavailable(f"Unknown online store {name!r}.")


def store_for_settings() -> OnlineStore:
    """The store FARO_ONLINE_STORE names: Redis when REDIS_URL is set, else the database, unless forced."""
    return store_named(settings.FARO_ONLINE_STORE)


# -- materialisation ------------------------------------------------------------------------------------


def json_safe(value: Any) -> Any:
    """A Parquet value as JSON: dates and times as ISO 8601 text, NaN and infinities as null."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    return str(value)


def _micros(array: Any) -> list[int | None]:
    """A timestamp or date column as microseconds since the epoch, UTC (naive times are taken as UTC)."""
    import pyarrow as pa

    if pa.types.is_date(array.type):
        array = array.cast(pa.timestamp("us"))
    else:
        array = array.cast(pa.timestamp("us", tz=array.type.tz))
    return array.cast(pa.int64()).to_pylist()


def _event_time(micros: int | None) -> dt.datetime | None:
    return None if micros is None else _EPOCH + dt.timedelta(microseconds=micros)


def _newer(stamp: int | None, current: int | None) -> bool:
    """Does a later row with `stamp` replace the kept row with `current`? A row without a time never
    replaces one with a time; on a tie the later row wins."""
    if stamp is None:
        return current is None
    return current is None or stamp >= current


@dataclass
class MaterialisationResult:
    rows_read: int
    rows_written: int


def materialise(
    *,
    path: Path,
    dataset: Dataset,
    dataset_version: DatasetVersion,
    key_column: str,
    timestamp_column: str,
    store: OnlineStore,
    materialised_at: dt.datetime,
    on_progress: Callable[[float], None] | None = None,
    batch_rows: int = BATCH_ROWS,
    chunk_rows: int = WRITE_CHUNK,
) -> MaterialisationResult:
    """Write each entity's latest row of a Parquet file to `store`, reading it in batches.

    Two passes, so memory holds one small tuple per entity rather than the table: the first finds each
    entity's winning row (latest `timestamp_column`, else the last row); the second writes those rows.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    report = on_progress or (lambda fraction: None)
    parquet = pq.ParquetFile(path)
    total = max(parquet.metadata.num_rows, 1)
    columns = [key_column] + ([timestamp_column] if timestamp_column else [])
    best: dict[str, tuple[int | None, int]] = {}
    base = 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
        keys = batch.column(0).to_pylist()
        stamps = _micros(batch.column(1)) if timestamp_column else [None] * len(keys)
        for offset, (key, stamp) in enumerate(zip(keys, stamps, strict=True)):
            if key is None:
                continue
            entity = str(key)
            kept = best.get(entity)
            if kept is None or _newer(stamp, kept[0]):
                best[entity] = (stamp, base + offset)
        base += len(keys)
        report(0.5 * base / total)
    rows_read = base
    winners = np.fromiter(sorted(index for _, index in best.values()), dtype=np.int64, count=len(best))
    del best
    written = 0
    pending: list[EntityRow] = []

    def flush() -> None:
        nonlocal written
        if pending:
            written += store.write(
                dataset=dataset, dataset_version=dataset_version, rows=pending, materialised_at=materialised_at
            )
            pending.clear()
            report(0.5 + 0.5 * written / max(len(winners), 1))

    base = 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        low, high = np.searchsorted(winners, [base, base + batch.num_rows])
        if high > low:
            chosen = batch.take(pa.array(winners[low:high] - base))
            stamps = _micros(chosen.column(timestamp_column)) if timestamp_column else [None] * chosen.num_rows
            for record, stamp in zip(chosen.to_pylist(), stamps, strict=True):
                pending.append(
                    EntityRow(
                        entity_id=str(record[key_column]),
                        values={name: json_safe(value) for name, value in record.items()},
                        event_time=_event_time(stamp),
                    )
                )
                if len(pending) >= chunk_rows:
                    flush()
        base += batch.num_rows
    flush()
    return MaterialisationResult(rows_read=rows_read, rows_written=written)


# -- reads ----------------------------------------------------------------------------------------------


def materialisation_job_get(*, job_id: int) -> Any:
    from apps.core.errors import NotFound
    from apps.features.models import MaterialisationJob

    job = MaterialisationJob.objects.filter(pk=job_id).select_related("dataset_version__dataset").first()
    if job is None:
        raise NotFound(f"No materialisation job {job_id}.")
    return job


def entity_get(*, dataset: Dataset, entity_id: str) -> Stored:
    """One entity's values and their times; NotFound names the entity when the store does not know it."""
    from apps.core.errors import NotFound

    found = store_for_settings().get_many(dataset, [entity_id]).get(entity_id)
    if found is None:
        raise NotFound(f"Unknown entity {entity_id!r} in the online store of {dataset.name}.")
    return found
