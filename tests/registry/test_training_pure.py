"""The trainer on its own: no database, small generated data, real XGBoost, exact expectations."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
import xgboost as xgb

from apps.features.transforms import FeaturePipeline
from apps.registry.training import (
    PARAM_DOCS,
    PARAMS,
    TrainingCancelled,
    TrainingDataError,
    _as_columns,
    _auto_features,
    check_trainable,
    train,
    validate_params,
)

SMALL = {"n_estimators": 20, "max_depth": 3, "early_stopping_rounds": 5}
EVALUATION_KEYS = {
    "metrics",
    "confusion_matrix",
    "roc_curve",
    "pr_curve",
    "calibration",
    "importance",
    "fairness",
    "fairness_passed",
    "rows",
    "importance_rows",
}
TRIAL_KEYS = {"number", "params", "score", "state", "best_iteration"}


def loans(rows: int = 300, seed: int = 7, classes: int = 2, positive_share: float | None = None) -> dict[str, list]:
    """Loan-like columns: income, age, city (some missing), a flag, a day number and an outcome."""
    rng = np.random.default_rng(seed)
    income = rng.uniform(1000, 9000, rows).round(2)
    age = rng.integers(18, 80, rows)
    city = rng.choice(["north", "south", "east"], rows).astype(object)
    city[rng.random(rows) < 0.05] = None
    score = income / 9000 + (city == "north") * 0.2 + rng.uniform(-0.3, 0.3, rows)
    if positive_share is not None:
        outcome = np.where(score >= np.quantile(score, 1 - positive_share), "yes", "no")
    elif classes == 2:
        outcome = np.where(score > 0.6, "yes", "no")
    else:
        outcome = np.array(["low", "mid", "high"])[np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))]
    return {
        "customer_id": [f"C{index:04d}" for index in range(rows)],
        "income": income.tolist(),
        "age": age.tolist(),
        "city": city.tolist(),
        "flag": (rng.random(rows) < 0.3).tolist(),
        "day": rng.permutation(rows).tolist(),  # unique, shuffled: the time column of the time holdout
        "repaid": outcome.tolist(),
    }


def booster_of(result) -> xgb.Booster:
    booster = xgb.Booster()
    booster.load_model(bytearray(result.model_ubj))
    return booster


# -- tasks -------------------------------------------------------------------------------------------


def test_binary_classification_returns_the_model_its_evaluation_and_its_holdout():
    result = train(loans(), target="repaid", subject_key="customer_id", params=SMALL)
    assert (result.task_type, result.labels, result.holdout) == ("classification", ["no", "yes"], "stratified")
    assert result.rows == {"train": 192, "validation": 48, "test": 60, "dropped_without_target": 0}
    assert result.pipeline.names == ["income", "age", "city", "flag", "day"]
    assert set(result.evaluation) == EVALUATION_KEYS
    assert set(result.evaluation["metrics"]) == {"auc", "accuracy", "precision", "recall", "f1", "log_loss", "brier"}
    assert result.metrics == {name: result.evaluation["metrics"][name] for name in ("auc", "accuracy", "log_loss")}
    assert result.evaluation["rows"] == 60
    assert result.evaluation["importance_rows"] == 60
    assert {item["feature"] for item in result.evaluation["importance"]} == set(result.pipeline.names)
    assert all(item["mean_abs_shap"] is not None for item in result.evaluation["importance"])
    assert result.holdout_matrix.dtype == np.float32
    assert result.holdout_matrix.shape == (60, 5)
    booster = booster_of(result)
    assert np.array_equal(result.holdout_predictions, booster.inplace_predict(result.holdout_matrix))
    assert result.holdout_predictions.shape == (60,)
    assert len(booster.get_dump()) == result.best_iteration + 1
    assert set(result.latency) == {"median_us", "p95_us"}
    assert set(result.library_versions) == {"xgboost", "numpy", "pyarrow", "scikit-learn", "optuna"}
    assert (result.trials, result.search_metric) == ([], "")
    assert len(result.test_rows) == 60
    assert list(result.test_rows) == sorted(result.test_rows)


def test_three_classes_train_a_softprob_model():
    result = train(loans(classes=3), target="repaid", params=SMALL)
    assert (result.task_type, result.labels) == ("classification", ["high", "low", "mid"])
    config = booster_of(result).save_config()
    assert '"name":"multi:softprob"' in config
    assert '"num_class":"3"' in config
    assert result.holdout_predictions.shape == (60, 3)
    assert set(result.evaluation["metrics"]) == {"auc", "accuracy", "f1_macro", "log_loss"}
    assert result.evaluation["confusion_matrix"]["labels"] == ["high", "low", "mid"]
    assert set(result.evaluation) == {
        "metrics",
        "confusion_matrix",
        "importance",
        "fairness",
        "fairness_passed",
        "rows",
        "importance_rows",
    }


def test_a_numeric_target_trains_a_regression():
    columns = loans()
    columns["repaid"] = [value / 1000 for value in columns["income"]]
    columns["income"] = [value + 1 for value in columns["income"]]
    result = train(columns, target="repaid", params=SMALL)
    assert (result.task_type, result.labels, result.holdout) == ("regression", [], "random")
    assert result.rows == {"train": 192, "validation": 48, "test": 60, "dropped_without_target": 0}
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    assert result.metrics["r2"] > 0.9
    assert '"name":"reg:squarederror"' in booster_of(result).save_config()


def test_rows_without_a_target_are_dropped_and_the_test_rows_name_input_rows():
    columns = loans()
    for index in range(0, 300, 30):
        columns["repaid"][index] = None
    result = train(columns, target="repaid", params=SMALL, protected={"city": columns["city"]})
    assert result.rows == {"train": 185, "validation": 47, "test": 58, "dropped_without_target": 10}
    assert not set(result.test_rows) & set(range(0, 300, 30))
    groups = result.evaluation["fairness"]["city"]["groups"]
    expected = {}
    for row in result.test_rows:
        if columns["city"][row] is not None:
            expected[columns["city"][row]] = expected.get(columns["city"][row], 0) + 1
    assert {group["group"]: group["count"] for group in groups} == expected


# -- the time holdout --------------------------------------------------------------------------------


def test_the_time_holdout_tests_on_exactly_the_newest_rows():
    columns = loans(rows=200)
    params = {**SMALL, "holdout": "time", "time_column": "day"}
    result = train(columns, target="repaid", params=params)
    assert result.holdout == "time"
    assert result.rows == {"train": 128, "validation": 32, "test": 40, "dropped_without_target": 0}
    days = np.array(columns["day"])
    tested = days[result.test_rows]
    assert sorted(tested) == list(range(160, 200))
    assert days[np.setdiff1d(np.arange(200), result.test_rows)].max() < tested.min()
    assert "day" not in result.pipeline.names  # the clock is the split, not a feature


def test_the_time_holdout_orders_dates_and_refuses_rows_without_one():
    columns = loans(rows=100)
    start = dt.datetime(2024, 1, 1)
    columns["when"] = [start + dt.timedelta(hours=day) for day in columns["day"]]
    params = {**SMALL, "holdout": "time", "time_column": "when"}
    result = train(columns, target="repaid", params=params)
    assert sorted(np.array(columns["day"])[result.test_rows]) == list(range(80, 100))
    columns["when"][5] = None
    message = (
        "The time column 'when' has no value in 1 row(s) that have a target; the time holdout needs a time on "
        "every row."
    )
    assert check_trainable(columns, target="repaid", params=params) == [message]
    with pytest.raises(TrainingDataError) as raised:
        train(columns, target="repaid", params=params)
    assert str(raised.value) == message


# -- class weights -----------------------------------------------------------------------------------


def test_balanced_class_weights_change_the_model():
    columns = loans(positive_share=0.15)
    plain = train(columns, target="repaid", params=SMALL)
    weighted = train(columns, target="repaid", params={**SMALL, "class_weight": "balanced"})
    assert plain.model_ubj != weighted.model_ubj
    # Weighing the rare class up moves the predicted probabilities towards it.
    assert weighted.holdout_predictions.mean() > plain.holdout_predictions.mean()


def test_balanced_class_weights_are_refused_for_regression():
    columns = loans()
    columns["repaid"] = columns["income"]
    message = "class_weight 'balanced' weighs classes, so it applies to classification only."
    assert check_trainable(columns, target="repaid", params={"class_weight": "balanced"}) == [message]
    with pytest.raises(TrainingDataError, match=r"^class_weight 'balanced' weighs classes"):
        train(columns, target="repaid", params={**SMALL, "class_weight": "balanced"})


# -- parameters ----------------------------------------------------------------------------------------


def test_defaults_resolve_and_every_parameter_is_documented():
    resolved, problems = validate_params(None)
    assert problems == {}
    assert resolved == {name: spec.default for name, spec in PARAMS.items()}
    assert set(PARAM_DOCS) == set(PARAMS)
    assert all(isinstance(text, str) and text and "\n" not in text for text in PARAM_DOCS.values())


@pytest.mark.parametrize(
    ("params", "problems"),
    [
        ({"n_estimators": 0}, {"n_estimators": "must be at least 1 and at most 5000"}),
        ({"n_estimators": 1.5}, {"n_estimators": "must be an integer"}),
        ({"n_estimators": True}, {"n_estimators": "must be an integer"}),
        ({"max_depth": 17}, {"max_depth": "must be at least 1 and at most 16"}),
        ({"learning_rate": 0}, {"learning_rate": "must be greater than 0.0 and at most 1.0"}),
        ({"learning_rate": "fast"}, {"learning_rate": "must be a number"}),
        ({"learning_rate": float("nan")}, {"learning_rate": "must be a number"}),
        ({"subsample": 1.01}, {"subsample": "must be greater than 0.0 and at most 1.0"}),
        ({"colsample_bytree": 0.0}, {"colsample_bytree": "must be greater than 0.0 and at most 1.0"}),
        ({"min_child_weight": -1}, {"min_child_weight": "must be at least 0.0 and at most 1000000.0"}),
        ({"reg_lambda": 2e6}, {"reg_lambda": "must be at least 0.0 and at most 1000000.0"}),
        ({"early_stopping_rounds": 1001}, {"early_stopping_rounds": "must be at least 1 and at most 1000"}),
        ({"test_size": 0.6}, {"test_size": "must be at least 0.05 and at most 0.5"}),
        ({"validation_size": 0.01}, {"validation_size": "must be at least 0.05 and at most 0.5"}),
        ({"seed": -1}, {"seed": "must be at least 0 and at most 2147483647"}),
        ({"nthread": 0}, {"nthread": "must be at least 1 and at most 64"}),
        ({"nthread": 65}, {"nthread": "must be at least 1 and at most 64"}),
        ({"search_trials": 501}, {"search_trials": "must be at least 0 and at most 500"}),
        ({"search_trials": "many"}, {"search_trials": "must be an integer"}),
        ({"holdout": "kfold"}, {"holdout": "must be one of stratified, random, time"}),
        ({"holdout": 1}, {"holdout": "must be one of stratified, random, time"}),
        ({"class_weight": "auto"}, {"class_weight": "must be one of none, balanced"}),
        (
            {"search_metric": "f1"},
            {"search_metric": "must be one of auto, auc, log_loss, accuracy, rmse, mae, r2"},
        ),
        ({"time_column": 3}, {"time_column": "must be a string of at most 200 characters"}),
        ({"time_column": "x" * 201}, {"time_column": "must be a string of at most 200 characters"}),
        ({"holdout": "time"}, {"time_column": "must name a column when holdout is time"}),
        ({"time_column": "day"}, {"time_column": "must be empty unless holdout is time"}),
        ({"bogus": 1}, {"bogus": f"unknown parameter; known: {', '.join(sorted(PARAMS))}"}),
    ],
)
def test_bad_parameters_are_refused_by_name(params, problems):
    assert validate_params(params)[1] == problems


def test_parameters_must_be_an_object():
    assert validate_params([1]) == ({}, {"params": "must be an object"})


def test_train_refuses_bad_parameters_before_reading_data():
    with pytest.raises(TrainingDataError) as raised:
        train({}, target="repaid", params={"max_depth": 0, "holdout": "later"})
    assert str(raised.value) == (
        "Invalid parameters: holdout must be one of stratified, random, time; "
        "max_depth must be at least 1 and at most 16"
    )


# -- checks before training --------------------------------------------------------------------------


def _with(columns: dict[str, list], **changes) -> dict[str, list]:
    return {**columns, **changes}


@pytest.mark.parametrize(
    ("columns", "target", "task_type", "params", "expected"),
    [
        pytest.param(
            loans(), "outcome", "auto", {}, ["The target column 'outcome' is not in the dataset."], id="no-target"
        ),
        pytest.param(
            _with(loans(), repaid=["yes"] * 300),
            "repaid",
            "auto",
            {},
            ["The target column 'repaid' has a single class; classification needs two."],
            id="single-class",
        ),
        pytest.param(
            _with(loans(), repaid=["yes", "no"] * 9 + [None] * 282),
            "repaid",
            "auto",
            {},
            ["Only 18 rows have a target value; at least 20 are needed."],
            id="too-few-rows",
        ),
        pytest.param(
            loans(rows=40),
            "repaid",
            "auto",
            {"test_size": 0.5, "validation_size": 0.5},
            [],
            id="ten-training-rows-are-enough",
        ),
        pytest.param(
            loans(rows=36),
            "repaid",
            "auto",
            {"test_size": 0.5, "validation_size": 0.5},
            [
                "Only 9 rows are left for training after holding out 18 for test and 9 for validation; at least 10 "
                "are needed."
            ],
            id="too-few-training-rows",
        ),
        pytest.param(
            _with(loans(rows=40), repaid=[f"class{index % 12}" for index in range(40)]),
            "repaid",
            "auto",
            {},
            [
                "A stratified holdout puts every class in training, validation and test, but the 12 classes do not "
                "fit in 8 test and 7 validation rows; raise test_size and validation_size, or use holdout 'random'."
            ],
            id="stratified-too-small",
        ),
        pytest.param(
            _with(loans(rows=40), repaid=[f"class{index % 12}" for index in range(40)]),
            "repaid",
            "auto",
            {"holdout": "random"},
            [],
            id="random-has-no-per-class-rule",
        ),
        pytest.param(
            loans(),
            "repaid",
            "auto",
            {"holdout": "time", "time_column": "when"},
            ["The time column 'when' is not in the dataset."],
            id="time-column-missing",
        ),
        pytest.param(
            loans(),
            "repaid",
            "auto",
            {"holdout": "time", "time_column": "city"},
            ["The time column 'city' holds string values; the time holdout needs dates, times or numbers."],
            id="time-column-text",
        ),
        pytest.param(
            loans(),
            "repaid",
            "regression",
            {},
            ["The target column 'repaid' is not numeric; regression needs numbers."],
            id="regression-on-text",
        ),
        pytest.param(
            loans(),
            "repaid",
            "auto",
            {"search_metric": "rmse"},
            ["search_metric 'rmse' does not apply to classification; use auc, log_loss, accuracy."],
            id="metric-for-another-task",
        ),
        pytest.param(
            loans(),
            "repaid",
            "auto",
            {"nthread": 0},
            ["Invalid parameters: nthread must be at least 1 and at most 64"],
            id="bad-params",
        ),
        pytest.param(
            loans(),
            "repaid",
            "ranking",
            {},
            ["The task type must be auto, classification or regression, not 'ranking'."],
            id="unknown-task",
        ),
        pytest.param(loans(), "repaid", "auto", {}, [], id="trainable"),
    ],
)
def test_check_trainable_names_what_stops_training(columns, target, task_type, params, expected):
    assert check_trainable(columns, target=target, task_type=task_type, params=params, schema={}) == expected
    table = pa.table(columns)
    assert check_trainable(table, target=target, task_type=task_type, params=params, schema={}) == expected
    if expected:
        with pytest.raises(TrainingDataError) as raised:
            train(columns, target=target, task_type=task_type, params={**SMALL, **params})
        assert str(raised.value) == " ".join(expected)


def test_check_trainable_uses_the_schema_to_name_a_column_type():
    problems = check_trainable(
        loans(),
        target="repaid",
        params={"holdout": "time", "time_column": "city"},
        schema={"city": "string"},
    )
    assert problems == ["The time column 'city' holds string values; the time holdout needs dates, times or numbers."]


def test_several_problems_are_reported_together():
    columns = _with(loans(), repaid=[float(value) for value in loans()["income"]])
    problems = check_trainable(
        columns, target="repaid", params={"class_weight": "balanced", "search_metric": "auc"}, schema={}
    )
    assert problems == [
        "class_weight 'balanced' weighs classes, so it applies to classification only.",
        "search_metric 'auc' does not apply to regression; use rmse, mae, r2.",
    ]


# -- cancellation and progress -----------------------------------------------------------------------


def test_should_stop_cancels_after_the_round_that_asked():
    asked, progress = [], []

    def should_stop() -> bool:
        asked.append(True)
        return len(asked) == 3

    with pytest.raises(TrainingCancelled, match="after 3 round"):
        train(loans(), target="repaid", params=SMALL, should_stop=should_stop, on_progress=progress.append)
    assert len(asked) == 3
    assert progress == [1 / 20, 2 / 20, 3 / 20]


def test_should_stop_is_asked_between_search_trials():
    trials, asked = [], []

    def should_stop() -> bool:
        asked.append(True)
        return len(trials) == 2  # after the second trial, at the next question

    with pytest.raises(TrainingCancelled, match="after 2 search trial"):
        train(
            loans(),
            target="repaid",
            params={**SMALL, "search_trials": 4},
            should_stop=should_stop,
            on_trial=trials.append,
        )
    assert [trial["number"] for trial in trials] == [0, 1]


# -- search --------------------------------------------------------------------------------------------


def test_a_search_runs_every_trial_keeps_the_best_and_repeats_exactly():
    params = {**SMALL, "search_trials": 4}
    seen, progress = [], []
    first = train(loans(), target="repaid", params=params, on_trial=seen.append, on_progress=progress.append)
    assert len(seen) == 4
    assert all(set(trial) == TRIAL_KEYS for trial in seen)
    assert [trial["number"] for trial in seen] == [0, 1, 2, 3]
    assert {trial["state"] for trial in seen} == {"complete"}
    assert all(
        set(trial["params"])
        == {"max_depth", "learning_rate", "subsample", "colsample_bytree", "min_child_weight", "reg_lambda"}
        for trial in seen
    )
    assert first.trials == seen
    assert first.search_metric == "auc"
    best = max(seen, key=lambda trial: trial["score"])
    assert {name: first.params[name] for name in best["params"]} == best["params"]
    assert first.best_iteration == best["best_iteration"]
    assert len(booster_of(first).get_dump()) == best["best_iteration"] + 1
    # Progress runs through the trials: (finished trials + round / rounds) / trials.
    assert progress[0] == pytest.approx((0 + 1 / 20) / 4)
    assert progress == sorted(progress)
    assert progress[-1] <= 1.0

    second = train(loans(), target="repaid", params=params)
    assert second.model_ubj == first.model_ubj
    assert second.trials == first.trials


def test_a_search_metric_can_be_chosen():
    result = train(loans(), target="repaid", params={**SMALL, "search_trials": 2, "search_metric": "log_loss"})
    assert result.search_metric == "log_loss"
    best = min(result.trials, key=lambda trial: trial["score"])
    assert result.best_iteration == best["best_iteration"]


# -- inputs and determinism ------------------------------------------------------------------------


def test_a_pyarrow_table_trains_the_same_model_as_lists():
    columns = loans()
    from_lists = train(columns, target="repaid", subject_key="customer_id", params=SMALL)
    from_table = train(pa.table(columns), target="repaid", subject_key="customer_id", params=SMALL)
    assert from_table.model_ubj == from_lists.model_ubj
    assert from_table.pipeline.to_state() == from_lists.pipeline.to_state()
    assert np.array_equal(from_table.holdout_matrix, from_lists.holdout_matrix, equal_nan=True)


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({}, id="plain"),
        pytest.param({"class_weight": "balanced"}, id="class-weights"),
        pytest.param({"holdout": "time", "time_column": "day"}, id="time-holdout"),
        pytest.param({"search_trials": 2}, id="search"),
    ],
)
def test_same_inputs_and_seed_give_the_same_bytes(params):
    params = {**SMALL, "subsample": 0.8, **params}  # row sampling makes the seed matter even to the time holdout
    first = train(loans(), target="repaid", params=params)
    second = train(loans(), target="repaid", params=params)
    assert first.model_ubj == second.model_ubj
    assert first.evaluation == second.evaluation
    other_seed = train(loans(), target="repaid", params={**params, "seed": 1})
    assert other_seed.model_ubj != first.model_ubj


def test_the_vectorised_pipeline_matches_the_list_pipeline():
    """Fitted state and matrix equal FeaturePipeline.fit + transform_columns on the same rows as lists."""
    rows = 60
    rng = np.random.default_rng(3)
    floats = rng.normal(size=rows).tolist()
    floats[4] = float("nan")
    floats[9] = None
    ints = rng.integers(-5, 5, rows).tolist()
    ints[2] = None
    columns = {
        "floats": floats,
        "ints": ints,
        "whole": rng.integers(0, 2**40, rows).tolist(),
        "flags": [bool(value) if index % 7 else None for index, value in enumerate(rng.random(rows) < 0.5)],
        "text": [None if index % 5 == 0 else f"v{index % 4}" for index in range(rows)],
        "empty": [None] * rows,
        "nan_only": [float("nan")] * rows,
        "mixed": [index if index % 2 else f"t{index % 3}" for index in range(rows)],
        "when": [dt.datetime(2024, 1, 1 + index % 28) for index in range(rows)],
        "y": ["a", "b"] * (rows // 2),
    }
    fit = np.sort(rng.permutation(rows)[:40])
    fit[0] = 1  # row 0's text is missing and row 1's present, so fit rows see both
    fit = np.unique(fit)
    expected = FeaturePipeline.fit({name: [values[i] for i in fit] for name, values in columns.items()}, exclude=["y"])
    expected_matrix = expected.transform_columns(columns)
    for source in (columns, pa.table({name: values for name, values in columns.items() if name != "mixed"})):
        prepared = _as_columns(source)
        pipeline, (fit_matrix, matrix) = _auto_features(prepared, (fit, np.arange(rows)), {"y"}, "")
        keep = [position for position, name in enumerate(expected.names) if name in prepared]
        assert pipeline.to_state()["features"] == [expected.to_state()["features"][i] for i in keep]
        assert np.array_equal(matrix, expected_matrix[:, keep], equal_nan=True)
        assert np.array_equal(fit_matrix, expected_matrix[fit][:, keep], equal_nan=True)


def test_protected_values_must_cover_every_row():
    with pytest.raises(TrainingDataError, match=r"^The protected attribute 'city' has 3 values for 300 rows\.$"):
        train(loans(), target="repaid", params=SMALL, protected={"city": ["a", "b", "c"]})


def test_fairness_is_measured_on_the_test_rows_with_the_limits_given():
    columns = loans()
    result = train(
        columns,
        target="repaid",
        params=SMALL,
        protected={"city": columns["city"]},
        fairness_limits={"disparate_impact_min": 0.0, "statistical_parity_max": 1.0, "equal_opportunity_max": 1.0},
    )
    report = result.evaluation["fairness"]["city"]
    assert report["passed"] is True
    assert report["limits"] == {
        "disparate_impact_min": 0.0,
        "statistical_parity_max": 1.0,
        "equal_opportunity_max": 1.0,
    }
    assert sum(group["count"] for group in report["groups"]) == sum(
        columns["city"][row] is not None for row in result.test_rows
    )
    with pytest.raises(TrainingDataError, match=r"^Unknown fairness limits: loose;"):
        train(columns, target="repaid", params=SMALL, fairness_limits={"loose": 1.0})


def test_a_feature_set_trains_from_lists_and_tables_alike_and_reports_rows_it_cannot_use():
    columns = loans()
    columns["age"][3] = 0  # a zero denominator: the ratio is missing on that row
    definition = [
        {"name": "income_log", "transform": "log1p", "source": "income"},
        {"name": "income_per_year", "transform": "ratio", "sources": ["income", "age"]},
        {"name": "city", "transform": "one_hot", "source": "city", "params": {"top_k": 2}},
    ]
    schema = {"income": "float", "age": "integer", "city": "string", "repaid": "string"}
    options = {"target": "repaid", "params": SMALL, "feature_definition": definition, "schema": schema}
    from_lists = train(columns, **options)
    from_table = train(pa.table(columns), **options)
    assert from_lists.pipeline.names == ["income_log", "income_per_year", "city=north", "city=south", "city=other"]
    assert from_table.model_ubj == from_lists.model_ubj
    assert from_lists.warning_count == 1
    assert from_lists.warnings == [
        {
            "row": 4,
            "feature": "income_per_year",
            "field": "age",
            "message": "'age' is 0, so 'income_per_year' is missing",
        }
    ]
    with pytest.raises(TrainingDataError, match=r"^The feature set does not fit the data: bad: source column"):
        train(columns, **{**options, "feature_definition": [{"name": "bad", "transform": "log1p", "source": "x"}]})
