import math

import numpy as np
import pyarrow as pa
import pytest

from apps.features.pipeline import DefinitionError, FittedPipeline, definition_hash, sources_of, validate_definition

SCHEMA = {"x": "float", "n": "integer", "city": "string", "day": "datetime", "flag": "boolean"}
COLUMNS = {
    "x": [1.0, 2.0, None, 4.0, -3.0],
    "n": [10, 20, 30, 40, 0],
    "city": ["north", "south", "north", None, "east"],
    "day": ["2024-01-01T06:30:00", "2024-02-29T23:00:00", None, "2023-12-31T00:00:00", "not a date"],
    "flag": [True, False, True, None, False],
}


def fit(*features):
    return FittedPipeline.fit(list(features), COLUMNS, SCHEMA)


def column(pipeline, rows=None):
    matrix = pipeline.transform_columns(COLUMNS if rows is None else rows)
    return [None if math.isnan(value) else round(float(value), 5) for value in matrix[:, 0]]


@pytest.mark.parametrize(
    ("feature", "expected"),
    [
        ({"name": "f", "transform": "passthrough", "source": "x"}, [1.0, 2.0, None, 4.0, -3.0]),
        ({"name": "f", "transform": "standardise", "source": "n"}, [-0.70711, 0.0, 0.70711, 1.41421, -1.41421]),
        ({"name": "f", "transform": "clip", "source": "x", "params": {"min": 0, "max": 2}}, [1.0, 2.0, None, 2.0, 0.0]),
        ({"name": "f", "transform": "log1p", "source": "x"}, [0.69315, 1.09861, None, 1.60944, None]),
        (
            {"name": "f", "transform": "bucketise", "source": "n", "params": {"edges": [15, 35]}},
            [0.0, 1.0, 1.0, 2.0, 0.0],
        ),
        ({"name": "f", "transform": "ordinal", "source": "city"}, [1.0, 2.0, 1.0, None, 0.0]),
        ({"name": "f", "transform": "missing_indicator", "source": "x"}, [0.0, 0.0, 1.0, 0.0, 0.0]),
        ({"name": "f", "transform": "missing_indicator", "source": "city"}, [0.0, 0.0, 0.0, 1.0, 0.0]),
        (
            {"name": "f", "transform": "fill", "source": "x", "params": {"statistic": "median"}},
            [1.0, 2.0, 1.5, 4.0, -3.0],
        ),
        ({"name": "f", "transform": "fill", "source": "x", "params": {"value": -1}}, [1.0, 2.0, -1.0, 4.0, -3.0]),
        (
            {"name": "f", "transform": "date_part", "source": "day", "params": {"part": "month"}},
            [1.0, 2.0, None, 12.0, None],
        ),
        (
            {"name": "f", "transform": "date_part", "source": "day", "params": {"part": "weekday"}},
            [0.0, 3.0, None, 6.0, None],
        ),
        (
            {"name": "f", "transform": "date_part", "source": "day", "params": {"part": "hour"}},
            [6.0, 23.0, None, 0.0, None],
        ),
        (
            {
                "name": "f",
                "transform": "date_part",
                "source": "day",
                "params": {"part": "days_since", "reference": "2024-01-01"},
            },
            [0.27083, 59.95833, None, -1.0, None],
        ),
        ({"name": "f", "transform": "ratio", "sources": ["x", "n"]}, [0.1, 0.1, None, 0.1, None]),
        ({"name": "f", "transform": "difference", "sources": ["n", "x"]}, [9.0, 18.0, None, 36.0, 3.0]),
        ({"name": "f", "transform": "passthrough", "source": "flag"}, [1.0, 0.0, 1.0, None, 0.0]),
    ],
)
def test_each_transform_gives_exact_values(feature, expected):
    pipeline = fit(feature)
    assert column(pipeline) == expected
    arrow = {name: pa.array(values, type=pa.string() if name == "day" else None) for name, values in COLUMNS.items()}
    assert column(pipeline, arrow) == expected


def test_one_hot_keeps_the_top_values_and_an_other_column():
    pipeline = fit({"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 1}})
    assert pipeline.output_names == ["city=north", "city=other"]
    matrix = pipeline.transform_rows([{"city": "north"}, {"city": "east"}, {"city": None}, {"city": "mars"}])
    assert matrix.tolist() == [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 1.0]]


def test_quantile_buckets_and_statistics_are_fitted_on_the_training_columns():
    pipeline = fit({"name": "b", "transform": "bucketise", "source": "n", "params": {"quantiles": 2}})
    assert pipeline.features[0]["edges"] == [20.0]
    assert pipeline.statistics["b"] == {
        "count": 5,
        "missing": 0,
        "mean": 0.6,
        "std": pytest.approx(0.4898979),
        "min": 0.0,
        "max": 1.0,
        "histogram": {"edges": pytest.approx(list(np.linspace(0, 1, 11))), "counts": [2, 0, 0, 0, 0, 0, 0, 0, 0, 3]},
    }


def test_definitions_are_validated_against_the_data():
    definition = [
        {"name": "a", "transform": "standardise", "source": "city"},
        {"name": "a", "transform": "one_hot", "source": "x"},
        {"name": "c", "transform": "ratio", "sources": ["x"]},
        {"name": "d", "transform": "clip", "source": "missing", "params": {"min": 3, "max": 1, "step": 2}},
        {"name": "e", "transform": "date_part", "source": "n", "params": {"part": "century"}},
        {"name": "f", "transform": "explode", "source": "x"},
        {"name": "g", "transform": "bucketise", "source": "x", "params": {"edges": [3, 2]}},
    ]
    assert validate_definition(definition, SCHEMA) == [
        {"feature": "a", "field": "source", "message": "standardise needs a numeric column; 'city' is string"},
        {"feature": "a", "field": "name", "message": "is used by another feature"},
        {"feature": "a", "field": "source", "message": "one_hot needs a text column; 'x' is float"},
        {"feature": "c", "field": "sources", "message": "ratio needs two source columns"},
        {"feature": "d", "field": "source", "message": "column 'missing' is not in the data"},
        {"feature": "d", "field": "params", "message": "unknown parameter 'step' for clip"},
        {"feature": "d", "field": "params", "message": "min must not exceed max"},
        {"feature": "e", "field": "source", "message": "date_part needs a date column; 'n' is integer"},
        {"feature": "e", "field": "params", "message": "part must be one of year, month, weekday, hour, days_since"},
        {
            "feature": "f",
            "field": "transform",
            "message": "must be one of passthrough, standardise, clip, log1p, "
            "bucketise, one_hot, ordinal, missing_indicator, fill, date_part, ratio, difference",
        },
        {"feature": "g", "field": "params", "message": "edges must increase"},
    ]
    with pytest.raises(DefinitionError) as raised:
        FittedPipeline.fit(definition, COLUMNS, SCHEMA)
    assert raised.value.message == "11 problem(s) in the feature set."
    assert validate_definition([], SCHEMA) == [
        {"feature": None, "field": "features", "message": "must be a non-empty list of features"}
    ]


def test_the_definition_hash_pins_every_detail_and_the_state_round_trips():
    feature = {"name": "f", "transform": "clip", "source": "x", "params": {"min": 0, "max": 2}}
    reordered = {"params": {"max": 2, "min": 0}, "source": "x", "transform": "clip", "name": "f"}
    assert definition_hash([feature]) == definition_hash([reordered])
    assert definition_hash([feature]) != definition_hash([{**feature, "params": {"min": 0, "max": 3}}])
    pipeline = fit(feature, {"name": "g", "transform": "ratio", "sources": ["x", "n"]})
    assert pipeline.definition_hash == definition_hash(
        [feature, {"name": "g", "transform": "ratio", "sources": ["x", "n"]}]
    )
    restored = FittedPipeline.from_state(pipeline.to_state())
    assert restored.transform_columns(COLUMNS).tobytes() == pipeline.transform_columns(COLUMNS).tobytes()
    assert sources_of({"transform": "ratio", "sources": ["x", "n"]}) == ["x", "n"]
