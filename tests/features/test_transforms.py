import math

import numpy as np

from apps.features.transforms import FeaturePipeline

COLUMNS = {
    "id": ["a", "b", "c", "d"],
    "income": [1000.0, 2500.5, None, 4000.0],
    "age": [20, 30, 40, 50],
    "city": ["north", "south", "north", None],
    "label": ["yes", "no", "yes", "no"],
}


def fitted() -> FeaturePipeline:
    return FeaturePipeline.fit(COLUMNS, exclude=["label"], subject_key="id")


def test_fit_learns_kinds_vocabularies_and_ranges():
    pipeline = fitted()
    assert pipeline.names == ["income", "age", "city"]
    assert pipeline.signature() == [
        {"name": "income", "nullable": True, "type": "number", "minimum": 1000.0, "maximum": 4000.0},
        {"name": "age", "nullable": False, "type": "integer", "minimum": 20.0, "maximum": 50.0},
        {"name": "city", "nullable": True, "type": "category", "categories": ["north", "south"]},
    ]


def test_rows_and_columns_give_the_same_matrix_and_state_round_trips():
    pipeline = fitted()
    restored = FeaturePipeline.from_state(pipeline.to_state())
    rows = [{"income": 1.5, "age": 3, "city": "south"}, {"income": None, "age": 7, "city": "mars"}]
    by_rows = restored.transform_rows(rows)
    by_columns = pipeline.transform_columns({name: [row[name] for row in rows] for name in pipeline.names})
    assert by_rows.dtype == np.float32
    np.testing.assert_array_equal(by_rows, by_columns)
    assert by_rows[0].tolist() == [1.5, 3.0, 1.0]
    assert math.isnan(by_rows[1][0]) and math.isnan(by_rows[1][2])


def test_validation_names_every_problem():
    pipeline = fitted()
    rows = [
        {"income": "12", "age": True, "city": "mars", "extra": 1},
        {"income": float("inf"), "city": 3},
        "not an object",
    ]
    assert pipeline.validate_rows(rows) == [
        {"row": 0, "field": "extra", "message": "is not an input of this model"},
        {"row": 0, "field": "income", "message": "must be a number, not str"},
        {"row": 0, "field": "age", "message": "must be a number, not bool"},
        {"row": 0, "field": "city", "message": "unknown category 'mars'; allowed: 'north', 'south'"},
        {"row": 1, "field": "income", "message": "must be a finite number"},
        {"row": 1, "field": "age", "message": "is required"},
        {"row": 1, "field": "city", "message": "must be a string category, not int"},
        {"row": 2, "field": None, "message": "must be an object of feature values, not str"},
    ]
    assert pipeline.validate_rows([]) == [
        {"row": None, "field": "inputs", "message": "must be a non-empty list of objects"}
    ]
    assert pipeline.validate_rows([{"income": None, "age": 1, "city": None, "id": "x"}]) == []
    assert pipeline.validate_rows([{"income": 1, "age": None, "city": "north"}]) == [
        {"row": 0, "field": "age", "message": "must not be null"}
    ]
