"""Side-by-side comparison of versions: metrics, curves, importance, and where their lineage differs."""

from __future__ import annotations

from typing import Any

from apps.registry.models import ModelVersion

TOP_FEATURES = 10


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def _lineage(version: ModelVersion) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    _flat(
        "",
        {
            "source": version.source,
            "dataset": f"{version.dataset_version.dataset.name} v{version.dataset_version.number}",
            "dataset_sha256": version.dataset_version.sha256,
            "feature_set": str(version.feature_set_version) if version.feature_set_version else None,
            "feature_definition_hash": version.feature_definition_hash or None,
            "params": version.params,
            "code_version": (version.lineage or {}).get("code_version"),
            "libraries": (version.lineage or {}).get("libraries") or {},
            "artefact_sha256": version.artefact_sha256,
            "onnx_sha256": version.onnx_sha256 or None,
        },
        flat,
    )
    return flat


def versions_compare(versions: list[ModelVersion]) -> dict[str, Any]:
    """Metrics side by side (the best value per metric marked), ROC/PR curves, top importance and the lineage
    fields whose values differ between the versions."""
    from apps.registry.gates import HIGHER_IS_BETTER

    metric_names = sorted(
        {name for version in versions for name, value in version.metrics.items() if isinstance(value, (int, float))}
    )
    metrics = []
    for name in metric_names:
        values = [version.metrics.get(name) for version in versions]
        numbers = [value for value in values if isinstance(value, (int, float))]
        higher = HIGHER_IS_BETTER.get(name)
        best = (max(numbers) if higher else min(numbers)) if numbers and higher is not None else None
        metrics.append({"name": name, "values": values, "best": best})
    lineages = [_lineage(version) for version in versions]
    keys = sorted({key for lineage in lineages for key in lineage})
    differences = [
        {"field": key, "values": [lineage.get(key) for lineage in lineages]}
        for key in keys
        if len({repr(lineage.get(key)) for lineage in lineages}) > 1
    ]
    return {
        "versions": [
            {
                "version": version.version,
                "status": version.status,
                "source": version.source,
                "aliases": sorted(alias.name for alias in version.aliases.all()),
                "created_at": version.created_at.isoformat(),
                "roc_curve": (version.evaluation or {}).get("roc_curve"),
                "pr_curve": (version.evaluation or {}).get("pr_curve"),
                "importance": ((version.evaluation or {}).get("importance") or [])[:TOP_FEATURES],
                "fairness_passed": (version.evaluation or {}).get("fairness_passed"),
                "gates_passed": (version.gate_report or {}).get("passed"),
                "size_bytes": version.size_bytes,
                "latency": (version.evaluation or {}).get("latency"),
            }
            for version in versions
        ],
        "metrics": metrics,
        "lineage_differences": differences,
    }
