"""The feature pipeline: one code path from rows or columns to the model's matrix. No Django here.

Numeric columns pass through as float32; string columns are encoded by their index in a vocabulary
fitted on the training split. The fitted state is a plain dict, frozen with the model version, and the
same `transform_columns` serves a one-row request, a batch and the training table.

Unknown categories: requests are refused (`validate_rows` names the field and the allowed values), since
a decision on a value the model never saw cannot be explained; in tables they become missing values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

NUMERIC = "numeric"
CATEGORICAL = "categorical"
MAX_PROBLEMS = 100


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str
    vocabulary: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    integer: bool = False
    nullable: bool = False

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"name": self.name, "kind": self.kind, "nullable": self.nullable}
        if self.kind == CATEGORICAL:
            state["vocabulary"] = list(self.vocabulary)
        else:
            state.update(minimum=self.minimum, maximum=self.maximum, integer=self.integer)
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Feature:
        return cls(
            name=state["name"],
            kind=state["kind"],
            vocabulary=tuple(state.get("vocabulary", ())),
            minimum=state.get("minimum"),
            maximum=state.get("maximum"),
            integer=state.get("integer", False),
            nullable=state.get("nullable", False),
        )


def validate_request_rows(
    rows: Any,
    *,
    allowed: set[str],
    subject_key: str,
    noun: str,
    check: Callable[[Mapping[str, Any]], list[tuple[str, str]]],
) -> list[dict[str, Any]]:
    """The request rules every pipeline shares: a non-empty list of objects, no unknown fields, a subject key
    of at most 200 characters; `check` gives (field, message) for each input's own problems."""
    if not isinstance(rows, list) or not rows:
        return [{"row": None, "field": "inputs", "message": "must be a non-empty list of objects"}]
    problems: list[dict[str, Any]] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(
                {"row": index, "field": None, "message": f"must be an object of {noun}, not {type(row).__name__}"}
            )
            continue
        for name in sorted(row.keys() - allowed):
            problems.append({"row": index, "field": name, "message": "is not an input of this model"})
        if subject_key in row:
            subject = row[subject_key]
            if isinstance(subject, bool) or not isinstance(subject, (str, int)) or len(str(subject)) > 200:
                problems.append(
                    {
                        "row": index,
                        "field": subject_key,
                        "message": "must be a string or integer of at most 200 characters",
                    }
                )
            elif "\x00" in str(subject):
                problems.append({"row": index, "field": subject_key, "message": "must not contain NUL characters"})
        problems.extend({"row": index, "field": field, "message": message} for field, message in check(row))
        if len(problems) >= MAX_PROBLEMS:
            break
    return problems


def humanise(name: str) -> str:
    """'duration_in_month' -> 'Duration in month'."""
    words = " ".join(name.replace("-", "_").split("_")).strip()
    return words[:1].upper() + words[1:]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class FeaturePipeline:
    """Fitted feature definitions in model input order."""

    def __init__(self, features: Sequence[Feature], *, subject_key: str = "") -> None:
        self.features = tuple(features)
        self.names = [feature.name for feature in self.features]
        self.subject_key = subject_key
        self._codes = {
            feature.name: {value: float(index) for index, value in enumerate(feature.vocabulary)}
            for feature in self.features
            if feature.kind == CATEGORICAL
        }
        self._allowed = set(self.names) | ({subject_key} if subject_key else set())

    # -- fitting and state -------------------------------------------------------------------------

    @classmethod
    def fit(
        cls, columns: Mapping[str, Sequence[Any]], *, exclude: Sequence[str] = (), subject_key: str = ""
    ) -> FeaturePipeline:
        """Learn vocabularies and ranges from the training split's columns."""
        features = []
        for name, values in columns.items():
            if name in exclude or name == subject_key:
                continue
            present = [
                value for value in values if value is not None and not (isinstance(value, float) and math.isnan(value))
            ]
            nullable = len(present) < len(values)
            if present and all(_is_number(value) or isinstance(value, bool) for value in present):
                numbers = [float(value) for value in present]
                features.append(
                    Feature(
                        name=name,
                        kind=NUMERIC,
                        minimum=min(numbers),
                        maximum=max(numbers),
                        integer=all(isinstance(value, (int, bool)) for value in present),
                        nullable=nullable,
                    )
                )
            else:
                vocabulary = tuple(sorted({str(value) for value in present}))
                features.append(Feature(name=name, kind=CATEGORICAL, vocabulary=vocabulary, nullable=nullable))
        return cls(features, subject_key=subject_key)

    def to_state(self) -> dict[str, Any]:
        return {"features": [feature.to_state() for feature in self.features], "subject_key": self.subject_key}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> FeaturePipeline:
        return cls([Feature.from_state(item) for item in state["features"]], subject_key=state.get("subject_key", ""))

    # -- the one transformation --------------------------------------------------------------------

    def transform_columns(self, columns: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Columns (name -> values) to a float32 matrix in feature order; missing and unknown -> NaN."""
        n_rows = len(columns[self.names[0]]) if self.names else 0
        matrix = np.empty((n_rows, len(self.features)), dtype=np.float32)
        for position, feature in enumerate(self.features):
            values = columns[feature.name]
            if feature.kind == CATEGORICAL:
                codes = self._codes[feature.name]
                matrix[:, position] = [
                    codes.get(value, math.nan) if value is not None else math.nan for value in values
                ]
            else:
                matrix[:, position] = [math.nan if value is None else value for value in values]
        return matrix

    def transform_rows(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.transform_columns({name: [row.get(name) for row in rows] for name in self.names})

    # -- request validation ------------------------------------------------------------------------

    def validate_rows(self, rows: Any) -> list[dict[str, Any]]:
        """Every problem with request rows, as {"row", "field", "message"}; empty when all are valid."""
        return validate_request_rows(
            rows,
            allowed=self._allowed,
            subject_key=self.subject_key,
            noun="feature values",
            check=lambda row: [(f.name, message) for f in self.features if (message := self._check_value(f, row))],
        )

    def _check_value(self, feature: Feature, row: Mapping[str, Any]) -> str | None:
        if feature.name not in row:
            return "is required"
        value = row[feature.name]
        if value is None:
            return None if feature.nullable else "must not be null"
        if feature.kind == NUMERIC:
            if not _is_number(value):
                return f"must be a number, not {type(value).__name__}"
            if not math.isfinite(value):
                return "must be a finite number"
            return None
        if not isinstance(value, str):
            return f"must be a string category, not {type(value).__name__}"
        if value not in self._codes[feature.name]:
            allowed = ", ".join(repr(item) for item in feature.vocabulary)
            return f"unknown category {value!r}; allowed: {allowed}"
        return None

    def describe(self, name: str, row: Mapping[str, Any]) -> tuple[str, Any]:
        """A feature's label for people and the request value behind it."""
        return humanise(name), row.get(name)

    def signature(self) -> list[dict[str, Any]]:
        """The ordered, typed inputs a client must send."""
        inputs = []
        for feature in self.features:
            item: dict[str, Any] = {"name": feature.name, "nullable": feature.nullable}
            if feature.kind == CATEGORICAL:
                item.update(type="category", categories=list(feature.vocabulary))
            else:
                item.update(
                    type="integer" if feature.integer else "number", minimum=feature.minimum, maximum=feature.maximum
                )
            inputs.append(item)
        return inputs
