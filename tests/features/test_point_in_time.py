import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.features.point_in_time import PointInTimeError, point_in_time_join

START = dt.datetime(2024, 1, 1)
UNIT_FACTOR = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def at(seconds: float) -> dt.datetime:
    return START + dt.timedelta(seconds=seconds)


def stamps(values, unit: str = "s", tz: str | None = None) -> pa.Array:
    """Integers (in `unit`, None for null) as a timestamp column."""
    return pa.array(values, type=pa.int64()).cast(pa.timestamp(unit, tz))


def reference(labels, features, ttl=None):
    """Brute force, one label at a time: the index of the feature row used for each label, or None.

    labels: [(entity, time)]; features: [(entity, time or None)]; times and ttl are plain integers.
    """
    chosen = []
    for entity, time in labels:
        best = None
        for index, (feature_entity, feature_time) in enumerate(features):
            if entity is None or feature_entity != entity or feature_time is None or feature_time > time:
                continue
            if best is None or feature_time >= features[best][1]:  # >=: a later row of the same time wins
                best = index
        if best is not None and ttl is not None and time - features[best][1] > ttl:
            best = None
        chosen.append(best)
    return chosen


# -- a worked example ------------------------------------------------------------------------------

FEATURES = pa.table(
    {
        "user": ["a", "a", "b", "a", "b"],
        "ts": [at(10), at(20), at(15), at(30), at(40)],
        "clicks": [1, 5, 2, 9, 7],
        "segment": ["new", "new", "gold", "vip", "gold"],
    }
)


def test_each_label_gets_the_latest_values_known_at_its_event_time():
    labels = pa.table(
        {
            "user": ["a", "a", "a", "b", "b", "a", "b", "a", "zed"],
            "event_at": [at(5), at(10), at(25), at(15), at(39), at(100), at(14), at(20), at(50)],
            "churned": [0, 1, 0, 1, 1, 0, 0, 1, 1],
            "note": ["before", "exact", "between", "exact", "between", "after", "before", "exact", "unknown"],
        }
    )
    joined = point_in_time_join(labels, FEATURES, entity="user", label_time="event_at", feature_time="ts")

    def row(user, event, churned, note, clicks, segment, used):
        return {
            "user": user,
            "event_at": at(event),
            "churned": churned,
            "note": note,
            "clicks": clicks,
            "segment": segment,
            "ts_used": None if used is None else at(used),
        }

    assert joined.column_names == ["user", "event_at", "churned", "note", "clicks", "segment", "ts_used"]
    assert joined.schema.field("clicks").type == pa.int64()
    assert joined.schema.field("ts_used").type == FEATURES.schema.field("ts").type
    assert joined.to_pylist() == [
        row("a", 5, 0, "before", None, None, None),
        row("a", 10, 1, "exact", 1, "new", 10),
        row("a", 25, 0, "between", 5, "new", 20),
        row("b", 15, 1, "exact", 2, "gold", 15),
        row("b", 39, 1, "between", 2, "gold", 15),
        row("a", 100, 0, "after", 9, "vip", 30),
        row("b", 14, 0, "before", None, None, None),
        row("a", 20, 1, "exact", 5, "new", 20),
        row("zed", 50, 1, "unknown", None, None, None),
    ]


def test_chosen_feature_columns_only_and_empty_tables():
    labels = pa.table({"user": ["b", "a"], "event_at": [at(16), at(16)]})
    joined = point_in_time_join(
        labels, FEATURES, entity="user", label_time="event_at", feature_time="ts", feature_columns=["segment"]
    )
    assert joined.to_pylist() == [
        {"user": "b", "event_at": at(16), "segment": "gold", "ts_used": at(15)},
        {"user": "a", "event_at": at(16), "segment": "new", "ts_used": at(10)},
    ]
    no_features = point_in_time_join(
        labels, FEATURES.slice(0, 0), entity="user", label_time="event_at", feature_time="ts"
    )
    assert no_features.to_pylist() == [
        {"user": "b", "event_at": at(16), "clicks": None, "segment": None, "ts_used": None},
        {"user": "a", "event_at": at(16), "clicks": None, "segment": None, "ts_used": None},
    ]
    no_labels = point_in_time_join(
        labels.slice(0, 0), FEATURES, entity="user", label_time="event_at", feature_time="ts"
    )
    assert no_labels.num_rows == 0
    assert no_labels.schema.names == ["user", "event_at", "clicks", "segment", "ts_used"]


# -- the leakage trap ------------------------------------------------------------------------------


def test_the_leakage_trap_a_value_stamped_after_the_event_never_reaches_the_label():
    """Each customer's 'outcome_score' is 100 * label, written one second AFTER the label's event: a perfect
    predictor if leaked. Older rows hold honest scores 1..99, and some customers have none."""
    rng = np.random.default_rng(42)
    n = 500
    events = rng.integers(0, 10**8, n)
    label = rng.integers(0, 2, n)
    has_history = rng.random(n) < 0.7
    customers = [f"c{i}" for i in range(n)]
    labels = pa.table({"customer": customers, "event_at": stamps(events), "defaulted": label})

    future_rows = [(customers[i], int(events[i]) + 1, int(label[i]) * 100) for i in range(n)]
    honest_rows = [
        (customers[i], int(events[i]) - int(rng.integers(0, 86_400)), int(rng.integers(1, 100)))
        for i in range(n)
        if has_history[i]
    ]
    rows = future_rows + honest_rows
    order = rng.permutation(len(rows))  # no help from the table's order
    rows = [rows[i] for i in order]
    features = pa.table(
        {
            "customer": [row[0] for row in rows],
            "ts": stamps([row[1] for row in rows]),
            "outcome_score": [row[2] for row in rows],
        }
    )

    # The trap is armed: the latest value per customer, ignoring time, is the label itself.
    naive: dict[str, int] = {}
    for customer, _time, score in sorted(rows, key=lambda row: row[1]):
        naive[customer] = score
    leaked = [naive[customer] for customer in customers]
    assert leaked == [int(value) * 100 for value in label]

    joined = point_in_time_join(labels, features, entity="customer", label_time="event_at", feature_time="ts")
    scores = joined.column("outcome_score").to_pylist()
    honest = {row[0]: row[2] for row in honest_rows}
    assert scores == [honest.get(customer) for customer in customers]
    assert all(score != int(value) * 100 for score, value in zip(scores, label, strict=True))
    used = joined.column("ts_used").cast(pa.int64()).to_pylist()
    assert all(time is None or time <= event for time, event in zip(used, events.tolist(), strict=True))
    assert joined.column("outcome_score").null_count == n - int(has_history.sum()) > 0


# -- ttl, ties, units ------------------------------------------------------------------------------


def test_ttl_keeps_values_exactly_ttl_old_and_drops_older_ones():
    features = pa.table({"user": ["a", "b"], "ts": stamps([40, 40]), "score": [0.5, 0.7]})
    labels = pa.table({"user": ["a", "a", "b", "a"], "event_at": stamps([100, 101, 99, 39])})
    joined = point_in_time_join(
        labels, features, entity="user", label_time="event_at", feature_time="ts", ttl=dt.timedelta(seconds=60)
    )
    assert joined.column("score").to_pylist() == [0.5, None, 0.7, None]
    assert joined.column("ts_used").cast(pa.int64()).to_pylist() == [40, None, 40, None]
    zero = point_in_time_join(
        labels, features, entity="user", label_time="event_at", feature_time="ts", ttl=dt.timedelta(0)
    )
    assert zero.column("score").to_pylist() == [None, None, None, None]


def test_a_fractional_ttl_is_compared_exactly_in_each_unit():
    ttl = dt.timedelta(seconds=60.5)
    in_seconds = point_in_time_join(
        pa.table({"k": [1, 1], "t": stamps([100, 101])}),
        pa.table({"k": [1], "ft": stamps([40]), "v": ["x"]}),
        entity="k",
        label_time="t",
        feature_time="ft",
        ttl=ttl,
    )
    assert in_seconds.column("v").to_pylist() == ["x", None]
    in_milliseconds = point_in_time_join(
        pa.table({"k": [1, 1], "t": stamps([100_500, 100_501], "ms")}),
        pa.table({"k": [1], "ft": stamps([40], "s"), "v": ["x"]}),
        entity="k",
        label_time="t",
        feature_time="ft",
        ttl=ttl,
    )
    assert in_milliseconds.column("v").to_pylist() == ["x", None]


def test_ties_go_to_the_row_appearing_last_in_the_feature_table():
    labels = pa.table({"user": ["a", "b", "a"], "event_at": stamps([10, 10, 9])})
    features = pa.table(
        {
            "user": ["a", "b", "a", "b", "a"],
            "ts": stamps([10, 10, 10, 10, 5]),
            "v": ["a-first", "b-first", "a-second", "b-second", "a-older"],
        }
    )
    joined = point_in_time_join(labels, features, entity="user", label_time="event_at", feature_time="ts")
    assert joined.column("v").to_pylist() == ["a-second", "b-second", "a-older"]
    reversed_features = features.take(pa.array([3, 2, 1, 0, 4]))
    joined = point_in_time_join(labels, reversed_features, entity="user", label_time="event_at", feature_time="ts")
    assert joined.column("v").to_pylist() == ["a-first", "b-first", "a-older"]


def test_many_ties_in_a_large_table_still_go_to_the_last_row():
    rng = np.random.default_rng(5)
    n = 5_000
    feature_entities = rng.integers(0, 3, n).tolist()
    feature_seconds = rng.integers(0, 6, n).tolist()
    label_entities = rng.integers(0, 4, 60).tolist()
    label_seconds = rng.integers(-1, 7, 60).tolist()
    features = pa.table({"k": feature_entities, "ft": stamps(feature_seconds), "row": list(range(n))})
    labels = pa.table({"k": label_entities, "t": stamps(label_seconds)})
    joined = point_in_time_join(labels, features, entity="k", label_time="t", feature_time="ft")
    expected = reference(
        list(zip(label_entities, label_seconds, strict=True)), list(zip(feature_entities, feature_seconds, strict=True))
    )
    assert joined.column("row").to_pylist() == expected
    assert None in expected and len(set(expected)) > 10


def test_feature_rows_without_a_timestamp_or_entity_are_ignored():
    labels = pa.table({"user": ["a", None], "event_at": stamps([10, 10])})
    features = pa.table({"user": ["a", "a", None], "ts": stamps([1, None, 2]), "v": ["dated", "undated", "nobody"]})
    joined = point_in_time_join(labels, features, entity="user", label_time="event_at", feature_time="ts")
    assert joined.column("v").to_pylist() == ["dated", None]


def test_units_are_compared_in_the_finer_one_and_time_zones_by_instant():
    labels = pa.table({"k": ["a", "a"], "t": stamps([10, 11], "s", "UTC")})
    features = pa.table({"k": ["a", "a"], "ft": stamps([10_000_000_001, 10_500_000_000], "ns", "Europe/Paris")})
    joined = point_in_time_join(labels, features, entity="k", label_time="t", feature_time="ft")
    assert joined.column("ft_used").cast(pa.int64()).to_pylist() == [None, 10_500_000_000]
    assert joined.schema.field("ft_used").type == pa.timestamp("ns", "Europe/Paris")


def test_nanosecond_times_spread_over_centuries_still_join_exactly():
    year = 365 * 86_400 * 10**9
    times = [-200 * year, -200 * year + 1, 0, 250 * year - 1, 250 * year]
    features = pa.table({"k": [2, 1, 2, 1, 2], "ft": stamps(times, "ns"), "v": [0, 1, 2, 3, 4]})
    label_times = [-200 * year, -200 * year + 1, 250 * year - 2, 250 * year - 1, 250 * year, 250 * year]
    labels = pa.table({"k": [2, 1, 1, 1, 2, 3], "t": stamps(label_times, "ns")})
    joined = point_in_time_join(labels, features, entity="k", label_time="t", feature_time="ft")
    assert joined.column("v").to_pylist() == [0, 1, 1, 3, 4, None]


def test_date_columns_join_by_day_with_a_ttl_in_days():
    day = dt.date(2024, 3, 1)
    features = pa.table(
        {
            "shop": ["x", "x", "y"],
            "as_of": pa.array([day, day + dt.timedelta(days=3), day], type=pa.date64()),
            "sales": [10, 30, 5],
        }
    )
    labels = pa.table(
        {
            "shop": ["x", "x", "x", "y"],
            "on": [
                day - dt.timedelta(days=1),
                day + dt.timedelta(days=2),
                day + dt.timedelta(days=3),
                day + dt.timedelta(days=2),
            ],
        }
    )
    assert labels.schema.field("on").type == pa.date32()
    joined = point_in_time_join(
        labels, features, entity="shop", label_time="on", feature_time="as_of", ttl=dt.timedelta(days=1)
    )
    assert joined.to_pylist() == [
        {"shop": "x", "on": day - dt.timedelta(days=1), "sales": None, "as_of_used": None},
        {"shop": "x", "on": day + dt.timedelta(days=2), "sales": None, "as_of_used": None},
        {"shop": "x", "on": day + dt.timedelta(days=3), "sales": 30, "as_of_used": day + dt.timedelta(days=3)},
        {"shop": "y", "on": day + dt.timedelta(days=2), "sales": None, "as_of_used": None},
    ]
    without_ttl = point_in_time_join(labels, features, entity="shop", label_time="on", feature_time="as_of")
    assert without_ttl.column("sales").to_pylist() == [None, 10, 30, 5]


def test_integer_keys_of_different_widths_and_dictionary_keys_match():
    labels = pa.table({"id": pa.array([1, 2], pa.int32()), "t": stamps([5, 5])})
    features = pa.table({"id": pa.array([2, 1], pa.int64()), "ft": stamps([1, 2]), "v": ["two", "one"]})
    joined = point_in_time_join(labels, features, entity="id", label_time="t", feature_time="ft")
    assert joined.column("v").to_pylist() == ["one", "two"]
    labels = pa.table({"id": pa.array(["p", "q"]).dictionary_encode(), "t": stamps([5, 5])})
    features = pa.table({"id": ["q", "p"], "ft": stamps([1, 2]), "v": ["q1", "p2"]})
    joined = point_in_time_join(labels, features, entity="id", label_time="t", feature_time="ft")
    assert joined.column("v").to_pylist() == ["p2", "q1"]


# -- refusals --------------------------------------------------------------------------------------

LABELS = pa.table({"user": ["a", "b"], "event_at": [at(1), at(2)], "churned": [0, 1]})


def join(labels=LABELS, features=FEATURES, **options):
    options = {"entity": "user", "label_time": "event_at", "feature_time": "ts", **options}
    return point_in_time_join(labels, features, **options)


@pytest.mark.parametrize(
    ("labels", "features", "options", "message"),
    [
        (
            LABELS.drop_columns(["event_at"]),
            FEATURES.drop_columns(["ts"]),
            {"feature_columns": ["clicks", "visits"]},
            "Missing columns: 'event_at' in the labels; 'ts', 'visits' in the features.",
        ),
        (
            LABELS.append_column("clicks", pa.array([1, 2])),
            FEATURES,
            {},
            "Column name clash: 'clicks' would be added by the join but the labels already have it; "
            "rename or leave out those columns.",
        ),
        (
            LABELS.append_column("segment", pa.array([1, 2])).append_column("ts_used", pa.array([1, 2])),
            FEATURES,
            {},
            "Column name clash: 'segment', 'ts_used' would be added by the join but the labels already have "
            "them; rename or leave out those columns.",
        ),
        (
            LABELS,
            FEATURES,
            {"feature_columns": ["clicks", "clicks"]},
            "Feature columns listed more than once: 'clicks'.",
        ),
        (
            LABELS.set_column(1, "event_at", pa.array(["2024-01-01", "2024-01-02"])),
            FEATURES,
            {},
            "Column 'event_at' of the labels is string; times must be timestamp or date columns.",
        ),
        (
            LABELS,
            FEATURES.set_column(1, "ts", pa.array([1, 2, 3, 4, 5])),
            {},
            "Column 'ts' of the features is int64; times must be timestamp or date columns.",
        ),
        (
            LABELS.set_column(1, "event_at", pa.array([dt.date(2024, 1, 1)] * 2)),
            FEATURES,
            {},
            "Column 'event_at' of the labels is date32[day] but column 'ts' of the features is timestamp[us]; "
            "compare timestamps with timestamps and dates with dates.",
        ),
        (
            LABELS.set_column(1, "event_at", stamps([1, 2], "s", "UTC")),
            FEATURES,
            {},
            "Column 'event_at' is timezone-aware but column 'ts' is naive; make both aware or both naive "
            "before joining, since a naive time's instant is unknown.",
        ),
        (
            LABELS.set_column(0, "user", pa.array([1, 2])),
            FEATURES,
            {},
            "Entity column 'user' is int64 in the labels but string in the features; the keys must be of "
            "comparable types.",
        ),
        (
            pa.table({"user": ["a"] * 8, "event_at": stamps([None, 1, None, 2, None, None, None, None])}),
            FEATURES,
            {},
            "Column 'event_at' of the labels has 6 null event times, at rows 0, 2, 4, 5, 6 and 1 more "
            "(counting from 0); every label needs an event time.",
        ),
        (LABELS, FEATURES, {"ttl": dt.timedelta(seconds=-1)}, "ttl must not be negative, got -1 day, 23:59:59."),
        (LABELS, FEATURES, {"ttl": 60}, "ttl must be a datetime.timedelta or None, not int."),
        (
            LABELS.set_column(1, "event_at", stamps([10**10, 1], "s")),
            FEATURES.set_column(1, "ts", stamps([1, 2, 3, 4, 5], "ns")),
            {},
            "Column 'event_at' has times outside the range of timestamp[ns], the unit both sides are compared in.",
        ),
    ],
)
def test_refusals_say_exactly_what_to_fix(labels, features, options, message):
    with pytest.raises(PointInTimeError) as caught:
        join(labels, features, **options)
    assert caught.value.message == message == str(caught.value)


# -- against the brute-force reference -------------------------------------------------------------

ENTITIES = st.sampled_from(["a", "b", "c", None])
SECONDS = st.integers(-10, 10)


@settings(max_examples=300, deadline=None)
@given(
    label_rows=st.lists(st.tuples(ENTITIES, SECONDS), max_size=25),
    feature_rows=st.lists(
        st.tuples(ENTITIES, st.one_of(st.none(), SECONDS), st.one_of(st.none(), st.integers(0, 9))), max_size=40
    ),
    label_unit=st.sampled_from(list(UNIT_FACTOR)),
    feature_unit=st.sampled_from(list(UNIT_FACTOR)),
    scale=st.sampled_from([1, 400_000_000]),  # 4e8 s in nanoseconds spans ~250 years: the rank-packing path
    ttl_seconds=st.one_of(st.none(), st.integers(0, 12)),
    label_chunks=st.integers(1, 3),
    feature_chunks=st.integers(1, 3),
)
def test_matches_the_brute_force_reference(
    label_rows, feature_rows, label_unit, feature_unit, scale, ttl_seconds, label_chunks, feature_chunks
):
    def chunked(table, chunks):
        size = max(1, -(-table.num_rows // chunks))
        return pa.concat_tables([table.slice(start, size) for start in range(0, table.num_rows, size)] or [table])

    labels = pa.table(
        {
            "e": pa.array([row[0] for row in label_rows], pa.string()),
            "t": stamps([row[1] * scale * UNIT_FACTOR[label_unit] for row in label_rows], label_unit),
            "y": list(range(len(label_rows))),
        }
    )
    features = pa.table(
        {
            "e": pa.array([row[0] for row in feature_rows], pa.string()),
            "ft": stamps(
                [None if row[1] is None else row[1] * scale * UNIT_FACTOR[feature_unit] for row in feature_rows],
                feature_unit,
            ),
            "row": list(range(len(feature_rows))),
            "v": pa.array([row[2] for row in feature_rows], pa.int64()),
        }
    )
    ttl = None if ttl_seconds is None else dt.timedelta(seconds=ttl_seconds * scale)
    joined = point_in_time_join(
        chunked(labels, label_chunks),
        chunked(features, feature_chunks),
        entity="e",
        label_time="t",
        feature_time="ft",
        ttl=ttl,
    )

    expected = reference(
        [(row[0], row[1]) for row in label_rows],
        [(row[0], row[1]) for row in feature_rows],
        ttl=ttl_seconds,
    )
    assert joined.column_names == ["e", "t", "y", "row", "v", "ft_used"]
    assert joined.column("y").to_pylist() == list(range(len(label_rows)))
    assert joined.column("row").to_pylist() == expected
    assert joined.column("v").to_pylist() == [None if index is None else feature_rows[index][2] for index in expected]
    assert joined.column("ft_used").cast(pa.int64()).to_pylist() == [
        None if index is None else feature_rows[index][1] * scale * UNIT_FACTOR[feature_unit] for index in expected
    ]


# -- scale -----------------------------------------------------------------------------------------


def test_a_million_labels_against_a_million_feature_rows():
    rng = np.random.default_rng(2024)
    n = 1_000_000
    label_entities = rng.integers(0, 100_000, n)
    label_seconds = rng.integers(0, 10**7, n)
    feature_entities = rng.integers(0, 110_000, n)  # some label entities have no features at all
    feature_seconds = rng.integers(0, 10**7, n)
    feature_seconds[rng.integers(0, n, 2_000)] = feature_seconds[0]  # ties within an entity, sometimes
    missing = rng.random(n) < 0.01
    labels = pa.table(
        {"entity": label_entities, "event_at": stamps(label_seconds * 1_000, "ms"), "y": rng.integers(0, 2, n)}
    )
    features = pa.table(
        {
            "entity": feature_entities,
            "ts": pa.array(feature_seconds, mask=missing).cast(pa.timestamp("s")),
            "x": rng.random(n),
            "row": np.arange(n),
        }
    )
    ttl = dt.timedelta(days=7)

    joined = point_in_time_join(labels, features, entity="entity", label_time="event_at", feature_time="ts", ttl=ttl)

    assert joined.num_rows == n
    assert joined.column("y").equals(labels.column("y"))
    sample = rng.choice(n, 40, replace=False)
    subset = np.flatnonzero(np.isin(feature_entities, label_entities[sample]))  # keeps the table's order
    expected = reference(
        [(int(label_entities[i]), int(label_seconds[i])) for i in sample],
        [(int(feature_entities[j]), None if missing[j] else int(feature_seconds[j])) for j in subset],
        ttl=7 * 86_400,
    )
    expected_rows = [None if index is None else int(subset[index]) for index in expected]
    assert joined.column("row").take(pa.array(sample)).to_pylist() == expected_rows
    assert joined.column("x").take(pa.array(sample)).to_pylist() == [
        None if row is None else float(features.column("x")[row].as_py()) for row in expected_rows
    ]
    assert any(row is None for row in expected_rows) and any(row is not None for row in expected_rows)
