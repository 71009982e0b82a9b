"""Training an XGBoost model from columns: split, fit features, boost with early stopping, evaluate.

No Django here: the worker's service feeds it columns and stores what it returns. The booster comes
back as UBJ bytes (never pickle). Same inputs and seed give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.features.pipeline import DefinitionError, FittedPipeline, rows_that_cannot_be_transformed
from apps.features.transforms import FeaturePipeline

CLASSIFICATION = "classification"
REGRESSION = "regression"

# name: (type, minimum, maximum, default, minimum is exclusive)
PARAMS: dict[str, tuple[type, float, float, Any, bool]] = {
    "n_estimators": (int, 1, 5000, 200, False),
    "max_depth": (int, 1, 16, 6, False),
    "learning_rate": (float, 0.0, 1.0, 0.1, True),
    "subsample": (float, 0.0, 1.0, 1.0, True),
    "colsample_bytree": (float, 0.0, 1.0, 1.0, True),
    "min_child_weight": (float, 0.0, 1e6, 1.0, False),
    "reg_lambda": (float, 0.0, 1e6, 1.0, False),
    "early_stopping_rounds": (int, 1, 1000, 20, False),
    "test_size": (float, 0.05, 0.5, 0.2, False),
    "validation_size": (float, 0.05, 0.5, 0.2, False),
    "seed": (int, 0, 2**31 - 1, 42, False),
}


class TrainingDataError(Exception):
    """The data cannot train a model; the message says what to fix."""


def validate_params(params: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """Resolved parameters (defaults filled in) and a field -> problem map."""
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return {}, {"params": "must be an object"}
    problems: dict[str, str] = {}
    resolved: dict[str, Any] = {}
    for name in params.keys() - PARAMS.keys():
        problems[name] = f"unknown parameter; known: {', '.join(sorted(PARAMS))}"
    for name, (kind, low, high, default, exclusive) in PARAMS.items():
        value = params.get(name, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems[name] = f"must be a{'n integer' if kind is int else ' number'}"
            continue
        if kind is int and value != int(value):
            problems[name] = "must be an integer"
            continue
        value = kind(value)
        if value < low or value > high or (exclusive and value == low):
            problems[name] = f"must be {'greater than' if exclusive else 'at least'} {low} and at most {high}"
            continue
        resolved[name] = value
    return resolved, problems


@dataclass
class TrainingResult:
    model_ubj: bytes
    pipeline: FeaturePipeline
    task_type: str
    labels: list[Any]
    metrics: dict[str, float]
    params: dict[str, Any]
    best_iteration: int
    rows: dict[str, int]
    warnings: list[dict[str, Any]] = field(default_factory=list)
    warning_count: int = 0


def xgb_feature_names(names: Sequence[str]) -> list[str]:
    """Feature names XGBoost accepts (no '[', ']' or '<'), unique by position."""
    return [f"f{index}_" + "".join("_" if char in "[]<" else char for char in name) for index, name in enumerate(names)]


def infer_task_type(values: Sequence[Any]) -> str:
    present = [value for value in values if value is not None]
    if present and all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in present):
        return REGRESSION
    return CLASSIFICATION


def _subset(columns: Mapping[str, Sequence[Any]], indices: np.ndarray) -> dict[str, list[Any]]:
    return {name: [values[i] for i in indices] for name, values in columns.items()}


def _metrics(task_type: str, labels: list[Any], y_true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    from sklearn import metrics

    if task_type == REGRESSION:
        return {
            "rmse": float(math.sqrt(metrics.mean_squared_error(y_true, predicted))),
            "mae": float(metrics.mean_absolute_error(y_true, predicted)),
            "r2": float(metrics.r2_score(y_true, predicted)),
        }
    if len(labels) == 2:
        probabilities = np.column_stack([1.0 - predicted, predicted])
        auc = metrics.roc_auc_score(y_true, predicted)
    else:
        probabilities = predicted
        auc = metrics.roc_auc_score(y_true, probabilities, multi_class="ovr", labels=list(range(len(labels))))
    return {
        "auc": float(auc),
        "accuracy": float(metrics.accuracy_score(y_true, probabilities.argmax(axis=1))),
        "log_loss": float(metrics.log_loss(y_true, probabilities, labels=list(range(len(labels))))),
    }


def train(
    columns: Mapping[str, Sequence[Any]],
    *,
    target: str,
    subject_key: str = "",
    task_type: str = "auto",
    params: Mapping[str, Any] | None = None,
    on_progress: Callable[[float], None] | None = None,
    feature_definition: list[dict[str, Any]] | None = None,
    schema: Mapping[str, str] | None = None,
) -> TrainingResult:
    """Train and evaluate on a held-out split. Raises TrainingDataError for data that cannot train.

    With `feature_definition` (a feature set, checked against `schema`), the model's inputs are that
    set's fitted features; without, every column but the target and the subject key.
    """
    import xgboost as xgb
    from sklearn.model_selection import train_test_split

    resolved, problems = validate_params(dict(params or {}))
    if problems:
        raise TrainingDataError("Invalid parameters: " + "; ".join(f"{k} {v}" for k, v in sorted(problems.items())))
    if target not in columns:
        raise TrainingDataError(f"The target column {target!r} is not in the dataset.")
    keep = np.array([value is not None for value in columns[target]])
    dropped = int((~keep).sum())
    columns = _subset(columns, np.flatnonzero(keep)) if dropped else dict(columns)
    y_raw = columns[target]
    if task_type == "auto":
        task_type = infer_task_type(y_raw)
    if task_type == CLASSIFICATION:
        labels = sorted({value for value in y_raw}, key=str)
        if len(labels) < 2:
            raise TrainingDataError(f"The target column {target!r} has a single class; classification needs two.")
        index = {label: i for i, label in enumerate(labels)}
        y = np.array([index[value] for value in y_raw], dtype=np.float32)
    else:
        labels = []
        try:
            y = np.array(y_raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise TrainingDataError(f"The target column {target!r} is not numeric; regression needs numbers.") from None
    n_rows = len(y)
    if n_rows < 20:
        raise TrainingDataError(f"Only {n_rows} rows have a target value; at least 20 are needed.")
    seed = resolved["seed"]
    stratify = y if task_type == CLASSIFICATION and np.bincount(y.astype(int)).min() >= 3 else None
    rest, test = train_test_split(
        np.arange(n_rows), test_size=resolved["test_size"], random_state=seed, stratify=stratify
    )
    stratify_rest = y[rest] if stratify is not None else None
    fit, valid = train_test_split(
        rest, test_size=resolved["validation_size"], random_state=seed, stratify=stratify_rest
    )
    pipeline: FeaturePipeline | FittedPipeline
    if feature_definition is not None:
        try:
            pipeline = FittedPipeline.fit(
                feature_definition, _subset(columns, fit), schema or {}, subject_key=subject_key
            )
        except DefinitionError as exc:
            details = "; ".join(f"{p['feature']}: {p['field']} {p['message']}" for p in exc.problems[:10])
            raise TrainingDataError(f"The feature set does not fit the data: {details}") from None
    else:
        pipeline = FeaturePipeline.fit(_subset(columns, fit), exclude=[target], subject_key=subject_key)
    if not pipeline.features:
        raise TrainingDataError("The dataset has no feature columns besides the target and the subject key.")
    matrices = {
        name: pipeline.transform_columns(_subset(columns, rows))
        for name, rows in (("fit", fit), ("valid", valid), ("test", test))
    }
    booster_params: dict[str, Any] = {
        "max_depth": resolved["max_depth"],
        "eta": resolved["learning_rate"],
        "subsample": resolved["subsample"],
        "colsample_bytree": resolved["colsample_bytree"],
        "min_child_weight": resolved["min_child_weight"],
        "lambda": resolved["reg_lambda"],
        "seed": seed,
        "nthread": 2,
        "tree_method": "hist",
    }
    if task_type == REGRESSION:
        booster_params.update(objective="reg:squarederror", eval_metric="rmse")
    elif len(labels) == 2:
        booster_params.update(objective="binary:logistic", eval_metric="logloss")
    else:
        booster_params.update(objective="multi:softprob", eval_metric="mlogloss", num_class=len(labels))

    rounds = resolved["n_estimators"]

    class Progress(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch, evals_log):
            if on_progress is not None:
                on_progress((epoch + 1) / rounds)
            return False

    names = xgb_feature_names(pipeline.names)
    dfit = xgb.DMatrix(matrices["fit"], label=y[fit], feature_names=names)
    dvalid = xgb.DMatrix(matrices["valid"], label=y[valid], feature_names=names)
    booster = xgb.train(
        booster_params,
        dfit,
        num_boost_round=rounds,
        evals=[(dvalid, "valid")],
        early_stopping_rounds=resolved["early_stopping_rounds"],
        verbose_eval=False,
        callbacks=[Progress()],
    )
    best = int(booster.best_iteration)
    booster = booster[: best + 1]
    predicted = booster.inplace_predict(matrices["test"])
    metrics = _metrics(task_type, labels, y[test], np.asarray(predicted))
    # Row numbers count from 1 over the rows that have a target, in the dataset's order.
    warnings, warning_count = (
        rows_that_cannot_be_transformed(feature_definition, columns) if feature_definition is not None else ([], 0)
    )
    return TrainingResult(
        model_ubj=bytes(booster.save_raw("ubj")),
        pipeline=pipeline,
        task_type=task_type,
        labels=labels,
        metrics=metrics,
        params=resolved,
        best_iteration=best,
        rows={"train": len(fit), "validation": len(valid), "test": len(test), "dropped_without_target": dropped},
        warnings=warnings,
        warning_count=warning_count,
    )
