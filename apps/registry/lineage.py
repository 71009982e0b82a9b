"""What a version records about where it came from, its ONNX twin, and the signature of imported models."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from apps.core.artefacts import artefact_write_bytes
from apps.core.errors import InvalidInput
from apps.features.transforms import CATEGORICAL, NUMERIC, Feature, FeaturePipeline
from apps.registry.models import ModelVersion, TrainingJob
from apps.registry.training import CLASSIFICATION, REGRESSION

ROOT = Path(__file__).resolve().parents[2]


@lru_cache(maxsize=1)
def _git_head() -> str:
    """The checkout's commit, read from .git without running git; empty outside a checkout."""
    head = ROOT / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            name = ref[5:]
            loose = ROOT / ".git" / name
            if loose.exists():
                return loose.read_text().strip()
            packed = (ROOT / ".git" / "packed-refs").read_text()
            match = re.search(rf"^([0-9a-f]{{40}}) {re.escape(name)}$", packed, re.MULTILINE)
            return match.group(1) if match else ""
        return ref
    except OSError:
        return ""


def code_version() -> str:
    return settings.FARO_CODE_VERSION or _git_head()


def lineage_for(job: TrainingJob, result: Any) -> dict[str, Any]:
    dataset_version = job.dataset_version
    return {
        "code_version": code_version(),
        "libraries": result.library_versions,
        "training_job": job.pk,
        "attempt": job.attempts,
        "dataset": {
            "name": dataset_version.dataset.name,
            "version": dataset_version.number,
            "sha256": dataset_version.sha256,
            "rows": dataset_version.row_count,
        },
        "feature_set": (
            {
                "name": job.feature_set_version.feature_set.name,
                "version": job.feature_set_version.number,
                "definition_hash": job.feature_set_version.definition_hash,
            }
            if job.feature_set_version
            else None
        ),
        "rows": result.rows,
        "search": {"trials": len(result.trials), "metric": result.search_metric} if result.trials else None,
    }


def onnx_export(result: Any) -> dict[str, Any]:
    """The ONNX twin of a trained booster, with parity verified on the holdout; a failed export is recorded
    (and fails the onnx_parity gate) rather than failing the training."""
    from apps.registry.onnx_models import OnnxError, export_xgboost

    try:
        data, parity = export_xgboost(
            result.model_ubj,
            n_features=result.holdout_matrix.shape[1],
            task_type=result.task_type,
            n_classes=max(len(result.labels), 1),
            holdout=result.holdout_matrix,
        )
    except OnnxError as exc:
        return {"parity": {"passed": False, "error": str(exc)}}
    path, digest = artefact_write_bytes("models", ".onnx", data)
    return {"path": path, "sha256": digest, "parity": parity}


def signature_from_declaration(inputs: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """An imported model's declared inputs, checked, as a signature and the feature state that turns request
    rows into its input matrix: numbers as they are, categories by their index in the declared list."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput(
            "Declare the model's inputs: a non-empty list of {name, type, ...} in the model's column order.",
            extra={"fields": {"inputs": ["A non-empty list is required."]}},
        )
    problems: dict[str, list[str]] = {}
    features: list[Feature] = []
    seen: set[str] = set()
    for position, item in enumerate(inputs):
        key = f"inputs[{position}]"
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problems[key] = ["Each input needs a name."]
            continue
        name = item["name"]
        if name in seen:
            problems[key] = [f"Input {name!r} is declared twice."]
            continue
        seen.add(name)
        kind = item.get("type")
        nullable = bool(item.get("nullable", False))
        if kind in ("number", "integer"):
            low, high = item.get("minimum"), item.get("maximum")
            if any(v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))) for v in (low, high)):
                problems[key] = ["minimum and maximum must be numbers."]
                continue
            features.append(
                Feature(
                    name=name, kind=NUMERIC, minimum=low, maximum=high, integer=kind == "integer", nullable=nullable
                )
            )
        elif kind == "category":
            categories = item.get("categories")
            if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
                problems[key] = ["A category input lists its categories (strings), in the order the model codes them."]
                continue
            features.append(Feature(name=name, kind=CATEGORICAL, vocabulary=tuple(categories), nullable=nullable))
        else:
            problems[key] = ["type must be number, integer or category."]
    if problems:
        raise InvalidInput("The declared inputs are not valid.", extra={"fields": problems})
    pipeline = FeaturePipeline(features)
    return pipeline.signature(), pipeline.to_state()


def onnx_check(data: bytes, *, n_inputs: int, task_type: str, labels: list[Any]) -> dict[str, Any]:
    from apps.registry.onnx_models import OnnxError, inspect_onnx, onnx_for_signature_check

    if task_type not in (CLASSIFICATION, REGRESSION):
        raise InvalidInput(
            "task_type must be classification or regression.", extra={"fields": {"task_type": ["Unknown task type."]}}
        )
    if task_type == CLASSIFICATION and (len(labels) < 2 or len(set(map(str, labels))) != len(labels)):
        raise InvalidInput(
            "A classifier declares its labels (two or more, distinct) in the order of its probability outputs.",
            extra={"fields": {"labels": ["Two or more distinct labels are required."]}},
        )
    try:
        info = inspect_onnx(data)
        onnx_for_signature_check(info, n_inputs)
    except OnnxError as exc:
        raise InvalidInput(str(exc), extra={"fields": {"file": [str(exc)]}}) from None
    return info


def imported_evaluate(version: ModelVersion) -> None:
    """Evaluate an imported model on every row of its dataset version (it was trained elsewhere, so no row
    is known to be unseen), and record those rows as its holdout for the release gates."""
    from apps.data.selectors import dataset_version_table
    from apps.registry.evaluation import evaluate, measure_latency
    from apps.registry.scoring import version_pipeline, version_scorer
    from apps.registry.services import _holdout_write

    table = dataset_version_table(version=version.dataset_version)
    columns = table.to_pydict()
    pipeline = version_pipeline(version)
    missing = [item["name"] for item in pipeline.signature() if item["name"] not in columns]
    if missing or version.target_column not in columns:
        raise InvalidInput(
            f"Dataset version {version.dataset_version} lacks the declared inputs or target: "
            f"{', '.join(missing or [version.target_column])}."
        )
    target = columns[version.target_column]
    if version.task_type == CLASSIFICATION:
        index = {label: i for i, label in enumerate(version.labels)}
        keep = np.array([value in index for value in target])
        y = np.array([index[value] for value in target if value in index], dtype=np.int64)
    else:
        keep = np.array([value is not None for value in target])
        y = np.array([value for value in target if value is not None], dtype=np.float64)
    rows = np.flatnonzero(keep)
    subset = {name: [values[i] for i in rows] for name, values in columns.items()}
    matrix = pipeline.transform_columns(subset)
    scorer = version_scorer(version)
    try:
        raw = scorer.predict_raw(matrix)
    except Exception as exc:  # onnxruntime's errors are not typed for callers
        raise InvalidInput(f"The ONNX model could not score the declared inputs: {exc}") from None
    if version.task_type == CLASSIFICATION and len(version.labels) > 2 and raw.shape[1:] != (len(version.labels),):
        raise InvalidInput(f"The model gives {raw.shape[1:]} outputs per row for {len(version.labels)} labels.")
    evaluation = evaluate(
        task_type=version.task_type,
        labels=list(version.labels),
        y_true=y,
        predicted=raw,
        contribs=None,
        feature_names=pipeline.names,
        gain=None,
    )
    one = matrix[:1]
    evaluation["latency"] = measure_latency(lambda: scorer.predict_raw(one))
    path, digest = _holdout_write(rows)
    ModelVersion.objects.filter(pk=version.pk).update(
        evaluation=evaluation,
        metrics={**evaluation["metrics"], "rows": {"evaluated": len(rows)}},
        holdout_path=path,
        holdout_sha256=digest,
    )
    version.refresh_from_db()
