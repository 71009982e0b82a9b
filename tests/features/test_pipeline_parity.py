"""One fitted pipeline, three ways in, one matrix out, bit for bit.

A one-row request (`transform_rows([row])`, row after row), a batch (`transform_columns` on Python lists)
and the training table (`transform_table` on a pyarrow.Table of the same values) must give the same
float32 matrix, byte for byte, so that a model scores a request exactly as it would score the same row of
its training table. The definition uses every transform and every date part. The generated data has
missing values (None, left-out keys, NaN), categories the fit never saw, extreme numbers (±1e300, ±0,
subnormals, ±inf, float32's overflow edge, integers up to 2**53), naive and zone-aware dates from year 1
to 9999; requests come as Python values or as decoded JSON (dates as ISO text), tables in one or several
chunks and with dictionary-encoded text. NaN is compared as NaN whatever its payload; -0.0 is not 0.0.

Also: fitting on arrow columns learns what fitting on lists does; from_state(to_state()) (and through
JSON) gives identical matrices; definition_hash ignores key order and sees every change. The last tests
pin edge cases that once broke fitting or parity (huge constants, nanoseconds, dates out of range in UTC).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.features.pipeline import TRANSFORMS, DefinitionError, FittedPipeline, definition_hash, validate_definition

# Extreme inputs overflow float32 (and fitted means) on purpose; numpy says so, the matrices are what count.
pytestmark = [
    pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]

SCHEMA = {
    "x": "float",
    "n": "integer",
    "a": "float",
    "b": "float",
    "flag": "boolean",
    "city": "string",
    "signup": "datetime",
    "seen": "datetime",
}
ARROW_TYPES = {
    "x": pa.float64(),
    "n": pa.int64(),
    "a": pa.float64(),
    "b": pa.float64(),
    "flag": pa.bool_(),
    "city": pa.string(),
    "signup": pa.timestamp("us"),
    "seen": pa.timestamp("us", tz="UTC"),
}

DEFINITION = [
    {"name": "x_log", "transform": "log1p", "source": "x"},
    {"name": "x_std", "transform": "standardise", "source": "x"},
    {"name": "n_std", "transform": "standardise", "source": "n"},
    {"name": "x_clip", "transform": "clip", "source": "x", "params": {"min": 0, "max": 100}},
    {"name": "n_floor", "transform": "clip", "source": "n", "params": {"min": -5}},
    {"name": "n_bucket", "transform": "bucketise", "source": "n", "params": {"edges": [-10, 0, 10, 2**40]}},
    {"name": "x_quartile", "transform": "bucketise", "source": "x", "params": {"quantiles": 4}},
    {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 2}},
    {"name": "city_code", "transform": "ordinal", "source": "city"},
    {"name": "x_missing", "transform": "missing_indicator", "source": "x"},
    {"name": "n_missing", "transform": "missing_indicator", "source": "n"},
    {"name": "city_missing", "transform": "missing_indicator", "source": "city"},
    {"name": "signup_missing", "transform": "missing_indicator", "source": "signup"},
    {"name": "x_filled", "transform": "fill", "source": "x", "params": {"statistic": "median"}},
    {"name": "a_filled", "transform": "fill", "source": "a", "params": {"statistic": "mean"}},
    {"name": "b_filled", "transform": "fill", "source": "b", "params": {"statistic": "mode"}},
    {"name": "n_filled", "transform": "fill", "source": "n", "params": {"value": 0}},
    {"name": "signup_year", "transform": "date_part", "source": "signup", "params": {"part": "year"}},
    {"name": "signup_month", "transform": "date_part", "source": "signup", "params": {"part": "month"}},
    {"name": "signup_weekday", "transform": "date_part", "source": "signup", "params": {"part": "weekday"}},
    {"name": "signup_hour", "transform": "date_part", "source": "signup", "params": {"part": "hour"}},
    {
        "name": "signup_age",
        "transform": "date_part",
        "source": "signup",
        "params": {"part": "days_since", "reference": "2020-01-01"},
    },
    {"name": "seen_hour", "transform": "date_part", "source": "seen", "params": {"part": "hour"}},
    {
        "name": "seen_age",
        "transform": "date_part",
        "source": "seen",
        "params": {"part": "days_since", "reference": "1999-12-31"},
    },
    {"name": "util", "transform": "ratio", "sources": ["a", "b"]},
    {"name": "gap", "transform": "difference", "sources": ["a", "b"]},
    {"name": "x_raw", "transform": "passthrough", "source": "x"},
    {"name": "n_raw", "transform": "passthrough", "source": "n"},
    {"name": "flag", "transform": "passthrough", "source": "flag"},
]

EXTREME_FLOATS = [
    0.0,
    -0.0,
    1.0,
    -1.0,
    0.5,
    1e300,
    -1e300,
    5e-324,  # the smallest subnormal
    -5e-324,
    2.2250738585072014e-308,  # the smallest normal
    1e-310,
    -1e-310,
    1e-45,  # float32's smallest subnormal, about
    3.4028234663852886e38,  # float32's largest finite
    3.5e38,  # just past it: inf in float32
    -3.5e38,
    float(2**53),
    float(-(2**53)),
    float(2**53 + 2),
    -0.9999999999999999,  # log1p's edge
    -1.0000000000000002,
    99.99999999999999,  # clip's edge
    100.00000000000001,
    1.7976931348623157e308,
    -1.7976931348623157e308,
]
EXTREME_INTS = [0, 1, -1, 2**53, -(2**53), 2**53 - 1, 2**53 - 3, 2**31, -(2**31) - 1, 2**24 + 1, 2**40, 10, -10, -5]
FIT_CITIES = ["north", "south", "east", "west"]
UNSEEN_CITIES = ["mars", "", "North", "north ", "ü", "other"]
ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))]

# Floats include NaN (any payload or sign) and infinities besides the missing value None.
floats = st.one_of(st.none(), st.sampled_from(EXTREME_FLOATS), st.floats(width=64))
integers = st.one_of(st.none(), st.sampled_from(EXTREME_INTS), st.integers(min_value=-(2**53), max_value=2**53))
naive_datetimes = st.one_of(
    st.none(),
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.datetimes(min_value=dt.datetime(1999, 12, 1), max_value=dt.datetime(2020, 3, 1)),
    st.sampled_from(
        [
            dt.datetime(2020, 1, 1),
            dt.datetime(2019, 12, 31, 23, 59, 59, 999999),
            dt.datetime(1970, 1, 1),
            dt.datetime(1969, 12, 31, 23, 0),
            dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2000, 2, 29, 12),
            dt.datetime(1, 1, 2),
        ]
    ),
)
aware_datetimes = st.one_of(
    st.none(),
    st.datetimes(
        min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.sampled_from(ZONES)
    ),
)


def rows_of(cities: list[str], *, min_size: int, max_size: int) -> st.SearchStrategy[list[dict]]:
    row = st.fixed_dictionaries(
        {
            "x": floats,
            "n": integers,
            "a": floats,
            "b": floats,
            "flag": st.one_of(st.none(), st.booleans()),
            "city": st.one_of(st.none(), st.sampled_from(cities)),
            "signup": naive_datetimes,
            "seen": aware_datetimes,
        }
    )
    return st.lists(row, min_size=min_size, max_size=max_size)


FIT_DATA = [
    {
        "x": float(i) * 7.5 - 20,
        "n": i * 3 - 11,
        "a": float(i) + 0.25,
        "b": float(i % 5),
        "flag": i % 3 == 0,
        "city": FIT_CITIES[i % 7 % 4],
        "signup": dt.datetime(2019, 1, 1) + dt.timedelta(days=37 * i, hours=i),
        "seen": dt.datetime(2021, 6, 1, tzinfo=ZONES[i % 3]) + dt.timedelta(hours=5 * i),
    }
    for i in range(40)
]
FIT_DATA[3]["x"] = None
FIT_DATA[4]["n"] = None
FIT_DATA[5]["city"] = None
FIT_DATA[8]["signup"] = None
FIT_DATA[9]["seen"] = None

apply_rows = rows_of(FIT_CITIES + UNSEEN_CITIES, min_size=1, max_size=30)
# Fit data: a few ordinary rows, so that no output column is a single number, then generated rows with
# the same extremes. (A training column whose finite values are all one number of magnitude >= 2**53
# crashes fit in _statistics: see test_fit_survives_a_constant_large_column.)
fit_rows = rows_of(FIT_CITIES, min_size=0, max_size=30).map(lambda rows: FIT_DATA[:8] + rows)


# How the same values reach the pipeline. A request row is either Python values or what a JSON body
# decodes to: dates as ISO 8601 text, missing values left out. A table may come in several chunks and
# with its text dictionary-encoded, as Parquet gives it.
request_styles = st.lists(st.tuples(st.booleans(), st.booleans()), min_size=30, max_size=30)
table_styles = st.tuples(st.integers(min_value=1, max_value=3), st.booleans())


def as_request(row: dict, *, as_json: bool, omit_missing: bool) -> dict:
    if as_json:
        plain = {key: value.isoformat() if isinstance(value, dt.datetime) else value for key, value in row.items()}
        row = json.loads(json.dumps(plain))
    if omit_missing:
        row = {key: value for key, value in row.items() if value is not None}
    return row


def columns_of(rows: list[dict]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name in SCHEMA}


def table_of(rows: list[dict], *, chunks: int = 1, dictionary: bool = False) -> pa.Table:
    columns = columns_of(rows)
    table = pa.table({name: pa.array(columns[name], type=ARROW_TYPES[name]) for name in SCHEMA})
    if dictionary:
        table = table.set_column(
            table.schema.get_field_index("city"), "city", table.column("city").combine_chunks().dictionary_encode()
        )
    if chunks > 1:
        cut = [round(len(rows) * i / chunks) for i in range(chunks + 1)]
        table = pa.concat_tables([table.slice(cut[i], cut[i + 1] - cut[i]) for i in range(chunks)])
    return table


def canonical(matrix: np.ndarray) -> np.ndarray:
    """The matrix with every NaN as the one quiet NaN, so that payloads and signs of NaN do not count."""
    assert matrix.dtype == np.float32
    return np.where(np.isnan(matrix), np.float32(math.nan), matrix).astype(np.float32)


def first_difference(left: np.ndarray, right: np.ndarray, names: list[str] | None = None) -> str:
    a, b = canonical(left), canonical(right)
    differs = a.view(np.uint32) != b.view(np.uint32)
    if not differs.any():
        return "identical"
    row, column = (int(i) for i in np.argwhere(differs)[0])
    label = names[column] if names else column
    return f"first difference at row {row}, column {label}: {a[row, column]!r} != {b[row, column]!r}"


def assert_bit_identical(left: np.ndarray, right: np.ndarray, names: list[str] | None = None) -> None:
    assert left.dtype == right.dtype == np.float32
    assert left.shape == right.shape
    assert np.array_equal(left, right, equal_nan=True), first_difference(left, right, names)
    assert canonical(left).tobytes() == canonical(right).tobytes(), first_difference(left, right, names)


def three_ways(
    pipeline: FittedPipeline, rows: list[dict], requests=((False, False),) * 30, table_style=(1, False)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One row at a time (stacked), a batch of Python lists, the training table."""
    width = len(pipeline.output_names)
    one_by_one = []
    for row, (as_json, omit_missing) in zip(rows, requests, strict=False):
        single = pipeline.transform_rows([as_request(row, as_json=as_json, omit_missing=omit_missing)])
        assert single.dtype == np.float32
        assert single.shape == (1, width)
        one_by_one.append(single)
    by_rows = np.vstack(one_by_one)
    by_columns = pipeline.transform_columns(columns_of(rows))
    chunks, dictionary = table_style
    by_table = pipeline.transform_table(table_of(rows, chunks=chunks, dictionary=dictionary))
    return by_rows, by_columns, by_table


@pytest.fixture(scope="module")
def pipeline() -> FittedPipeline:
    assert validate_definition(DEFINITION, SCHEMA) == []
    return FittedPipeline.fit(DEFINITION, columns_of(FIT_DATA), SCHEMA)


def test_the_definition_uses_every_transform_and_every_date_part(pipeline):
    assert {feature["transform"] for feature in DEFINITION} == set(TRANSFORMS)
    parts = {feature["params"]["part"] for feature in DEFINITION if feature["transform"] == "date_part"}
    assert parts == {"year", "month", "weekday", "hour", "days_since"}
    assert pipeline.output_names[7:10] == ["city=north", "city=east", "city=other"]


def test_the_comparison_is_bit_strict():
    zero, negative_zero = np.zeros((1, 1), np.float32), np.full((1, 1), -0.0, np.float32)
    assert np.array_equal(zero, negative_zero)  # equal as numbers ...
    with pytest.raises(AssertionError):
        assert_bit_identical(zero, negative_zero)  # ... but not as bits
    payload = np.array([[0x7FC00001]], np.uint32).view(np.float32)
    assert_bit_identical(payload, np.full((1, 1), math.nan, np.float32))  # NaN is NaN, whatever its payload


@settings(max_examples=60, deadline=None)
@given(rows=apply_rows, requests=request_styles, table_style=table_styles)
def test_rows_columns_and_table_give_bit_identical_matrices(pipeline, rows, requests, table_style):
    by_rows, by_columns, by_table = three_ways(pipeline, rows, requests, table_style)
    assert by_rows.shape == (len(rows), len(pipeline.output_names))
    assert_bit_identical(by_rows, by_columns, pipeline.output_names)
    assert_bit_identical(by_columns, by_table, pipeline.output_names)


@settings(max_examples=60, deadline=None)
@given(fit=fit_rows, rows=apply_rows, requests=request_styles, table_style=table_styles)
def test_parity_holds_whatever_the_fit_data(fit, rows, requests, table_style):
    pipeline = FittedPipeline.fit(DEFINITION, columns_of(fit), SCHEMA)
    by_rows, by_columns, by_table = three_ways(pipeline, rows, requests, table_style)
    assert_bit_identical(by_rows, by_columns, pipeline.output_names)
    assert_bit_identical(by_columns, by_table, pipeline.output_names)
    # Fitting on the training table's arrow columns learns the same state as fitting on lists.
    table = table_of(fit, chunks=table_style[0], dictionary=table_style[1])
    from_table = FittedPipeline.fit(DEFINITION, {name: table.column(name) for name in SCHEMA}, SCHEMA)
    assert json.dumps(from_table.to_state(), sort_keys=True) == json.dumps(pipeline.to_state(), sort_keys=True)
    assert_bit_identical(from_table.transform_columns(columns_of(rows)), by_columns, pipeline.output_names)


@settings(max_examples=60, deadline=None)
@given(fit=fit_rows, rows=apply_rows)
def test_state_round_trip_gives_identical_matrices(fit, rows):
    pipeline = FittedPipeline.fit(DEFINITION, columns_of(fit), SCHEMA)
    restored = FittedPipeline.from_state(pipeline.to_state())
    assert restored.output_names == pipeline.output_names
    assert restored.to_state() == pipeline.to_state()
    for path in ("transform_rows", "transform_columns", "transform_table"):
        data = {"transform_rows": rows, "transform_columns": columns_of(rows), "transform_table": table_of(rows)}
        assert_bit_identical(getattr(restored, path)(data[path]), getattr(pipeline, path)(data[path]))
    # The state is frozen with a model version as JSON: it survives the trip too.
    thawed = FittedPipeline.from_state(json.loads(json.dumps(pipeline.to_state())))
    assert_bit_identical(thawed.transform_columns(columns_of(rows)), pipeline.transform_columns(columns_of(rows)))


def test_state_of_ordinary_data_is_strict_json(pipeline):
    text = json.dumps(pipeline.to_state(), allow_nan=False)  # PostgreSQL's jsonb has no NaN or Infinity
    thawed = FittedPipeline.from_state(json.loads(text))
    rows = [*FIT_DATA, {name: None for name in SCHEMA}]
    assert_bit_identical(thawed.transform_rows(rows), pipeline.transform_table(table_of(rows)))


# -- features side by side --------------------------------------------------------------------------------
# Features that share a transform are computed together, as one block over their columns. A feature's
# columns must not depend on the features beside it (their order, their number, their sources), nor on
# how many rows go through at once, nor on whether the columns come as lists, arrow arrays or both.

SIDE_BY_SIDE = [
    {"name": "city_top1", "transform": "one_hot", "source": "city", "params": {"top_k": 1}},
    {"name": "b_log", "transform": "log1p", "source": "b"},
    {"name": "a_per_b", "transform": "ratio", "sources": ["a", "b"]},
    {"name": "x_raw", "transform": "passthrough", "source": "x"},
    {"name": "x_log", "transform": "log1p", "source": "x"},
    {"name": "b_per_a", "transform": "ratio", "sources": ["b", "a"]},
    {"name": "city_code", "transform": "ordinal", "source": "city"},
    {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 3}},
    {"name": "n_bucket", "transform": "bucketise", "source": "n", "params": {"edges": [-1e300, -1, 0, 1e-300, 2**53]}},
    {"name": "b_std", "transform": "standardise", "source": "b"},
    {"name": "x_tercile", "transform": "bucketise", "source": "x", "params": {"quantiles": 3}},
    {"name": "n_std", "transform": "standardise", "source": "n"},
    {"name": "x_clip", "transform": "clip", "source": "x", "params": {"min": -1.5}},
    {"name": "n_clip", "transform": "clip", "source": "n", "params": {"min": 0, "max": 2**40}},
    {"name": "a_log", "transform": "log1p", "source": "a"},
    {"name": "flag_missing", "transform": "missing_indicator", "source": "flag"},
    {"name": "seen_missing", "transform": "missing_indicator", "source": "seen"},
    {"name": "b_minus_a", "transform": "difference", "sources": ["b", "a"]},
    {"name": "seen_weekday", "transform": "date_part", "source": "seen", "params": {"part": "weekday"}},
    {"name": "a_minus_b", "transform": "difference", "sources": ["a", "b"]},
    {"name": "x_per_x", "transform": "ratio", "sources": ["x", "x"]},
    {
        "name": "signup_days",
        "transform": "date_part",
        "source": "signup",
        "params": {"part": "days_since", "reference": "0001-01-01"},
    },
    {"name": "signup_year", "transform": "date_part", "source": "signup", "params": {"part": "year"}},
    {"name": "b_filled", "transform": "fill", "source": "b", "params": {"value": -1e300}},
    {"name": "city_missing", "transform": "missing_indicator", "source": "city"},
    {"name": "x_filled", "transform": "fill", "source": "x", "params": {"statistic": "mean"}},
    {"name": "flag_code", "transform": "passthrough", "source": "flag"},
    {"name": "n_raw", "transform": "passthrough", "source": "n"},
    {"name": "x_std", "transform": "standardise", "source": "x"},
    {"name": "city_rank", "transform": "ordinal", "source": "city"},
]


@pytest.fixture(scope="module")
def side_by_side() -> FittedPipeline:
    assert validate_definition(SIDE_BY_SIDE, SCHEMA) == []
    return FittedPipeline.fit(SIDE_BY_SIDE, columns_of(FIT_DATA), SCHEMA)


def each_alone(pipeline: FittedPipeline) -> list[FittedPipeline]:
    state = pipeline.to_state()
    return [FittedPipeline.from_state({**state, "features": [feature]}) for feature in state["features"]]


def test_side_by_side_repeats_every_transform(side_by_side):
    transforms = [feature["transform"] for feature in SIDE_BY_SIDE]
    assert {name for name in TRANSFORMS if transforms.count(name) >= 2} == set(TRANSFORMS)
    assert side_by_side.output_names[:3] == ["city_top1=north", "city_top1=other", "b_log"]


@settings(max_examples=60, deadline=None)
@given(rows=apply_rows, requests=request_styles, table_style=table_styles)
def test_a_feature_transforms_alike_beside_any_others(side_by_side, rows, requests, table_style):
    names = side_by_side.output_names
    by_rows, by_columns, by_table = three_ways(side_by_side, rows, requests, table_style)
    assert_bit_identical(by_rows, by_columns, names)
    assert_bit_identical(by_columns, by_table, names)
    alone = each_alone(side_by_side)
    first = as_request(rows[0], as_json=requests[0][0], omit_missing=requests[0][1])
    assert_bit_identical(np.hstack([single.transform_rows([first]) for single in alone]), by_rows[:1], names)
    columns = columns_of(rows)
    assert_bit_identical(np.hstack([single.transform_columns(columns) for single in alone]), by_columns, names)
    table = table_of(rows, chunks=table_style[0], dictionary=table_style[1])
    assert_bit_identical(np.hstack([single.transform_table(table) for single in alone]), by_table, names)


@settings(max_examples=60, deadline=None)
@given(rows=apply_rows, as_arrow=st.fixed_dictionaries({name: st.booleans() for name in SCHEMA}))
def test_columns_may_mix_lists_and_arrow_arrays(pipeline, side_by_side, rows, as_arrow):
    lists, table = columns_of(rows), table_of(rows)
    mixed = {name: table.column(name) if as_arrow[name] else lists[name] for name in SCHEMA}
    for fitted in (pipeline, side_by_side):
        assert_bit_identical(fitted.transform_columns(mixed), fitted.transform_columns(lists), fitted.output_names)


def test_no_rows_give_an_empty_matrix(pipeline, side_by_side):
    for fitted in (pipeline, side_by_side):
        width = len(fitted.output_names)
        assert fitted.transform_rows([]).shape == (0, width)
        assert fitted.transform_columns(columns_of([])).shape == (0, width)
        assert fitted.transform_table(table_of([])).shape == (0, width)


# -- definition_hash --------------------------------------------------------------------------------------


def shuffled_keys(value, draw):
    """The same JSON value with every dict's keys in a drawn order (lists keep theirs: order is meaning)."""
    if isinstance(value, dict):
        return {key: shuffled_keys(value[key], draw) for key in draw(st.permutations(list(value)))}
    if isinstance(value, list):
        return [shuffled_keys(item, draw) for item in value]
    return value


def test_definition_hash_is_stable():
    small = [
        {"name": "income_log", "transform": "log1p", "source": "income"},
        {"name": "age_bucket", "transform": "bucketise", "source": "age", "params": {"edges": [18, 30, 50]}},
    ]
    reordered = [
        {"source": "income", "transform": "log1p", "name": "income_log"},
        {"params": {"edges": [18, 30, 50]}, "source": "age", "transform": "bucketise", "name": "age_bucket"},
    ]
    # Stored with every feature set version: the same definition must give the same digest in any
    # process, on any release.
    expected = "30a20745ab4d185d591c029c0097d092315b64a711cc0c0b39cfe75034e577ad"
    assert definition_hash(small) == definition_hash(reordered) == expected
    assert definition_hash(copy.deepcopy(DEFINITION)) == definition_hash(DEFINITION)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_definition_hash_ignores_key_order(data):
    assert definition_hash(shuffled_keys(DEFINITION, data.draw)) == definition_hash(DEFINITION)


def nudged(value):
    """Every single small change to one parameter value (or one item of a list parameter)."""
    if isinstance(value, bool):
        yield not value
    elif isinstance(value, (int, float)):
        yield value + 1
        yield value - 0.5
        yield str(value)
    elif isinstance(value, str):
        yield value + "x"
        if value.upper() != value:
            yield value.upper()
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for other in nudged(item):
                yield [*value[:index], other, *value[index + 1 :]]
        yield value[:-1]
        yield [*value, value[-1] + 1]


def variants():
    """(what changed, definition) for every single change to one feature's params, name, sources or place."""
    for position, feature in enumerate(DEFINITION):
        for key, value in feature.get("params", {}).items():
            for other in nudged(value):
                changed = copy.deepcopy(DEFINITION)
                changed[position]["params"][key] = other
                yield f"{feature['name']}.params.{key}={other!r}", changed
            changed = copy.deepcopy(DEFINITION)
            del changed[position]["params"][key]
            yield f"{feature['name']}.params without {key}", changed
        changed = copy.deepcopy(DEFINITION)
        changed[position]["name"] = feature["name"] + "_2"
        yield f"{feature['name']}.name", changed
        changed = copy.deepcopy(DEFINITION)
        if "source" in feature:
            changed[position]["source"] = "b" if feature["source"] == "a" else "a"
        else:
            changed[position]["sources"] = list(reversed(feature["sources"]))
        yield f"{feature['name']}.source", changed
        if position:
            changed = copy.deepcopy(DEFINITION)
            changed[position - 1], changed[position] = changed[position], changed[position - 1]
            yield f"{feature['name']} moved up", changed  # feature order is output order


def test_definition_hash_changes_when_any_param_changes():
    digests: dict[str, str] = {definition_hash(DEFINITION): "the original"}
    for what, changed in variants():
        digest = definition_hash(changed)
        assert digest not in digests, f"{what} hashes like {digests.get(digest)}"
        digests[digest] = what
    assert len(digests) > 100


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_definition_hash_changes_when_a_param_gets_any_other_value(data):
    position = data.draw(st.sampled_from([i for i, feature in enumerate(DEFINITION) if "params" in feature]))
    params = DEFINITION[position]["params"]
    key = data.draw(st.sampled_from(sorted(params)))
    other = data.draw(
        st.one_of(
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=5),
            st.lists(st.integers(), max_size=4),
            st.none(),
        ).filter(lambda value: json.dumps(value) != json.dumps(params[key]))
    )
    changed = copy.deepcopy(DEFINITION)
    changed[position]["params"][key] = other
    assert definition_hash(changed) != definition_hash(DEFINITION)
    assert definition_hash(shuffled_keys(changed, data.draw)) == definition_hash(changed)


def test_invalid_definitions_are_refused():
    for bad in (
        [{"name": "y", "transform": "no_such_transform", "source": "x"}],
        [{"name": "y", "transform": "log1p", "source": "not_a_column"}],
        [{"name": "y", "transform": "log1p", "source": "city"}],
    ):
        assert validate_definition(bad, SCHEMA)
        with pytest.raises(DefinitionError):
            FittedPipeline.fit(bad, columns_of(FIT_DATA), SCHEMA)


# -- known bugs in apps/features/pipeline.py, found by the tests above -----------------------------------
# Each states the behaviour the pipeline should have; strict, so that a fix shows up as XPASS (a failure)
# and the marker gets removed with it.


def test_fit_survives_a_constant_large_column():
    # A single-valued output column: low == high, so bins=1 and numpy widens the range by ±0.5, which
    # rounds away at this magnitude ("Too many bins for data range").
    definition = [{"name": "account", "transform": "passthrough", "source": "account"}]
    pipeline = FittedPipeline.fit(definition, {"account": [2.0**53, 2.0**53]}, {"account": "float"})
    assert pipeline.statistics["account"]["count"] == 2


def test_tables_with_nanosecond_timestamps_transform_like_their_rows():
    definition = [{"name": "hour", "transform": "date_part", "source": "t", "params": {"part": "hour"}}]
    pipeline = FittedPipeline.fit(definition, {"t": [dt.datetime(2020, 1, 1, 5)]}, {"t": "datetime"})
    nanoseconds = 1_577_854_800_000_000_001  # 2020-01-01T05:00:00.000000001, as pandas writes Parquet
    table = pa.table({"t": pa.array([nanoseconds], pa.timestamp("ns"))})
    by_rows = pipeline.transform_rows([{"t": "2020-01-01T05:00:00"}])
    assert_bit_identical(pipeline.transform_table(table), by_rows)


def test_a_date_out_of_range_in_utc_is_a_problem_not_an_exception():
    definition = [{"name": "hour", "transform": "date_part", "source": "t", "params": {"part": "hour"}}]
    pipeline = FittedPipeline.fit(definition, {"t": [dt.datetime(2020, 1, 1, 5)]}, {"t": "datetime"})
    row = {"t": "0001-01-01T00:00:00+05:00"}  # a valid ISO 8601 text from a request body
    assert pipeline.validate_rows([row])
    assert np.isnan(pipeline.transform_rows([row])).all()


def test_a_fitted_state_is_strict_json_or_refused():
    # model versions keep the state in a JSONField; PostgreSQL's jsonb refuses NaN and Infinity
    definition = [
        {"name": "x_std", "transform": "standardise", "source": "x"},
        {"name": "x_filled", "transform": "fill", "source": "x", "params": {"statistic": "median"}},
    ]
    try:
        pipeline = FittedPipeline.fit(definition, {"x": [1.5e308, 1.5e308, 1.0]}, {"x": "float"})
    except DefinitionError:
        return
    json.dumps(pipeline.to_state(), allow_nan=False)
