"""Loaded models, per process: a bounded LRU of boosters keyed by version and SHA-256, and a short-lived
view of aliases so that a promotion reaches every worker within FARO_ALIAS_TTL_SECONDS, without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from apps.core.errors import Unavailable
from apps.features.pipeline import FittedPipeline
from apps.features.transforms import FeaturePipeline
from apps.predictions.minimise import explanation_minimiser, minimiser
from apps.registry.erasure import blocked_message
from apps.registry.models import ErasurePolicy, ModelVersion
from apps.registry.scoring import (
    BoosterScorer,
    OnnxServingScorer,
    OnnxVersionScorer,
    version_pipeline,
    version_scorer,
)
from apps.registry.selectors import model_version_by_number, model_version_for_alias
from apps.registry.training import CLASSIFICATION, xgb_feature_names


@dataclass
class LoadedModel:
    version_id: int
    model_name: str
    version: int
    sha256: str
    task_type: str
    labels: list[Any]
    pipeline: FeaturePipeline | FittedPipeline
    scorer: BoosterScorer | OnnxVersionScorer | OnnxServingScorer
    favourable_label: str
    minimise: Callable[[dict[str, Any]], dict[str, Any]]
    minimise_explanation: Callable[[Any, dict[str, Any]], Any]

    @property
    def booster(self) -> Any:
        """The XGBoost booster; None for an imported ONNX model."""
        return self.scorer.booster

    def predict(self, matrix: np.ndarray) -> list[dict[str, Any]]:
        raw = self.scorer.predict_raw(matrix)
        if self.task_type != CLASSIFICATION:
            return [{"value": value} for value in raw.reshape(-1).astype(np.float64).tolist()]
        if len(self.labels) == 2:
            probabilities = np.column_stack([1.0 - raw, raw])
        else:
            probabilities = raw.reshape(len(matrix), len(self.labels))
        best = probabilities.argmax(axis=1).tolist()
        rounded = np.round(probabilities.astype(np.float64), 6).tolist()
        keys = [str(label) for label in self.labels]
        return [
            {"label": self.labels[index], "probabilities": dict(zip(keys, row, strict=True))}
            for index, row in zip(best, rounded, strict=True)
        ]

    def explain(
        self, matrix: np.ndarray, outputs: list[dict[str, Any]], rows: list[dict[str, Any]], top_k: int = 5
    ) -> list[dict[str, Any]]:
        """Top contributions per row (XGBoost pred_contribs), with a sentence a person can read. An imported
        ONNX model carries no per-row contributions: its explanations list no reasons."""
        import xgboost as xgb

        if self.booster is None:
            return [
                {"baseline": None, "toward": None, "reasons": [], "note": "Imported model: no per-decision reasons."}
                for _ in outputs
            ]
        contributions = np.asarray(
            self.booster.predict(
                xgb.DMatrix(matrix, feature_names=xgb_feature_names(self.pipeline.names)), pred_contribs=True
            )
        )
        explanations = []
        for index, output in enumerate(outputs):
            if contributions.ndim == 3:  # multiclass: explain the predicted class
                class_index = self.labels.index(output["label"])
                row_contrib = contributions[index, class_index]
                toward = str(output["label"])
            else:
                row_contrib = contributions[index]
                toward = str(self.labels[1]) if self.task_type == CLASSIFICATION else "a higher value"
            order = np.argsort(-np.abs(row_contrib[:-1]))[:top_k]
            reasons = []
            for position in order:
                name = self.pipeline.names[position]
                value = float(row_contrib[position])
                if value == 0.0:
                    continue
                label, shown = self.pipeline.describe(name, rows[index])
                effect = "more likely" if value > 0 else "less likely"
                sentence = (
                    f"{label} = {shown!r} made {toward!r} {effect}."
                    if self.task_type == CLASSIFICATION
                    else f"{label} = {shown!r} {'raised' if value > 0 else 'lowered'} the prediction."
                )
                reasons.append(
                    {
                        "feature": name,
                        "label": label,
                        "value": shown,
                        "contribution": round(value, 6),
                        "sentence": sentence,
                    }
                )
            explanations.append({"baseline": round(float(row_contrib[-1]), 6), "toward": toward, "reasons": reasons})
        return explanations


def pseudonym_key() -> bytes:
    """FARO_PSEUDONYM_KEY, else a key derived from SECRET_KEY for this purpose only."""
    if settings.FARO_PSEUDONYM_KEY:
        return settings.FARO_PSEUDONYM_KEY.encode()
    return hmac.new(settings.SECRET_KEY.encode(), b"faro decision-log pseudonyms", hashlib.sha256).digest()


def _feature_sources(pipeline: Any) -> dict[str, list[str]]:
    """The columns each model feature of a feature set reads (the automatic pipeline's features are named
    after their columns)."""
    sources = {}
    for feature in getattr(pipeline, "features", None) or []:
        if isinstance(feature, dict) and feature.get("name"):
            sources[feature["name"]] = list(
                feature.get("sources") or ([feature["source"]] if feature.get("source") else [])
            )
    return {name: columns for name, columns in sources.items() if columns}


def _load(version: ModelVersion) -> LoadedModel:
    pipeline = version_pipeline(version)
    column_tags = version.dataset_version.dataset.column_tags or {}
    return LoadedModel(
        version_id=version.pk,
        model_name=version.registered_model.name,
        version=version.version,
        sha256=version.artefact_sha256,
        task_type=version.task_type,
        labels=list(version.labels),
        pipeline=pipeline,
        scorer=version_scorer(version, prefer_onnx=settings.FARO_SERVE_ONNX),
        favourable_label=version.registered_model.favourable_label,
        minimise=minimiser(column_tags=column_tags, subject_key=pipeline.subject_key, key=pseudonym_key()),
        minimise_explanation=explanation_minimiser(
            column_tags=column_tags, subject_key=pipeline.subject_key, feature_sources=_feature_sources(pipeline)
        ),
    )


class ModelCache:
    """Per-process cache. Versions are immutable, so only the alias view needs a time limit."""

    def __init__(self) -> None:
        self._models: OrderedDict[tuple[int, str], LoadedModel] = OrderedDict()
        # (model, ref) -> (valid until, version pk, artefact sha256, why it may not serve or "")
        self._refs: dict[tuple[str, str], tuple[float, int, str, str]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._refs.clear()

    def load(self, version: ModelVersion) -> LoadedModel:
        key = (version.pk, version.artefact_sha256)
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                self._models.move_to_end(key)
                return loaded
        loaded = _load(version)
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > settings.FARO_MODEL_CACHE_SIZE:
                self._models.popitem(last=False)
        return loaded

    def get(self, model_name: str, *, alias: str | None = None, version: int | None = None) -> LoadedModel:
        ref = ("v", str(version)) if version is not None else ("a", alias or "champion")
        key = (model_name, f"{ref[0]}:{ref[1]}")
        now = time.monotonic()
        cached = self._refs.get(key)
        if cached is not None and cached[0] > now:
            if cached[3]:
                raise Unavailable(cached[3])
            with self._lock:
                loaded = self._models.get((cached[1], cached[2]))
            if loaded is not None:
                return loaded
        # Refreshing a reference reads two columns; the full version row (large: its fitted features) is
        # read only when that version is not loaded yet.
        current = (
            (
                ModelVersion.objects.filter(registered_model__name=model_name, version=version)
                if version is not None
                else ModelVersion.objects.filter(registered_model__name=model_name, aliases__name=ref[1])
            )
            .values_list("pk", "artefact_sha256", "version", "erased_data_at", "registered_model__erasure_policy")
            .first()
        )
        loaded = None
        if current is not None:
            pk, sha, number, erased_data_at, policy = current
            current = (pk, sha)
            if erased_data_at is not None and policy == ErasurePolicy.BLOCK:
                message = blocked_message(model_name=model_name, version=number)
                self._refs[key] = (now + settings.FARO_ALIAS_TTL_SECONDS, pk, sha, message)
                raise Unavailable(message)
            with self._lock:
                loaded = self._models.get(current)
                if loaded is not None:
                    self._models.move_to_end(current)
        if loaded is None:
            found = (
                model_version_by_number(model_name=model_name, version=version)
                if version is not None
                else model_version_for_alias(model_name=model_name, alias=ref[1])
            )
            loaded = self.load(found)
        self._refs[key] = (now + settings.FARO_ALIAS_TTL_SECONDS, loaded.version_id, loaded.sha256, "")
        return loaded


model_cache = ModelCache()
