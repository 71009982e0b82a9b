"""The model card: what a version decides, from what data, how well, looking at what, how fairly, and its
limits — in sentences a non-specialist can read. The page only lays these out."""

from typing import Any

from apps.core.charts import fmt_number
from apps.data.models import ColumnTag
from apps.registry.models import ErasurePolicy, ModelVersion
from apps.registry.training import CLASSIFICATION, REGRESSION

CARD_TOP_FEATURES = 5


def _percent(value: float) -> str:
    return f"{round(value * 100)} %"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _held_out_rows(version: ModelVersion) -> int | None:
    rows = (version.evaluation or {}).get("rows")
    if rows is None:
        rows = (version.gate_report or {}).get("holdout_rows")
    if rows is None:
        split = version.metrics.get("rows")
        rows = split.get("test") if isinstance(split, dict) else None
    return rows


def _outcomes(version: ModelVersion) -> tuple[str, str] | None:
    """The favourable outcome and the other one, for a model deciding between two."""
    labels = [str(label) for label in version.labels or []]
    if version.task_type != CLASSIFICATION or len(labels) != 2:
        return None
    favourable = version.registered_model.favourable_label
    favourable = favourable if favourable in labels else labels[1]
    return favourable, next(label for label in labels if label != favourable)


def _quality_sentences(version: ModelVersion) -> list[str]:
    """How good the version is, in words a non-specialist can check against the numbers."""
    metrics = {key: value for key, value in version.metrics.items() if isinstance(value, (int, float))}
    metrics.update(
        {
            key: value
            for key, value in ((version.evaluation or {}).get("metrics") or {}).items()
            if isinstance(value, (int, float))
        }
    )
    rows = _held_out_rows(version)
    seen = f"On {_plural(rows, 'case')} it had not seen" if rows else "On cases it had not seen"
    target = version.target_column
    sentences = []
    outcomes = _outcomes(version)
    if "auc" in metrics:
        auc = metrics["auc"]
        if outcomes:
            good, bad = outcomes
            sentences.append(
                f"{seen}, it ranked a random case whose outcome was “{good}” above a random case whose outcome was "
                f"“{bad}” {_percent(auc)} of the time (AUC {auc:.2f}). 50 % would be guessing; 100 % would be perfect."
            )
        else:
            sentences.append(
                f"{seen}, it ranked a random case of one class above a random case of the other classes "
                f"{_percent(auc)} of the time, averaged over the classes (AUC {auc:.2f}). 50 % would be guessing."
            )
        seen = "On the same cases"
    if "accuracy" in metrics:
        accuracy = metrics["accuracy"]
        right = f" ({round(accuracy * rows)} of {rows})" if rows else ""
        sentences.append(
            f"{seen}, it predicted the actual {target} correctly {_percent(accuracy)} of the time{right} "
            f"(accuracy {accuracy:.2f})."
        )
        seen = "On the same cases"
    if "mae" in metrics:
        sentences.append(
            f"{seen}, its estimates of {target} were off by {fmt_number(metrics['mae'])} on average "
            f"(mean absolute error)."
        )
        seen = "On the same cases"
    if "rmse" in metrics:
        sentences.append(
            f"Weighing large misses more, its typical error was {fmt_number(metrics['rmse'])} "
            f"(root mean squared error, RMSE {fmt_number(metrics['rmse'])})."
        )
    if "r2" in metrics:
        r2 = metrics["r2"]
        if r2 >= 0:
            sentences.append(
                f"It explains {_percent(r2)} of the differences in {target} between cases (R² {r2:.2f}); "
                f"0 % would be no better than always guessing the average."
            )
        else:
            sentences.append(f"It predicts {target} worse than always guessing the average would (R² {r2:.2f}).")
    return sentences


def _feature_sentences(version: ModelVersion) -> dict[str, Any]:
    importance = (version.evaluation or {}).get("importance") or []
    by_shap = bool(importance) and importance[0].get("mean_abs_shap") is not None
    measure = "mean_abs_shap" if by_shap else "gain"
    total = sum(row.get(measure) or 0.0 for row in importance)
    top = [
        {
            "feature": row["feature"],
            "share": _percent((row.get(measure) or 0.0) / total) if total else "—",
            "value": fmt_number(row.get(measure)),
        }
        for row in importance
        if row.get(measure)
    ][:CARD_TOP_FEATURES]
    return {"top": top, "by_shap": by_shap, "count": len(importance)}


def _fairness_sentences(version: ModelVersion) -> list[dict[str, Any]]:
    fairness = (version.evaluation or {}).get("fairness") or {}
    inputs = {item.get("name") for item in (version.signature or {}).get("inputs") or []}
    outcomes = _outcomes(version)
    good = outcomes[0] if outcomes else "the favourable outcome"
    results = []
    for attribute, report in fairness.items():
        groups = [group for group in report.get("groups") or [] if group.get("included", True)]
        reference = next((group for group in groups if group["group"] == report.get("reference_group")), None)
        if reference is None or len(groups) < 2:
            text = report.get("note") or f"Too few cases per group of {attribute} to compare the groups."
            results.append({"attribute": attribute, "passed": report.get("passed", True), "text": text, "problems": []})
            continue
        worst = min((group for group in groups if group is not reference), key=lambda group: group["selection_rate"])
        text = (
            f"The model gave “{good}” to {_percent(reference['selection_rate'])} of the group {reference['group']} "
            f"and to {_percent(worst['selection_rate'])} of the group {worst['group']}, the least often chosen group"
        )
        ratio = report.get("disparate_impact_ratio")
        limit = (report.get("limits") or {}).get("disparate_impact_min")
        if ratio is not None:
            text += f": a ratio of {fmt_number(ratio)}"
            if limit is not None:
                text += f" (the limit is at least {fmt_number(limit)})"
        text += "."
        if attribute not in inputs:
            text += (
                f" The model does not take {attribute} as an input; the difference comes through the inputs it"
                f" does take."
            )
        results.append(
            {
                "attribute": attribute,
                "passed": report.get("passed", True),
                "text": text,
                "problems": report.get("problems") or [],
            }
        )
    return results


def _training_data(version: ModelVersion) -> dict[str, Any]:
    dataset_version = version.dataset_version
    dataset = dataset_version.dataset
    statistics = dataset_version.statistics or {}
    time_column = (version.params or {}).get("time_column")
    dated = [time_column] if time_column in statistics else []
    dated += [name for name, stats in statistics.items() if stats.get("type") == "datetime" and name not in dated]
    span = None
    for name in dated:
        stats = statistics[name]
        if stats.get("min") and stats.get("max"):
            span = {"column": name, "first": str(stats["min"])[:10], "last": str(stats["max"])[:10]}
            break
    split = version.metrics.get("rows") if isinstance(version.metrics.get("rows"), dict) else {}
    return {
        "dataset": dataset,
        "dataset_version": dataset_version,
        "legal_basis": dataset.get_legal_basis_display() if dataset.legal_basis else "",
        "span": span,
        "split": split,
    }


def _limitations(version: ModelVersion, fairness: list[dict[str, Any]]) -> dict[str, Any]:
    dataset = version.dataset_version.dataset
    inputs = [item for item in (version.signature or {}).get("inputs") or []]
    used = {item.get("name") for item in inputs}
    tags = dataset.column_tags or {}
    sensitive = sorted(
        column
        for column, column_tags in tags.items()
        if {ColumnTag.PERSONAL, ColumnTag.SPECIAL_CATEGORY, ColumnTag.PROTECTED} & set(column_tags)
        and column != dataset.subject_key_column
        and column != version.target_column
    )
    ranges = []
    for item in inputs:
        if item.get("categories") is not None:
            values = ", ".join(map(str, item["categories"]))
            ranges.append(
                {
                    "name": item["name"],
                    "text": f"trained only on the values {values}; any other value counts as unknown.",
                }
            )
        elif item.get("minimum") is not None and item.get("maximum") is not None:
            ranges.append(
                {
                    "name": item["name"],
                    "text": f"trained on values from {fmt_number(item['minimum'])} to {fmt_number(item['maximum'])}; "
                    f"its answers outside this range are less certain.",
                }
            )
    erased = None
    if version.erased_data_at is not None:
        policy = version.registered_model.erasure_policy
        erased = {
            "since": version.erased_data_at,
            "policy": version.registered_model.get_erasure_policy_display(),
            "blocked": policy == ErasurePolicy.BLOCK,
        }
    return {
        "erased": erased,
        "not_used": [column for column in sensitive if column not in used],
        "used": [column for column in sensitive if column in used],
        "fairness_failures": [item for item in fairness if not item["passed"]],
        "ranges": ranges,
    }


def model_card(version: ModelVersion) -> dict[str, Any]:
    fairness = _fairness_sentences(version)
    return {
        "model": version.registered_model,
        "version": version,
        "aliases": sorted(alias.name for alias in version.aliases.all()),
        "regression": version.task_type == REGRESSION,
        "outcomes": _outcomes(version),
        "labels": [str(label) for label in version.labels or []],
        "data": _training_data(version),
        "quality": _quality_sentences(version),
        "features": _feature_sentences(version),
        "fairness": fairness,
        "limitations": _limitations(version, fairness),
    }
