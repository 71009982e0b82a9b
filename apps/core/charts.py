"""Geometry for small server-drawn SVG charts (histograms, bar charts) and number formatting for pages."""

import math
from typing import Any

HISTOGRAM_SIZE = (360, 120)  # width, height of the plot area, in SVG user units
TOP_BAR_HEIGHT = 18
TOP_LABEL_WIDTH = 130
TOP_BAR_WIDTH = 180


def fmt_number(value: Any) -> str:
    """A statistic for people: integers whole, other numbers to four decimals or four significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1e6 or abs(value) < 1e-3:
        return f"{value:.4g}"
    return f"{value:.4f}".rstrip("0").rstrip(".")


def _percent(part: int | None, whole: int | None) -> str:
    if not whole or part is None:
        return "0%"
    share = 100 * part / whole
    return f"{share:.1f}%" if share else "0%"


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def histogram_chart(histogram: dict[str, list] | None, column: str) -> dict[str, Any] | None:
    """Geometry of an SVG histogram: one bar per bin, its height scaled to the largest count."""
    if not histogram or not histogram.get("counts"):
        return None
    counts, edges = histogram["counts"], histogram["edges"]
    width, height = HISTOGRAM_SIZE
    top, bottom = 6, 20  # room above the tallest bar, and below the axis for the edge labels
    plot = height - top - bottom
    peak = max(counts) or 1
    step = width / len(counts)
    gap = 1 if step > 4 else 0
    bars = []
    for index, count in enumerate(counts):
        bar_height = round(plot * count / peak, 2)
        low, high = edges[index], edges[index + 1]
        closing = "]" if index == len(counts) - 1 else ")"
        bars.append(
            {
                "x": round(index * step, 2),
                "y": round(top + plot - bar_height, 2),
                "width": round(step - gap, 2),
                "height": bar_height,
                "count": count,
                "low": fmt_number(low),
                "high": fmt_number(high),
                "label": f"[{fmt_number(low)}, {fmt_number(high)}{closing}: {_rows(count)}",
            }
        )
    return {
        "kind": "histogram",
        "caption": f"Histogram: {len(counts)} bin{'s' if len(counts) != 1 else ''}, the tallest {_rows(peak)}",
        "width": width,
        "height": height,
        "axis_y": top + plot,
        "label_y": height - 5,
        "bars": bars,
        "first": fmt_number(edges[0]),
        "last": fmt_number(edges[-1]),
        "peak": peak,
        "summary": (
            f"Histogram of {column}: {len(counts)} bins from {fmt_number(edges[0])} to {fmt_number(edges[-1])}, "
            f"the fullest holding {_rows(peak)}."
        ),
    }


def bar_chart(
    items: list[dict[str, Any]], column: str, total: int, caption: str = "Most frequent values"
) -> dict[str, Any] | None:
    """Geometry of a horizontal SVG bar chart of value counts, bars scaled to the largest count."""
    if not items:
        return None
    peak = max(item["count"] for item in items) or 1
    bars = []
    for index, item in enumerate(items):
        value = "(empty)" if item["value"] == "" else str(item["value"])
        length = round(TOP_BAR_WIDTH * item["count"] / peak, 2)
        y = index * (TOP_BAR_HEIGHT + 4)
        bars.append(
            {
                "x": TOP_LABEL_WIDTH,
                "y": y,
                "width": length,
                "height": TOP_BAR_HEIGHT,
                "text_y": y + TOP_BAR_HEIGHT / 2 + 4,
                "count_x": TOP_LABEL_WIDTH + length + 4,
                "value": value,
                "short": value if len(value) <= 18 else value[:17] + "…",
                "count": item["count"],
                "label": f"{value}: {_rows(item['count'])} ({_percent(item['count'], total)})",
            }
        )
    height = len(items) * (TOP_BAR_HEIGHT + 4)
    return {
        "kind": "bars",
        "caption": caption,
        "width": TOP_LABEL_WIDTH + TOP_BAR_WIDTH + 60,
        "height": height,
        "label_x": TOP_LABEL_WIDTH - 6,
        "bars": bars,
        "summary": f"Most frequent values of {column}: "
        + ", ".join(f"{bar['value']} ({bar['count']})" for bar in bars),
    }
