"""What the evaluation partial draws: metric rows, the confusion table, curve and bar geometry, fairness rows.

Takes the dict `apps.registry.evaluation.evaluate` returns (as stored) and does every sum and format,
so `registry/_evaluation.html` only places values.
"""

from typing import Any

from apps.core.charts import fmt_number, line_chart, measure_bar_chart

TOP_FEATURES = 15

# name: (label, which way is better)
METRICS: dict[str, tuple[str, str]] = {
    "auc": ("AUC (area under the ROC curve)", "higher"),
    "accuracy": ("Accuracy", "higher"),
    "precision": ("Precision", "higher"),
    "recall": ("Recall", "higher"),
    "f1": ("F1", "higher"),
    "f1_macro": ("F1, macro average over classes", "higher"),
    "log_loss": ("Log loss", "lower"),
    "brier": ("Brier score", "lower"),
    "rmse": ("Root mean squared error", "lower"),
    "mae": ("Mean absolute error", "lower"),
    "r2": ("R²", "higher"),
    "mape": ("Mean absolute percentage error", "lower"),
}

FAIRNESS_MEASURES = (
    ("disparate_impact_ratio", "Disparate impact ratio", "disparate_impact_min", "at least {}"),
    ("statistical_parity_difference", "Statistical parity difference", "statistical_parity_max", "within ±{}"),
    ("equal_opportunity_difference", "Equal opportunity difference", "equal_opportunity_max", "within ±{}"),
)


def evaluation_charts(evaluation: dict[str, Any]) -> dict[str, Any]:
    """Display rows and SVG geometry for every section of an evaluation; absent sections are None or empty."""
    importance = evaluation.get("importance") or []
    curves = {
        "roc": _roc(evaluation.get("roc_curve"), (evaluation.get("metrics") or {}).get("auc")),
        "pr": _pr(evaluation.get("pr_curve"), evaluation.get("confusion_matrix")),
        "calibration": _calibration(evaluation.get("calibration")),
    }
    return {
        "metrics": _metric_rows(evaluation.get("metrics") or {}),
        "confusion": _confusion(evaluation.get("confusion_matrix")),
        **curves,
        "curves": [{"id": name, "chart": chart} for name, chart in curves.items() if chart],
        "calibration_rows": _calibration_rows(evaluation.get("calibration")),
        "importance": _importance_chart(importance),
        "importance_rows": [
            {
                "feature": row["feature"],
                "gain": fmt_number(row["gain"]),
                "mean_abs_shap": fmt_number(row["mean_abs_shap"]),
            }
            for row in importance
        ],
        "fairness": [_fairness(attribute, report) for attribute, report in (evaluation.get("fairness") or {}).items()],
    }


def _metric_rows(metrics: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for name, value in metrics.items():
        label, better = METRICS.get(name, (name, ""))
        shown = f"{value * 100:.2f}%" if name == "mape" and value is not None else fmt_number(value)
        rows.append({"name": name, "label": label, "value": shown, "better": better})
    return rows


def _confusion(confusion: dict[str, Any] | None) -> dict[str, Any] | None:
    if not confusion:
        return None
    labels, matrix = confusion["labels"], confusion["matrix"]
    rows = [
        {
            "label": label,
            "cells": [{"count": count, "correct": row == column} for column, count in enumerate(matrix[row])],
            "total": sum(matrix[row]),
        }
        for row, label in enumerate(labels)
    ]
    return {
        "labels": labels,
        "rows": rows,
        "column_totals": [sum(column) for column in zip(*matrix, strict=True)],
        "total": sum(map(sum, matrix)),
    }


def _roc(curve: dict[str, list] | None, auc: float | None) -> dict[str, Any] | None:
    if not curve:
        return None
    return line_chart(
        [
            {"name": "Model", "x": curve["x"], "y": curve["y"]},
            {"name": "Chance", "x": [0, 1], "y": [0, 1], "tone": "reference"},
        ],
        caption=f"ROC curve · AUC {fmt_number(auc)}",
        summary=(
            f"ROC curve: true-positive rate against false-positive rate as the threshold falls; AUC "
            f"{fmt_number(auc)}, where 0.5 is chance (the dashed diagonal) and 1 is perfect."
        ),
        x_label="False-positive rate",
        y_label="True-positive rate",
    )


def _pr(curve: dict[str, list] | None, confusion: dict[str, Any] | None) -> dict[str, Any] | None:
    if not curve:
        return None
    series = [{"name": "Model", "x": curve["x"], "y": curve["y"]}]
    summary = "Precision-recall curve: precision against recall as the threshold falls."
    if confusion and len(confusion["matrix"]) == 2:
        positives, total = sum(confusion["matrix"][1]), sum(map(sum, confusion["matrix"]))
        share = positives / total if total else 0.0
        series.append({"name": "Share of positives", "x": [0, 1], "y": [share, share], "tone": "reference"})
        summary += f" The dashed line is the share of positive rows ({fmt_number(share)}), a model without skill."
    return line_chart(series, caption="Precision-recall curve", summary=summary, x_label="Recall", y_label="Precision")


def _calibration(calibration: dict[str, list] | None) -> dict[str, Any] | None:
    bins = (calibration or {}).get("bins") or []
    if not bins:
        return None
    return line_chart(
        [
            {
                "name": "Model",
                "x": [item["mean_predicted"] for item in bins],
                "y": [item["fraction_positive"] for item in bins],
                "labels": [_bin_label(item) for item in bins],
            },
            {"name": "Perfectly calibrated", "x": [0, 1], "y": [0, 1], "tone": "reference"},
        ],
        caption=f"Calibration · {len(bins)} bin{'s' if len(bins) != 1 else ''} of predicted probability",
        summary=(
            "Calibration: the observed share of positives against the mean predicted probability, per bin; "
            "points on the dashed diagonal are perfectly calibrated. "
            + "; ".join(_bin_label(item) for item in bins)
            + "."
        ),
        x_label="Mean predicted probability",
        y_label="Observed share positive",
    )


def _bin_range(item: dict[str, Any]) -> str:
    return f"{fmt_number(item['lower'])} to {fmt_number(item['upper'])}"


def _bin_label(item: dict[str, Any]) -> str:
    rows = f"{item['count']} row{'s' if item['count'] != 1 else ''}"
    return (
        f"{_bin_range(item)}: {rows}, predicted {fmt_number(item['mean_predicted'])}, "
        f"observed {fmt_number(item['fraction_positive'])}"
    )


def _calibration_rows(calibration: dict[str, list] | None) -> list[dict[str, Any]]:
    return [
        {
            "range": _bin_range(item),
            "count": item["count"],
            "mean_predicted": fmt_number(item["mean_predicted"]),
            "fraction_positive": fmt_number(item["fraction_positive"]),
        }
        for item in ((calibration or {}).get("bins") or [])
    ]


def _importance_chart(importance: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not importance:
        return None
    by_shap = importance[0]["mean_abs_shap"] is not None
    measure = "mean_abs_shap" if by_shap else "gain"
    name = "mean |SHAP value|" if by_shap else "total gain"
    top = importance[:TOP_FEATURES]
    shown = f"top {len(top)} of {len(importance)}" if len(top) < len(importance) else f"all {len(importance)}"
    return measure_bar_chart(
        [(row["feature"], row[measure]) for row in top],
        caption=f"Feature importance by {name} ({shown})",
        summary=f"Feature importance by {name}",
    )


def _fairness(attribute: str, report: dict[str, Any]) -> dict[str, Any]:
    limits = report.get("limits") or {}
    return {
        "attribute": attribute,
        "passed": report["passed"],
        "reference_group": report["reference_group"],
        "min_group_size": report.get("min_group_size"),
        "note": report.get("note", ""),
        "problems": report["problems"],
        "groups": [
            {
                "group": group["group"],
                "count": group["count"],
                "selection_rate": fmt_number(group["selection_rate"]),
                "true_positive_rate": fmt_number(group["true_positive_rate"]),
                "included": group.get("included", True),
                "reference": group["group"] == report["reference_group"],
            }
            for group in report["groups"]
        ],
        "measures": [
            {
                "label": label,
                "value": fmt_number(report.get(key)),
                "limit": rule.format(fmt_number(limits[limit])) if limit in limits else "—",
            }
            for key, label, limit, rule in FAIRNESS_MEASURES
        ],
    }
