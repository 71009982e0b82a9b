"""Column statistics of Parquet files: exact values per type, JSON safety and column-at-a-time reading."""

import datetime as dt
import decimal
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.data.profiling import PROFILE_THREADS, profile_column, profile_parquet

NAN, INF = float("nan"), float("inf")


def write(tmp_path, columns, **options):
    path = tmp_path / "data.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=options.pop("row_group_size", 3), **options)
    return path


def test_integer_column_across_row_groups(tmp_path):
    path = write(tmp_path, {"age": pa.array([1, 2, 2, None, 10, 4, 5], pa.int64())})

    assert profile_parquet(path, histogram_bins=4) == {
        "age": {
            "type": "integer",
            "count": 7,
            "missing": 1,
            "distinct": 5,
            "min": 1,
            "max": 10,
            "mean": 4.0,
            "std": 3.0,
            "quantiles": {
                "p01": 1.05,
                "p05": 1.25,
                "p25": 2.0,
                "p50": 3.0,
                "p75": 4.75,
                "p95": 8.75,
                "p99": 9.75,
            },
            "histogram": {"edges": [1.0, 3.25, 5.5, 7.75, 10.0], "counts": [3, 2, 0, 1]},
        }
    }


def test_quantiles_and_histogram_of_a_hundred_and_one_values(tmp_path):
    values = [*range(101), None, None]
    path = write(tmp_path, {"score": pa.array(values, pa.int32())}, row_group_size=10)

    stats = profile_parquet(path, histogram_bins=4)["score"]

    assert stats["quantiles"] == {
        "p01": 1.0,
        "p05": 5.0,
        "p25": 25.0,
        "p50": 50.0,
        "p75": 75.0,
        "p95": 95.0,
        "p99": 99.0,
    }
    assert stats["histogram"] == {"edges": [0.0, 25.0, 50.0, 75.0, 100.0], "counts": [25, 25, 25, 26]}
    assert (stats["count"], stats["missing"], stats["distinct"]) == (103, 2, 101)
    assert (stats["min"], stats["max"], stats["mean"]) == (0, 100, 50.0)
    assert stats["std"] == pytest.approx(math.sqrt(850), rel=1e-12)  # population variance of 0..100 is 850
    assert sum(stats["histogram"]["counts"]) == 101


def test_default_histogram_has_twenty_bins(tmp_path):
    path = write(tmp_path, {"x": pa.array(range(21), pa.int64())})

    histogram = profile_parquet(path)["x"]["histogram"]

    assert histogram["edges"] == [float(edge) for edge in range(21)]
    assert histogram["counts"] == [1] * 19 + [2]


def test_float_nan_is_missing_and_infinity_becomes_none(tmp_path):
    path = write(tmp_path, {"income": pa.array([1.5, NAN, None, INF, -2.0, 0.5, 0.5], pa.float64())})

    stats = profile_parquet(path, histogram_bins=4)["income"]

    assert stats == {
        "type": "float",
        "count": 7,
        "missing": 2,
        "distinct": 4,  # -2.0, 0.5, 1.5 and inf
        "min": -2.0,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": {"p01": -1.9, "p05": -1.5, "p25": 0.5, "p50": 0.5, "p75": 1.5, "p95": None, "p99": None},
        "histogram": {"edges": [-2.0, -1.125, -0.25, 0.625, 1.5], "counts": [1, 0, 2, 1]},  # finite values only
    }
    json.dumps(stats, allow_nan=False)


def test_finite_floats(tmp_path):
    path = write(tmp_path, {"x": pa.array([0.0, 1.0, NAN, 2.0, 3.0], pa.float32())})

    stats = profile_parquet(path, histogram_bins=3)["x"]

    assert (stats["type"], stats["missing"], stats["distinct"]) == ("float", 1, 4)
    assert (stats["min"], stats["max"], stats["mean"]) == (0.0, 3.0, 1.5)
    assert stats["std"] == pytest.approx(math.sqrt(1.25), rel=1e-12)
    assert stats["quantiles"]["p25"] == 0.75
    assert stats["quantiles"]["p50"] == 1.5
    assert stats["histogram"] == {"edges": [0.0, 1.0, 2.0, 3.0], "counts": [1, 1, 2]}


def test_only_infinities_give_no_numbers_and_no_histogram():
    stats = profile_column(pa.array([INF, -INF, None]))

    assert stats == {
        "type": "float",
        "count": 3,
        "missing": 1,
        "distinct": 2,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "quantiles": dict.fromkeys(("p01", "p05", "p25", "p50", "p75", "p95", "p99")),
        "histogram": None,
    }
    json.dumps(stats, allow_nan=False)


def test_constant_column_has_one_bin_and_clamped_quantiles():
    stats = profile_column(pa.array([7, 7, 7]))

    assert stats["histogram"] == {"edges": [6.5, 7.5], "counts": [3]}
    assert set(stats["quantiles"].values()) == {7.0}
    assert (stats["min"], stats["max"], stats["mean"], stats["std"]) == (7, 7, 7.0, 0.0)


def test_decimal_is_float():
    stats = profile_column(pa.array([decimal.Decimal("1.50"), decimal.Decimal("2.25"), None]))

    assert (stats["type"], stats["missing"], stats["distinct"]) == ("float", 1, 2)
    assert (stats["min"], stats["max"], stats["mean"], stats["std"]) == (1.5, 2.25, 1.875, 0.375)


def test_boolean_counts(tmp_path):
    path = write(tmp_path, {"repaid": pa.array([True, False, None, True, True, None, False])})

    assert profile_parquet(path)["repaid"] == {
        "type": "boolean",
        "count": 7,
        "missing": 2,
        "distinct": 2,
        "true": 3,
        "false": 2,
    }


def test_string_top_values_ties_by_value_and_lengths_in_characters(tmp_path):
    values = ["south", "é", None, "north", "south", "east", "north", "east", "west"]
    path = write(tmp_path, {"city": pa.array(values)})

    assert profile_parquet(path, top_k=3)["city"] == {
        "type": "string",
        "count": 9,
        "missing": 1,
        "distinct": 5,
        "top": [{"value": "east", "count": 2}, {"value": "north", "count": 2}, {"value": "south", "count": 2}],
        "min_length": 1,
        "max_length": 5,
    }


def test_dictionary_encoded_strings_profile_like_plain_strings(tmp_path):
    values = ["x", "y", "x", None, "x", "z"]
    plain = profile_column(pa.array(values))

    path = write(tmp_path, {"c": pa.array(values).dictionary_encode()})

    assert pq.read_schema(path).field("c").type == pa.dictionary(pa.int32(), pa.string())
    assert profile_parquet(path)["c"] == plain
    assert plain["top"] == [{"value": "x", "count": 3}, {"value": "y", "count": 1}, {"value": "z", "count": 1}]


def test_binary_that_is_not_text_gets_only_counts():
    assert profile_column(pa.array([b"ab", b"\xff", None])) == {
        "type": "string",
        "count": 3,
        "missing": 1,
        "distinct": 2,
    }


def test_datetimes_as_iso_text(tmp_path):
    utc = dt.UTC
    path = write(
        tmp_path,
        {
            "at": pa.array(
                [dt.datetime(2024, 3, 1, 12, tzinfo=utc), None, dt.datetime(2023, 1, 2, 3, 4, 5, tzinfo=utc)],
                pa.timestamp("us", tz="UTC"),
            ),
            "day": pa.array([dt.date(2021, 5, 6), dt.date(2020, 1, 1), None]),
            "naive": pa.array([dt.datetime(2020, 1, 1), dt.datetime(2020, 1, 1), dt.datetime(2019, 12, 31, 23, 59)]),
        },
    )

    profile = profile_parquet(path)

    assert profile["at"] == {
        "type": "datetime",
        "count": 3,
        "missing": 1,
        "distinct": 2,
        "min": "2023-01-02T03:04:05+00:00",
        "max": "2024-03-01T12:00:00+00:00",
    }
    assert (profile["day"]["min"], profile["day"]["max"]) == ("2020-01-01", "2021-05-06")
    assert profile["naive"] == {
        "type": "datetime",
        "count": 3,
        "missing": 0,
        "distinct": 2,
        "min": "2019-12-31T23:59:00",
        "max": "2020-01-01T00:00:00",
    }


def test_all_null_columns_have_only_counts(tmp_path):
    path = write(
        tmp_path,
        {
            "i": pa.array([None] * 4, pa.int64()),
            "f": pa.array([None, NAN, None, NAN], pa.float64()),
            "s": pa.array([None] * 4, pa.string()),
            "b": pa.array([None] * 4, pa.bool_()),
            "t": pa.array([None] * 4, pa.timestamp("ms")),
            "n": pa.array([None] * 4),
        },
    )

    profile = profile_parquet(path)

    assert profile == {
        name: {"type": kind, "count": 4, "missing": 4, "distinct": 0}
        for name, kind in [
            ("i", "integer"),
            ("f", "float"),
            ("s", "string"),
            ("b", "boolean"),
            ("t", "datetime"),
            ("n", "string"),
        ]
    }


def test_empty_file(tmp_path):
    path = write(tmp_path, {"x": pa.array([], pa.int64()), "y": pa.array([], pa.string())})

    assert profile_parquet(path) == {
        "x": {"type": "integer", "count": 0, "missing": 0, "distinct": 0},
        "y": {"type": "string", "count": 0, "missing": 0, "distinct": 0},
    }


def test_whole_profile_is_json_safe_in_schema_order(tmp_path):
    path = write(
        tmp_path,
        {
            "z": pa.array([INF, -INF, NAN, 1.0]),
            "a": pa.array([2**62, -(2**62), None, 0], pa.int64()),
            "m": pa.array(["a", None, "b", "a"]),
        },
        row_group_size=2,
    )

    profile = profile_parquet(path)

    assert list(profile) == ["z", "a", "m"]
    assert (profile["a"]["min"], profile["a"]["max"]) == (-(2**62), 2**62)
    assert json.loads(json.dumps(profile, allow_nan=False)) == profile


def test_arguments_are_checked(tmp_path):
    path = write(tmp_path, {"x": pa.array([1])})

    with pytest.raises(ValueError, match="histogram_bins"):
        profile_parquet(path, histogram_bins=0)
    with pytest.raises(ValueError, match="top_k"):
        profile_parquet(path, top_k=-1)


def test_reads_one_column_at_a_time(tmp_path, monkeypatch):
    path = write(tmp_path, {"a": pa.array([1, 2, 3, 4]), "b": pa.array(["w", "x", "y", None])})
    reads = []
    read = pq.ParquetFile.read

    def spy(self, columns=None, **kwargs):
        reads.append(columns)
        return read(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    monkeypatch.setattr(pq, "read_table", lambda *args, **kwargs: pytest.fail("read the whole table"))

    profile = profile_parquet(path)

    assert sorted(reads) == [["a"], ["b"]]  # one column per read, in whichever order the threads ran
    assert profile == {
        "a": profile_column(pa.array([1, 2, 3, 4])),
        "b": profile_column(pa.array(["w", "x", "y", None])),
    }


_KEPT_POOLS: list = []


def test_memory_is_bounded_by_the_columns_in_flight(tmp_path):
    """Arrow's allocations peak near the columns being profiled at once, far below the whole table.

    Eight int64 columns of 500,000 rows are 4 MB each, 32 MB together. Profiling one column holds the
    column itself plus one working copy (pyarrow's quantile buffer, the float64 copy for the histogram),
    about 2 columns; with PROFILE_THREADS columns in flight that is 2 * PROFILE_THREADS columns, plus
    one of headroom, still well below the 8 that reading the table needs.
    numpy's own arrays are not counted by arrow's pool, but they too exist for one column at a time.
    """
    rows, width = 500_000, 8
    column_bytes = rows * 8
    table = pa.table({f"c{i}": (np.arange(rows, dtype=np.int64) * (i + 1)) % 1000 for i in range(width)})
    path = tmp_path / "wide.parquet"
    pq.write_table(table, path, row_group_size=100_000)
    del table

    # Buffers allocated from a proxy pool may outlive the call that made them (arrow caches, thread-local
    # state); the pools must outlive them, so they are kept for the whole session.
    def peak(action):
        default = pa.default_memory_pool()
        tracked = pa.proxy_memory_pool(default)
        _KEPT_POOLS.append(tracked)
        pa.set_memory_pool(tracked)
        try:
            result = action()
        finally:
            pa.set_memory_pool(default)
        del result
        return tracked.max_memory()

    whole_table = peak(lambda: pq.read_table(path))
    profiling = peak(lambda: profile_parquet(path))

    assert whole_table >= width * column_bytes
    bound = (2 * PROFILE_THREADS + 1) * column_bytes
    assert bound < width * column_bytes
    assert profiling < bound
