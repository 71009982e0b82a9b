"""Geometry for small server-drawn SVG charts (histograms, bar and line charts) and number formatting for pages."""

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


LINE_CHART_SIZE = (360, 270)  # width, height of the whole SVG, in SVG user units
LINE_CHART_MARGINS = (48, 10, 12, 60)  # left, top, right, bottom: room for ticks, axis titles and the legend
LEGEND_CHAR_WIDTH = 6.2  # rough width of one 11px character, to lay legend entries side by side


def line_chart(
    series: list[dict[str, Any]],
    *,
    caption: str,
    summary: str,
    x_label: str,
    y_label: str,
    x_range: tuple[float, float] = (0.0, 1.0),
    y_range: tuple[float, float] = (0.0, 1.0),
    ticks: int = 5,
) -> dict[str, Any] | None:
    """Geometry of an SVG line chart: polylines in a fixed viewBox, ticks, axis titles and a legend.

    Each series is `{"name", "x", "y"}` with optional `"tone"` ("main", drawn solid, or "reference",
    drawn dashed so the two stay apart in black and white) and `"labels"`, one text per point, which
    puts a marker with that tooltip on each point. Points outside the ranges are drawn on the edge.
    """
    drawn = [line for line in series if line.get("x")]
    if not drawn:
        return None
    width, height = LINE_CHART_SIZE
    left, top, right, bottom = LINE_CHART_MARGINS
    plot_width, plot_height = width - left - right, height - top - bottom
    (x_low, x_high), (y_low, y_high) = x_range, y_range

    def place_x(value: float) -> float:
        share = min(max((value - x_low) / ((x_high - x_low) or 1), 0.0), 1.0)
        return round(left + share * plot_width, 2)

    def place_y(value: float) -> float:
        share = min(max((value - y_low) / ((y_high - y_low) or 1), 0.0), 1.0)
        return round(top + plot_height - share * plot_height, 2)

    steps = [index / (ticks - 1) for index in range(ticks)] if ticks > 1 else [0.0]
    x_values = [x_low + step * (x_high - x_low) for step in steps]
    y_values = [y_low + step * (y_high - y_low) for step in steps]
    legend_y = height - 8
    legend_x = float(left)
    lines = []
    for line in drawn:
        pairs = list(zip(line["x"], line["y"], strict=True))
        labels = line.get("labels") or []
        lines.append(
            {
                "name": line["name"],
                "tone": line.get("tone", "main"),
                "points": " ".join(f"{place_x(x)},{place_y(y)}" for x, y in pairs),
                "markers": [
                    {"cx": place_x(x), "cy": place_y(y), "label": label}
                    for (x, y), label in zip(pairs, labels, strict=False)
                ],
                "legend": {"x1": legend_x, "x2": legend_x + 18, "y": legend_y - 4, "text_x": legend_x + 22},
            }
        )
        legend_x = round(legend_x + 22 + LEGEND_CHAR_WIDTH * len(line["name"]) + 14, 2)
    return {
        "kind": "line",
        "caption": caption,
        "summary": summary,
        "width": width,
        "height": height,
        "plot": {"left": left, "top": top, "right": left + plot_width, "bottom": top + plot_height},
        "x_ticks": [{"x": place_x(value), "label": fmt_number(value)} for value in x_values],
        "y_ticks": [
            {"y": place_y(value), "text_y": place_y(value) + 4, "label": fmt_number(value)} for value in y_values
        ],
        "tick_label_x": left - 5,
        "tick_label_y": top + plot_height + 14,
        "x_title": {"text": x_label, "x": left + plot_width / 2, "y": top + plot_height + 30},
        "y_title": {"text": y_label, "x": 12, "y": top + plot_height / 2},
        "legend_y": legend_y,
        "lines": lines,
    }


def measure_bar_chart(items: list[tuple[str, float]], *, caption: str, summary: str) -> dict[str, Any] | None:
    """Geometry of a horizontal SVG bar chart of named non-negative measures, in `bar_chart`'s shape.

    The result draws with the same partial as `bar_chart`; bars are scaled to the largest measure and
    each shows its value instead of a row count.
    """
    if not items:
        return None
    peak = max(value for _, value in items) or 1
    bars = []
    for index, (name, value) in enumerate(items):
        length = round(TOP_BAR_WIDTH * max(value, 0) / peak, 2)
        y = index * (TOP_BAR_HEIGHT + 4)
        bars.append(
            {
                "x": TOP_LABEL_WIDTH,
                "y": y,
                "width": length,
                "height": TOP_BAR_HEIGHT,
                "text_y": y + TOP_BAR_HEIGHT / 2 + 4,
                "count_x": TOP_LABEL_WIDTH + length + 4,
                "value": name,
                "short": name if len(name) <= 18 else name[:17] + "…",
                "count": fmt_number(value),
                "label": f"{name}: {fmt_number(value)}",
            }
        )
    return {
        "kind": "bars",
        "caption": caption,
        "width": TOP_LABEL_WIDTH + TOP_BAR_WIDTH + 60,
        "height": len(items) * (TOP_BAR_HEIGHT + 4),
        "label_x": TOP_LABEL_WIDTH - 6,
        "bars": bars,
        "summary": f"{summary}: " + ", ".join(f"{bar['value']} ({bar['count']})" for bar in bars),
    }
