"""Point-in-time correct training tables: each label sees only the feature values known at its event time.

No Django here.

`point_in_time_join` is an "as of" join. For a label row of entity `e` at event time `t`, every feature column
takes its value from the feature row of `e` with the latest feature timestamp `<= t`; a row stamped exactly at
`t` counts as known, a row stamped a moment later does not, so a training table never holds a value from the
future of its label (the leak that makes a model look brilliant offline and fail in production).

Rules, all deliberate:

- No feature row at or before `t`, or the latest one older than `t - ttl` (strictly older; a value exactly
  `ttl` old is kept), gives nulls in every feature column and in `<feature_time>_used`.
- Two feature rows of one entity with the same timestamp: the one appearing last in the feature table wins,
  as a later write of the same moment overrides an earlier one.
- Feature rows with a null timestamp or a null entity key are ignored; labels whose entity is null or absent
  from the features get nulls (null keys never match, as in SQL).
- Labels keep their rows, their order and all their columns; the feature columns follow, then
  `<feature_time>_used`, the timestamp of the feature row used (null when none was).
- Event and feature times must both be timestamps (any units; compared exactly in the finer of the two, and
  both timezone-aware or both naive) or both dates. A label without an event time is refused.

The join is vectorised and runs in O((n + m) log m) for n labels and m feature rows: the entity keys of both
tables are encoded together as integer codes, each (code, time) pair is packed into one order-preserving int64,
the feature rows are sorted by it, and one `np.searchsorted` finds, for every label at once, the last feature
row at or before it. A million labels against a million feature rows takes well under a second.

Problems are reported as `PointInTimeError` with a message naming the column or rows to fix.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_UNITS = ("s", "ms", "us", "ns")
_MICROSECONDS_PER_UNIT = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
_MS_PER_DAY = 86_400_000
_INT64_MAX = np.iinfo(np.int64).max
_INT64_MIN = np.iinfo(np.int64).min
MAX_LISTED_ROWS = 5


class PointInTimeError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def point_in_time_join(
    labels: pa.Table,
    features: pa.Table,
    *,
    entity: str,
    label_time: str,
    feature_time: str,
    feature_columns: Sequence[str] | None = None,
    ttl: datetime.timedelta | None = None,
) -> pa.Table:
    """The labels with, for each row, the feature values known at its event time (see the module docstring)."""
    if feature_columns is None:
        feature_columns = [name for name in features.column_names if name not in (entity, feature_time)]
    feature_columns = list(feature_columns)
    used_column = f"{feature_time}_used"
    _check_columns(labels, features, entity, label_time, feature_time, feature_columns, used_column)
    ttl_microseconds = _ttl_microseconds(ttl)

    label_keys, feature_keys = _entity_keys(labels.column(entity), features.column(entity), entity)
    label_codes, feature_codes, n_codes = _encode_jointly(label_keys, feature_keys)
    label_times, feature_times, unit_microseconds = _comparable_times(
        labels.column(label_time), features.column(feature_time), label_time, feature_time
    )

    if labels.column(label_time).null_count:
        null_times = np.flatnonzero(pc.is_null(labels.column(label_time)).to_numpy(zero_copy_only=False))
        listed = ", ".join(str(row) for row in null_times[:MAX_LISTED_ROWS])
        more = f" and {len(null_times) - MAX_LISTED_ROWS} more" if len(null_times) > MAX_LISTED_ROWS else ""
        raise PointInTimeError(
            f"Column {label_time!r} of the labels has {len(null_times)} null event times, at rows {listed}{more} "
            f"(counting from 0); every label needs an event time."
        )
    label_times = label_times.fill_null(0).to_numpy()

    # Feature rows that can ever be used: a known entity and a known timestamp.
    usable = pc.and_(pc.is_valid(features.column(entity)), pc.is_valid(features.column(feature_time)))
    feature_rows = np.flatnonzero(usable.to_numpy(zero_copy_only=False))
    feature_codes = feature_codes[feature_rows]
    feature_times = feature_times.fill_null(0).to_numpy()[feature_rows]

    found, positions = _last_at_or_before(label_codes, label_times, feature_codes, feature_times, n_codes)
    if ttl_microseconds is not None and len(feature_times):
        ttl_units = _ttl_in_units(ttl_microseconds, unit_microseconds)
        found &= feature_times[positions] >= _lower_bound(label_times, ttl_units)
    rows = pa.array(feature_rows[positions] if len(feature_rows) else positions, type=pa.int64(), mask=~found)

    result = labels
    for name in feature_columns:
        result = result.append_column(name, _take(features.column(name), rows))
    return result.append_column(used_column, _take(features.column(feature_time), rows))


# -- validation ------------------------------------------------------------------------------------


def _check_columns(
    labels: pa.Table,
    features: pa.Table,
    entity: str,
    label_time: str,
    feature_time: str,
    feature_columns: list[str],
    used_column: str,
) -> None:
    missing = []
    for side, table, names in (
        ("labels", labels, [entity, label_time]),
        ("features", features, [entity, feature_time, *feature_columns]),
    ):
        absent = [name for name in dict.fromkeys(names) if name not in table.column_names]
        if absent:
            missing.append(f"{', '.join(repr(name) for name in absent)} in the {side}")
    if missing:
        raise PointInTimeError(f"Missing columns: {'; '.join(missing)}.")
    for side, table, names in (
        ("labels", labels, [entity, label_time]),
        ("features", features, [entity, feature_time, *feature_columns]),
    ):
        for name in dict.fromkeys(names):
            if table.column_names.count(name) > 1:
                raise PointInTimeError(f"Column {name!r} appears more than once in the {side}.")
    repeated = [name for name in dict.fromkeys(feature_columns) if feature_columns.count(name) > 1]
    if repeated:
        raise PointInTimeError(f"Feature columns listed more than once: {', '.join(repr(n) for n in repeated)}.")
    added = [*feature_columns, used_column]
    if used_column in feature_columns:
        raise PointInTimeError(
            f"Feature column {used_column!r} clashes with the column the join adds for the feature timestamp used."
        )
    clashes = [name for name in added if name in labels.column_names]
    if clashes:
        raise PointInTimeError(
            f"Column name clash: {', '.join(repr(name) for name in clashes)} would be added by the join but the "
            f"labels already have {'it' if len(clashes) == 1 else 'them'}; rename or leave out those columns."
        )


def _ttl_microseconds(ttl: datetime.timedelta | None) -> int | None:
    if ttl is None:
        return None
    if not isinstance(ttl, datetime.timedelta):
        raise PointInTimeError(f"ttl must be a datetime.timedelta or None, not {type(ttl).__name__}.")
    if ttl < datetime.timedelta(0):
        raise PointInTimeError(f"ttl must not be negative, got {ttl}.")
    return (ttl.days * 86_400 + ttl.seconds) * 1_000_000 + ttl.microseconds


def _ttl_in_units(ttl_microseconds: int, unit_microseconds: int | None) -> int:
    """The ttl in the time unit compared, rounded down: a value is kept when its age, an integer, is <= ttl."""
    nanoseconds = unit_microseconds is None
    units = ttl_microseconds * 1_000 if nanoseconds else ttl_microseconds // unit_microseconds
    return min(units, int(_INT64_MAX))


def _lower_bound(times: np.ndarray, ttl_units: int) -> np.ndarray:
    """times - ttl, saturating at the smallest int64 instead of wrapping around."""
    with np.errstate(over="ignore"):
        return np.where(times < _INT64_MIN + ttl_units, _INT64_MIN, times - np.int64(ttl_units))


# -- keys and times --------------------------------------------------------------------------------


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _entity_keys(
    label_keys: pa.ChunkedArray, feature_keys: pa.ChunkedArray, entity: str
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Both key columns in one type, so equal keys compare equal."""
    label_keys, feature_keys = _plain(label_keys), _plain(feature_keys)
    if label_keys.type == feature_keys.type:
        return label_keys, feature_keys
    try:
        common = (
            pa.unify_schemas(
                [pa.schema([("key", label_keys.type)]), pa.schema([("key", feature_keys.type)])],
                promote_options="permissive",
            )
            .field("key")
            .type
        )
        return label_keys.cast(common), feature_keys.cast(common)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        raise PointInTimeError(
            f"Entity column {entity!r} is {label_keys.type} in the labels but {feature_keys.type} in the "
            f"features; the keys must be of comparable types."
        ) from None


def _encode_jointly(label_keys: pa.ChunkedArray, feature_keys: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, int]:
    """Integer codes for the keys of both tables from one dictionary; null keys get -1."""
    both = pa.chunked_array([*label_keys.chunks, *feature_keys.chunks], type=label_keys.type)
    encoded = both.dictionary_encode()
    n_codes = len(encoded.chunks[0].dictionary) if encoded.num_chunks else 0
    codes = (
        np.concatenate([chunk.indices.fill_null(-1).to_numpy().astype(np.int64) for chunk in encoded.chunks])
        if encoded.num_chunks
        else np.empty(0, dtype=np.int64)
    )
    return codes[: len(label_keys)], codes[len(label_keys) :], n_codes


def _time_kind(column_type: pa.DataType, name: str, side: str) -> str:
    if pa.types.is_timestamp(column_type):
        return "timestamp"
    if pa.types.is_date(column_type):
        return "date"
    raise PointInTimeError(f"Column {name!r} of the {side} is {column_type}; times must be timestamp or date columns.")


def _comparable_times(
    label_times: pa.ChunkedArray, feature_times: pa.ChunkedArray, label_name: str, feature_name: str
) -> tuple[pa.ChunkedArray, pa.ChunkedArray, int | None]:
    """Both time columns as int64 in one unit, and that unit in microseconds (None for nanoseconds)."""
    label_type, feature_type = label_times.type, feature_times.type
    label_kind = _time_kind(label_type, label_name, "labels")
    feature_kind = _time_kind(feature_type, feature_name, "features")
    if label_kind != feature_kind:
        raise PointInTimeError(
            f"Column {label_name!r} of the labels is {label_type} but column {feature_name!r} of the features is "
            f"{feature_type}; compare timestamps with timestamps and dates with dates."
        )
    if label_kind == "date":
        return _date_milliseconds(label_times), _date_milliseconds(feature_times), 1_000
    if (label_type.tz is None) != (feature_type.tz is None):
        aware, naive = (label_name, feature_name) if label_type.tz is not None else (feature_name, label_name)
        raise PointInTimeError(
            f"Column {aware!r} is timezone-aware but column {naive!r} is naive; make both aware or both naive "
            f"before joining, since a naive time's instant is unknown."
        )
    unit = max(label_type.unit, feature_type.unit, key=_UNITS.index)
    converted = []
    for name, column in ((label_name, label_times), (feature_name, feature_times)):
        try:
            column = column.cast(pa.timestamp(unit, column.type.tz))
        except pa.ArrowInvalid:
            raise PointInTimeError(
                f"Column {name!r} has times outside the range of timestamp[{unit}], the unit both sides are "
                f"compared in."
            ) from None
        converted.append(column.cast(pa.int64()))
    return converted[0], converted[1], _MICROSECONDS_PER_UNIT[unit]


def _date_milliseconds(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_date64(column.type):
        return column.cast(pa.int64())
    return pc.multiply(column.cast(pa.int32()).cast(pa.int64()), _MS_PER_DAY)


# -- the search ------------------------------------------------------------------------------------


def _last_at_or_before(
    label_codes: np.ndarray,
    label_times: np.ndarray,
    feature_codes: np.ndarray,
    feature_times: np.ndarray,
    n_codes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """For each label, whether its entity has a feature row at or before it, and the position of the last one.

    Positions index the feature arrays and are 0 where nothing was found.
    """
    if len(feature_codes) == 0:
        return np.zeros(len(label_codes), dtype=bool), np.zeros(len(label_codes), dtype=np.int64)
    label_keys, feature_keys = _packed_keys(label_codes, label_times, feature_codes, feature_times, n_codes)
    order = np.argsort(feature_keys, kind="stable")  # stable: equal keys keep table order, so the last wins
    sorted_positions = np.searchsorted(feature_keys[order], label_keys, side="right") - 1
    found = sorted_positions >= 0
    positions = order[np.maximum(sorted_positions, 0)]
    # Another entity's row, or a null label entity (-1, a code no usable feature row has): nothing found.
    found &= feature_codes[positions] == label_codes
    return found, np.where(found, positions, 0)


def _packed_keys(
    label_codes: np.ndarray,
    label_times: np.ndarray,
    feature_codes: np.ndarray,
    feature_times: np.ndarray,
    n_codes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 per row ordered as (entity code, time), for labels and feature rows alike.

    When the codes times the span of times fit in an int64, the key is code * span + (time - earliest).
    Otherwise (nanosecond times spread over centuries) times are replaced by their rank among the distinct
    feature times: rank(t) = how many distinct feature times are <= t, which keeps every comparison
    "feature time <= label time" intact and needs only as many values as there are feature rows.
    """
    label_codes = np.maximum(label_codes, 0)  # null entities are filtered out after the search
    earliest = min(int(feature_times.min()), int(label_times.min()) if len(label_times) else _INT64_MAX)
    latest = max(int(feature_times.max()), int(label_times.max()) if len(label_times) else _INT64_MIN)
    span = latest - earliest + 1
    if max(n_codes, 1) * span <= _INT64_MAX:
        base = np.int64(earliest)
        with np.errstate(over="ignore"):  # differences fit in int64 even when the subtraction wraps midway
            return (
                label_codes * np.int64(span) + (label_times - base),
                feature_codes * np.int64(span) + (feature_times - base),
            )
    distinct = np.unique(feature_times)
    width = np.int64(len(distinct) + 1)
    label_ranks = np.searchsorted(distinct, label_times, side="right")
    feature_ranks = np.searchsorted(distinct, feature_times, side="right")
    return label_codes * width + label_ranks, feature_codes * width + feature_ranks


def _take(column: pa.ChunkedArray, rows: pa.Array) -> pa.ChunkedArray:
    if column.num_chunks == 0 or len(column) == 0:
        return pa.chunked_array([pa.nulls(len(rows), type=column.type)], type=column.type)
    return column.take(rows)
