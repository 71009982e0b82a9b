"""Declarative data checks on Parquet files: spec validation, exact messages and global row numbers."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from apps.data.checks import KINDS, CheckResult, blocking_failures, run_checks, validate_check_spec

NAN = float("nan")


@pytest.fixture
def data(tmp_path):
    """Nine rows in row groups of three, so failing rows in later groups prove global numbering."""
    path = tmp_path / "data.parquet"
    table = pa.table(
        {
            "customer_id": pa.array([1, 2, 3, 2, 5, 6, 1, 8, 2], pa.int64()),
            "age": pa.array([30, None, 17, 45, 130, None, 64, 12, 121], pa.int64()),
            "city": ["north", "east", "west", None, "north", "up", "south", "down", "left"],
            "email": ["a@b.c", "bad", "c@d.e", None, "e f@g", "h@i.j", "k@l.m", "n@o.p", "q@r.s"],
            "income": pa.array([1.0, NAN, 3.0, 4.0, None, 6.0, 7.0, 8.0, 9.0]),
            "score": pa.array([0.5, 0.25, 1.0, 0.75, 0.0, 0.5, 0.5, 0.75, 1.0]),
        }
    )
    pq.write_table(table, path, row_group_size=3)
    assert pq.ParquetFile(path).metadata.num_row_groups == 3
    return path


def check(kind, column="", severity="blocking", **params):
    return {"kind": kind, "column": column, "params": params, "severity": severity}


def run_one(path, spec):
    (result,) = run_checks(path, [spec])
    return result


# -- validate_check_spec ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "column", "params"),
    [
        ("not_null", "age", {}),
        ("unique", "customer_id", None),
        ("range", "age", {"min": 18, "max": 120}),
        ("range", "age", {"min": 0.5}),
        ("range", "age", {"max": -3}),
        ("range", "age", {"min": 2, "max": 2.0}),
        ("allowed_values", "city", {"values": ["east", 1, 2.5, True]}),
        ("regex", "email", {"pattern": r"^\S+@\S+$"}),
        ("regex", "email", {"pattern": r"(?=a)b" + "x" * 494}),
        ("max_missing_fraction", "income", {"fraction": 0}),
        ("max_missing_fraction", "income", {"fraction": 1}),
        ("max_missing_fraction", "income", {"fraction": 0.1}),
        ("row_count", "", {"min": 0}),
        ("row_count", None, {"min": 10, "max": 10}),
        ("row_count", "", {"max": 500}),
        ("type", "age", {"type": "datetime"}),
    ],
)
def test_well_formed_specs(kind, column, params):
    assert validate_check_spec(kind, column, params) == {}


@pytest.mark.parametrize(
    ("kind", "column", "params", "problems"),
    [
        ("nonsense", "age", {}, {"kind": "unknown check 'nonsense'; use one of " + ", ".join(KINDS)}),
        ("not_null", "", {}, {"column": "name the column to check"}),
        ("unique", "  ", {}, {"column": "name the column to check"}),
        ("not_null", 3, {}, {"column": "must be text"}),
        ("not_null", "age", {"strict": True}, {"params": "unknown parameter 'strict'; allowed: none"}),
        ("unique", "age", [1], {"params": "must be an object"}),
        ("range", "age", {}, {"params": "give at least one of min and max"}),
        ("range", "age", {"min": None, "max": None}, {"params": "give at least one of min and max"}),
        ("range", "age", {"min": "1"}, {"min": "must be a finite number"}),
        ("range", "age", {"max": True}, {"max": "must be a finite number"}),
        ("range", "age", {"max": float("inf")}, {"max": "must be a finite number"}),
        ("range", "age", {"min": 5, "max": 4}, {"min": "must not be greater than max"}),
        (
            "range",
            "age",
            {"min": 1, "low": 0},
            {"params": "unknown parameter 'low'; allowed: min, max"},
        ),
        ("allowed_values", "city", {}, {"values": "give a non-empty list of values"}),
        ("allowed_values", "city", {"values": []}, {"values": "give a non-empty list of values"}),
        ("allowed_values", "city", {"values": "east"}, {"values": "give a non-empty list of values"}),
        (
            "allowed_values",
            "city",
            {"values": ["east", None]},
            {"values": "each value must be text, a number or true/false"},
        ),
        (
            "allowed_values",
            "city",
            {"values": [["east"]]},
            {"values": "each value must be text, a number or true/false"},
        ),
        ("regex", "email", {}, {"pattern": "give a regular expression"}),
        ("regex", "email", {"pattern": ""}, {"pattern": "give a regular expression"}),
        ("regex", "email", {"pattern": "x" * 501}, {"pattern": "is longer than 500 characters"}),
        (
            "regex",
            "email",
            {"pattern": "(unclosed"},
            {"pattern": "is not a valid regular expression: missing ), unterminated subpattern at position 0"},
        ),
        ("max_missing_fraction", "income", {}, {"fraction": "give a number from 0 to 1"}),
        ("max_missing_fraction", "income", {"fraction": 1.5}, {"fraction": "give a number from 0 to 1"}),
        ("max_missing_fraction", "income", {"fraction": -0.1}, {"fraction": "give a number from 0 to 1"}),
        ("max_missing_fraction", "income", {"fraction": "0.1"}, {"fraction": "give a number from 0 to 1"}),
        ("row_count", "", {}, {"params": "give at least one of min and max"}),
        ("row_count", "", {"min": -1}, {"min": "must be a whole number, zero or more"}),
        ("row_count", "", {"min": 1.5}, {"min": "must be a whole number, zero or more"}),
        ("row_count", "", {"min": 10, "max": 9}, {"min": "must not be greater than max"}),
        (
            "row_count",
            "age",
            {"min": 1},
            {"column": "a row count check applies to the whole data; leave the column empty"},
        ),
        ("type", "age", {}, {"type": "give one of integer, float, boolean, string, datetime"}),
        ("type", "age", {"type": "int"}, {"type": "give one of integer, float, boolean, string, datetime"}),
        (
            "type",
            "",
            {"type": "int", "extra": 1},
            {
                "column": "name the column to check",
                "params": "unknown parameter 'extra'; allowed: type",
                "type": "give one of integer, float, boolean, string, datetime",
            },
        ),
    ],
)
def test_ill_formed_specs(kind, column, params, problems):
    assert validate_check_spec(kind, column, params) == problems


# -- run_checks ------------------------------------------------------------------------------------


def test_not_null_counts_nulls_and_nan(data):
    assert run_one(data, check("not_null", "age")) == CheckResult(
        "not_null", "age", "blocking", False, "2 rows have no value in 'age'", [2, 6], 2
    )
    assert run_one(data, check("not_null", "income")) == CheckResult(
        "not_null", "income", "blocking", False, "2 rows have no value in 'income'", [2, 5], 2
    )
    assert run_one(data, check("not_null", "score")) == CheckResult(
        "not_null", "score", "blocking", True, "every row has a value in 'score'", [], 0
    )


def test_unique_reports_every_repeat_after_the_first(data):
    assert run_one(data, check("unique", "customer_id")) == CheckResult(
        "unique", "customer_id", "blocking", False, "'customer_id' has 3 duplicated values", [4, 7, 9], 3
    )
    assert run_one(data, check("unique", "city")) == CheckResult(
        "unique", "city", "blocking", False, "'city' has 1 duplicated value", [5], 1
    )


def test_unique_ignores_missing_values(data):
    assert run_one(data, check("unique", "age")) == CheckResult(
        "unique", "age", "blocking", True, "'age' has no duplicated values", [], 0
    )
    assert run_one(data, check("unique", "income")).passed


def test_range(data):
    assert run_one(data, check("range", "age", min=18, max=120)) == CheckResult(
        "range", "age", "blocking", False, "4 values of 'age' are outside [18, 120]", [3, 5, 8, 9], 4
    )
    assert run_one(data, check("range", "age", min=18)).message == "2 values of 'age' are below 18"
    assert run_one(data, check("range", "age", max=125.5)).message == "1 value of 'age' is above 125.5"
    assert run_one(data, check("range", "income", min=1.0, max=9.0)) == CheckResult(
        "range", "income", "blocking", True, "every value of 'income' is within [1, 9]", [], 0
    )
    assert run_one(data, check("range", "score", max=0.8, severity="warning")) == CheckResult(
        "range", "score", "warning", False, "2 values of 'score' are above 0.8", [3, 9], 2
    )


def test_range_needs_numbers(data):
    assert run_one(data, check("range", "city", min=1)) == CheckResult(
        "range", "city", "blocking", False, "'city' is string; a range check needs numbers", [], 0
    )


def test_allowed_values(data):
    assert run_one(data, check("allowed_values", "city", values=["east", "north", "south"])) == CheckResult(
        "allowed_values",
        "city",
        "blocking",
        False,
        "4 values of 'city' are not among 'east', 'north', 'south'",
        [3, 6, 8, 9],
        4,
    )
    result = run_one(data, check("allowed_values", "customer_id", values=[1, 2, 3.0, 5, "six", 8.5]))
    assert (result.message, result.failing_rows) == (
        "2 values of 'customer_id' are not among 1, 2, 3, 5, 'six', 8.5",
        [6, 8],
    )


def test_allowed_values_lists_at_most_ten(data):
    values = [f"c{number}" for number in range(12)] + ["north", "east", "west", "up", "south", "down", "left"]

    result = run_one(data, check("allowed_values", "city", values=values))

    assert result.passed
    assert result.message == (
        "every value of 'city' is among 'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9' and 9 more"
    )


def test_regex_uses_search_semantics(data):
    assert run_one(data, check("regex", "email", pattern=r"^\S+@\S+$")) == CheckResult(
        "regex", "email", "blocking", False, r"2 values of 'email' do not match ^\S+@\S+$", [2, 5], 2
    )
    assert run_one(data, check("regex", "email", pattern="@")).message == "1 value of 'email' does not match @"
    assert run_one(data, check("regex", "city", pattern="^[a-z]+$")) == CheckResult(
        "regex", "city", "blocking", True, "every value of 'city' matches ^[a-z]+$", [], 0
    )


def test_regex_falls_back_to_python_for_what_re2_cannot_compile(data):
    pattern = r"^(?!bad$)(?=\S*@)\S+$"  # lookarounds are not RE2
    with pytest.raises(pa.ArrowInvalid):
        pc.match_substring_regex(pa.array(["x"]), pattern=pattern)

    result = run_one(data, check("regex", "email", pattern=pattern))

    assert result == CheckResult(
        "regex", "email", "blocking", False, f"2 values of 'email' do not match {pattern}", [2, 5], 2
    )


def test_regex_needs_text(data):
    assert run_one(data, check("regex", "age", pattern="1")).message == "'age' is integer; a regex check needs text"


def test_max_missing_fraction(tmp_path, data):
    path = tmp_path / "income.parquet"
    pq.write_table(pa.table({"income": [1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]}), path, row_group_size=3)

    assert run_one(path, check("max_missing_fraction", "income", fraction=0.1)) == CheckResult(
        "max_missing_fraction",
        "income",
        "blocking",
        False,
        "12.5% of 'income' is missing; at most 10% allowed",
        [2],
        1,
    )
    assert run_one(path, check("max_missing_fraction", "income", fraction=0.125)).passed
    assert run_one(data, check("max_missing_fraction", "income", fraction=0.25)) == CheckResult(
        "max_missing_fraction",
        "income",
        "blocking",
        True,
        "22.22% of 'income' is missing; at most 25% allowed",
        [2, 5],
        2,
    )
    assert run_one(data, check("max_missing_fraction", "score", fraction=0)).message == (
        "0% of 'score' is missing; at most 0% allowed"
    )


def test_tiny_missing_fraction_is_not_shown_as_zero(tmp_path):
    path = tmp_path / "big.parquet"
    values = np.arange(100_001, dtype=np.float64)
    values[50_000] = np.nan
    pq.write_table(pa.table({"x": values}), path)

    result = run_one(path, check("max_missing_fraction", "x", fraction=0))

    assert (result.passed, result.failing_rows, result.failing_count) == (False, [50_001], 1)
    assert result.message == "less than 0.01% of 'x' is missing; at most 0% allowed"


def test_row_count(data):
    assert run_one(data, check("row_count", min=500)) == CheckResult(
        "row_count", "", "blocking", False, "the data has 9 rows; at least 500 required", [], 0
    )
    assert run_one(data, check("row_count", max=8)).message == "the data has 9 rows; at most 8 allowed"
    assert run_one(data, check("row_count", min=9, max=9)) == CheckResult(
        "row_count", "", "blocking", True, "the data has 9 rows; at least 9 and at most 9 required", [], 0
    )


def test_row_count_of_one_row(tmp_path):
    path = tmp_path / "one.parquet"
    pq.write_table(pa.table({"x": [1]}), path)

    assert run_one(path, check("row_count", min=2)).message == "the data has 1 row; at least 2 required"


def test_type(data, tmp_path):
    assert run_one(data, check("type", "age", type="string")) == CheckResult(
        "type", "age", "blocking", False, "'age' is integer, expected string", [], 0
    )
    assert run_one(data, check("type", "city", type="integer")).message == "'city' is string, expected integer"
    assert run_one(data, check("type", "income", type="float")) == CheckResult(
        "type", "income", "blocking", True, "'income' is float", [], 0
    )
    path = tmp_path / "dictionary.parquet"
    pq.write_table(pa.table({"c": pa.array(["a", "b"]).dictionary_encode()}), path)
    assert run_one(path, check("type", "c", type="string")).passed


def test_missing_column_fails(data):
    for kind, params in [("not_null", {}), ("range", {"min": 1}), ("type", {"type": "string"})]:
        assert run_one(data, {"kind": kind, "column": "x", "params": params, "severity": "warning"}) == CheckResult(
            kind, "x", "warning", False, "column 'x' is not in the data", [], 0
        )


def test_ill_formed_spec_fails_instead_of_raising(data):
    results = run_checks(
        data,
        [
            {"kind": "range", "column": "age", "params": {"min": 5, "max": 1}, "severity": "warning"},
            {"kind": "not_null", "column": "age", "severity": "fatal"},
        ],
    )

    assert results == [
        CheckResult("range", "age", "warning", False, "the check is ill formed (min: must not be greater than max)"),
        CheckResult(
            "not_null", "age", "blocking", False, "the check is ill formed (severity: give one of blocking, warning)"
        ),
    ]


def test_defaults_blocking_and_no_params(data):
    (result,) = run_checks(data, [{"kind": "not_null", "column": "score"}])

    assert (result.severity, result.passed) == ("blocking", True)


def test_failing_rows_list_the_first_twenty_across_row_groups(tmp_path):
    path = tmp_path / "many.parquet"
    values = [None if row % 2 else row for row in range(100)]
    pq.write_table(pa.table({"x": pa.array(values, pa.int64())}), path, row_group_size=7)

    result = run_one(path, check("not_null", "x"))

    assert result.failing_count == 50
    assert result.failing_rows == list(range(2, 41, 2))
    assert result.message == "50 rows have no value in 'x'"


def test_unsupported_column_type_fails_with_a_message(tmp_path):
    path = tmp_path / "nested.parquet"
    pq.write_table(pa.table({"tags": pa.array([[1], [1], None])}), path)

    result = run_one(path, check("unique", "tags"))

    assert not result.passed
    assert result.message.startswith("'tags' holds list<element: int64>, which a unique check cannot handle (")


def test_results_keep_spec_order_and_each_column_is_read_once(data, monkeypatch):
    reads = []
    read = pq.ParquetFile.read

    def spy(self, columns=None, **kwargs):
        reads.append(columns)
        return read(self, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    specs = [
        check("not_null", "age"),
        check("row_count", min=1),
        check("unique", "customer_id"),
        check("type", "city", type="string"),
        check("range", "age", min=18, max=120),
        check("not_null", "nowhere"),
        check("unique", "age"),
    ]

    results = run_checks(data, specs)

    assert [(result.kind, result.column) for result in results] == [(spec["kind"], spec["column"]) for spec in specs]
    assert reads == [["age"], ["customer_id"]]


def test_blocking_failures(data):
    results = run_checks(
        data,
        [
            check("not_null", "age"),
            check("not_null", "score"),
            check("unique", "customer_id", severity="warning"),
            check("row_count", min=100),
        ],
    )

    assert [(result.kind, result.column) for result in blocking_failures(results)] == [
        ("not_null", "age"),
        ("row_count", ""),
    ]
    assert blocking_failures([]) == []
