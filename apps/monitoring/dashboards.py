"""What the monitoring pages show: a registered model's traffic, latency and errors over the decision log,
canary against champion, drift and live quality over their reports, SLO budgets, alerts and the CPU cost
of an inference; and the fleet of models on one page, problems first.

Reads only (the ORM and this process's Prometheus counters); every figure that has nothing to stand on is
None, never a made-up zero, and the pages say why. Charts are `apps.core.charts.line_chart` geometry, split
into segments where a bucket or a report has no value, so a line never bridges a gap it knows nothing about.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.utils import timezone

from apps.core.charts import fmt_number, line_chart
from apps.monitoring.models import Alert, DriftReport, QualityReport, SloReport
from apps.predictions.models import PredictionRecord, Route, ScoringFailure, TrafficPolicy
from apps.registry.models import ModelAlias, ModelVersion, RegisteredModel

HOURS_CHOICES = (1, 6, 24, 168)
DEFAULT_HOURS = 24
# Buckets per window: 5 minutes over an hour, 15 minutes over 6 hours, an hour over a day, 6 hours over a week.
BUCKETS_FOR_HOURS = {1: 12, 6: 24, 24: 24, 168: 28}
TRAFFIC_MAX_ROWS = 200_000  # the newest decisions of a window read for a chart: a busy window cannot stall a page
REPORTS_SHOWN = 50
DRIFT_FEATURES_CHARTED = 8  # the inputs with the highest PSI; the table lists every one
ALERTS_SHOWN = 50
ERROR_METRICS = frozenset({"rmse", "mae"})  # lower is better, as apps.monitoring.services judges them
SHARE_METRICS = frozenset({"auc", "accuracy", "precision", "recall", "f1"})  # always within [0, 1]
# One colour and one dash per line, so lines stay apart when printed in grey; reference lines are grey dashes.
SERIES_STYLES = [
    ("#0b6e99", ""),
    ("#c2571a", "6 3"),
    ("#1d7a46", "2 3"),
    ("#7b3fa0", "8 3 2 3"),
    ("#a8322d", "1 2"),
    ("#8a6d0b", "10 4"),
    ("#1f4e79", "4 2 1 2"),
    ("#6b3a2a", "12 3 3 3"),
]
REFERENCE_STYLE = ("#5b6b7c", "5 4")
OBJECTIVE_LABELS = {"latency": "Latency", "availability": "Availability", "quality": "Quality"}


# -- formatting -------------------------------------------------------------------------------------------


def window_label(hours: float) -> str:
    """'the last hour', 'the last 24 hours', 'the last 7 days': how a sentence names the window."""
    if hours == 1:
        return "the last hour"
    if hours >= 48 and hours % 24 == 0:
        return f"the last {int(hours // 24)} days"
    return f"the last {fmt_number(hours)} hours"


def duration_text(seconds: float | None) -> str:
    """A delay for people: seconds, minutes, hours or days, whichever reads best."""
    if seconds is None:
        return "unknown"
    if seconds < 90:
        return f"{fmt_number(round(seconds, 1))} s"
    if seconds < 90 * 60:
        return f"{fmt_number(round(seconds / 60, 1))} min"
    if seconds < 48 * 3600:
        return f"{fmt_number(round(seconds / 3600, 1))} h"
    return f"{fmt_number(round(seconds / 86400, 1))} days"


def percent_text(share: float | None) -> str:
    """A share as a percentage to two decimals; a share too small for that is "< 0.01 %", never "0 %"."""
    if share is None:
        return "—"
    percent = round(100 * share, 2)
    if percent == 0 and share > 0:
        return "< 0.01 %"
    return f"{fmt_number(percent)} %"


def ms_text(value: float | None) -> str:
    return "—" if value is None else f"{fmt_number(value)} ms"


def money_text(value: float | None, currency: str) -> str:
    """An amount in plain decimals (never 1.2e-06): four places, or three significant digits below a cent."""
    if value is None:
        return "—"
    if value == 0 or abs(value) >= 0.01:
        return f"{value:.4f} {currency}"
    return f"{np.format_float_positional(value, precision=3, unique=False, fractional=False, trim='-')} {currency}"


def _moment_text(moment: datetime) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M")


def _bucket_text(minutes: float) -> str:
    if minutes % 60 == 0:
        return f"{int(minutes // 60)}-hour"
    return f"{fmt_number(minutes)}-minute"


# -- charts -----------------------------------------------------------------------------------------------


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 4, 6 or 8 times a power of ten at or above `value` (1 for nothing to show), so the
    five ticks of an axis from zero fall on round numbers."""
    if not value or value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 4, 6, 8, 10):
        if step * power >= value * (1 - 1e-12):
            return step * power
    return 10 * power


def _ago_unit(span_hours: float) -> tuple[str, float]:
    """The unit the x axis counts back in, and how many hours one unit is."""
    if span_hours <= 2:
        return "Minutes ago", 1 / 60
    if span_hours <= 96:
        return "Hours ago", 1.0
    return "Days ago", 24.0


def _runs(line: dict[str, Any]) -> list[dict[str, Any]]:
    """The line's points in runs without a None value: each run is drawn on its own."""
    runs: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    labels = line.get("labels") or [None] * len(line["x"])
    for x, y, label in zip(line["x"], line["y"], labels, strict=True):
        if y is None:
            current = None
            continue
        if current is None:
            current = {"name": line["name"], "tone": line.get("tone", "main"), "x": [], "y": [], "labels": []}
            runs.append(current)
        current["x"].append(x)
        current["y"].append(y)
        current["labels"].append(label or "")
    return runs


def time_chart(
    series: list[dict[str, Any]],
    *,
    caption: str,
    summary: str,
    x_label: str,
    x_range: tuple[float, float],
    y_label: str,
    y_range: tuple[float, float],
    table: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """A line chart whose lines break where a value is None; None when no main line has a single value.

    Each series is `{"name", "x", "y", "labels"}` (optional `"tone": "reference"` for a dashed guide such as
    an SLA minimum). The result is `line_chart`'s geometry with each line's `segments` (polyline points),
    its markers (one per value, with its label as the tooltip, so a lone value still shows) and its
    colour and dash; the legend is drawn by the page, beside the chart, where it can wrap.
    """
    main = [line for line in series if line.get("tone", "main") != "reference"]
    if not any(value is not None for line in main for value in line["y"]):
        return None
    runs = [(index, run) for index, line in enumerate(series) for run in _runs(line)]
    chart = line_chart(
        [run for _, run in runs],
        caption=caption,
        summary=summary,
        x_label=x_label,
        y_label=y_label,
        x_range=x_range,
        y_range=y_range,
    )
    if chart is None:
        return None
    lines: dict[int, dict[str, Any]] = {}
    main_index = 0
    for index, line in enumerate(series):
        if line.get("tone", "main") == "reference":
            colour, dash = REFERENCE_STYLE
            tone = "reference"
        else:
            colour, dash = SERIES_STYLES[main_index % len(SERIES_STYLES)]
            tone = "main"
            main_index += 1
        lines[index] = {
            "name": line["name"],
            "tone": tone,
            "colour": colour,
            "dash": dash,
            "segments": [],
            "markers": [],
        }
    for (index, _), drawn in zip(runs, chart["lines"], strict=True):
        lines[index]["segments"].append(drawn["points"])
        if lines[index]["tone"] == "main":
            lines[index]["markers"].extend(drawn["markers"])
    chart["lines"] = [line for line in lines.values() if line["segments"]]
    chart["legend"] = list(lines.values())
    chart["table"] = table
    return chart


# -- the decision log -------------------------------------------------------------------------------------


def _version_ids(model: RegisteredModel) -> list[int]:
    return list(model.versions.values_list("pk", flat=True))


def _stats(latencies: Iterable[float | None], requests: int, failures: int) -> dict[str, Any]:
    """Requests, failures, latency percentiles (numpy's, linear) and the error rate of a set of requests."""
    values = np.array([value for value in latencies if value is not None], dtype=np.float64)
    p50 = p95 = p99 = None
    if values.size:
        p50, p95, p99 = (float(value) for value in np.percentile(values, [50, 95, 99]))
    total = requests + failures
    error_rate = failures / total if total else None
    return {
        "requests": requests,
        "failures": failures,
        "p50": p50,
        "p95": p95,
        "p99": p99,
        "error_rate": error_rate,
        "p50_text": ms_text(p50),
        "p95_text": ms_text(p95),
        "p99_text": ms_text(p99),
        "error_rate_text": percent_text(error_rate),
    }


UNREAD = {"requests": None, "failures": None, "p50": None, "p95": None, "p99": None, "error_rate": None}


def traffic_series(
    model: RegisteredModel, *, hours: float = 24, buckets: int = 24, now: datetime | None = None, charts: bool = True
) -> dict[str, Any]:
    """The model's requests over the last `hours` in `buckets` equal buckets, oldest first, from the decision
    log: one request is its first row (row 0); shadow decisions answered no one and are left out.

    Each bucket has requests, failures, p50/p95/p99 latency_ms and the error rate: failures /
    (requests + failures), where failures are ScoringFailures except a canary's (the champion answered
    those) and a shadow's. Percentiles and the error rate are None in a bucket without requests. The same,
    by route, for the champion and the canary (the canary line with the canary's own failures). At most
    TRAFFIC_MAX_ROWS of the newest decisions are read; when a window holds more, the buckets older than the
    oldest one read are unknown (None throughout) and `truncated` says so. `charts` False leaves out the
    chart geometry (the fleet page needs the totals only).
    """
    end = now or timezone.now()
    start = end - timedelta(hours=hours)
    width = (end - start) / buckets
    versions = _version_ids(model)
    records = list(
        PredictionRecord.objects.filter(
            model_version_id__in=versions, row=0, created_at__gte=start, created_at__lte=end
        )
        .exclude(route=Route.SHADOW)
        .order_by("-created_at")
        .values_list("created_at", "route", "latency_ms")[:TRAFFIC_MAX_ROWS]
    )
    truncated = len(records) == TRAFFIC_MAX_ROWS
    read_from = records[-1][0] if truncated else start
    failures = list(
        ScoringFailure.objects.filter(model_version_id__in=versions, created_at__gte=read_from, created_at__lte=end)
        .exclude(route=Route.SHADOW)
        .values_list("created_at", "route")
    )

    def index(moment: datetime) -> int:
        return min(max(int((moment - start) / width), 0), buckets - 1)

    latencies: list[list[tuple[str, float | None]]] = [[] for _ in range(buckets)]
    for created_at, route, latency in records:
        latencies[index(created_at)].append((route, latency))
    failed: list[list[str]] = [[] for _ in range(buckets)]
    for created_at, route in failures:
        failed[index(created_at)].append(route)

    rows: list[dict[str, Any]] = []
    by_route: dict[str, list[dict[str, Any]]] = {Route.CHAMPION: [], Route.CANARY: []}
    for number in range(buckets):
        bucket_start, bucket_end = start + number * width, start + (number + 1) * width
        frame = {"start": bucket_start, "end": bucket_end}
        if truncated and bucket_start <= read_from:
            rows.append({**frame, **UNREAD, "read": False})
            for route in by_route:
                by_route[route].append({**frame, **UNREAD, "read": False})
            continue
        served = latencies[number]
        counted = [route for route in failed[number] if route != Route.CANARY]
        rows.append({**frame, **_stats((latency for _, latency in served), len(served), len(counted)), "read": True})
        for route in by_route:
            mine = [latency for served_by, latency in served if served_by == route]
            by_route[route].append({**frame, **_stats(mine, len(mine), failed[number].count(route)), "read": True})
    totals = _stats(
        (latency for _, _, latency in records),
        len(records),
        sum(1 for _, route in failures if route != Route.CANARY),
    )
    route_totals = {
        route: _stats(
            (latency for _, served_by, latency in records if served_by == route),
            sum(1 for _, served_by, _ in records if served_by == route),
            sum(1 for _, failed_by in failures if failed_by == route),
        )
        for route in by_route
    }
    series = {
        "model": model,
        "hours": hours,
        "window": window_label(hours),
        "start": start,
        "end": end,
        "bucket_minutes": width.total_seconds() / 60,
        "buckets": rows,
        "totals": totals,
        "empty": totals["requests"] + totals["failures"] == 0,
        "truncated": truncated,
        "read_from": read_from if truncated else None,
        "max_rows": TRAFFIC_MAX_ROWS,
        "routes": {
            "champion": {"buckets": by_route[Route.CHAMPION], "totals": route_totals[Route.CHAMPION]},
            "canary": {"buckets": by_route[Route.CANARY], "totals": route_totals[Route.CANARY]},
        },
    }
    canary = route_totals[Route.CANARY]
    series["canary_served"] = canary["requests"] + canary["failures"] > 0
    series["charts"] = _traffic_charts(series) if charts else {}
    return series


def _bucket_x(series: dict[str, Any]) -> tuple[list[float], str, tuple[float, float]]:
    """Each bucket's middle as time before the window's end, the axis title, and the axis range (oldest left)."""
    label, unit_hours = _ago_unit(series["hours"])
    end, unit = series["end"], timedelta(hours=unit_hours)
    x = [
        round((end - (bucket["start"] + (bucket["end"] - bucket["start"]) / 2)) / unit, 4)
        for bucket in series["buckets"]
    ]
    title = f"{label} (middle of each {_bucket_text(series['bucket_minutes'])} bucket)"
    return x, title, (series["hours"] / unit_hours, 0.0)


def _bucket_labels(buckets: list[dict[str, Any]], describe) -> list[str]:
    return [
        f"{_moment_text(bucket['start'])} to {_moment_text(bucket['end'])}: {describe(bucket)}" for bucket in buckets
    ]


def _bucket_table(buckets: list[dict[str, Any]], columns: list[tuple[str, Any]]) -> dict[str, Any]:
    return {
        "head": ["From", "To", *[name for name, _ in columns]],
        "rows": [
            [_moment_text(bucket["start"]), _moment_text(bucket["end"]), *[show(bucket) for _, show in columns]]
            for bucket in buckets
        ],
    }


def _requests_text(bucket: dict[str, Any]) -> str:
    return "not read" if bucket["requests"] is None else str(bucket["requests"])


def _attempts(bucket: dict[str, Any]) -> int:
    return (bucket["requests"] or 0) + (bucket["failures"] or 0)


def _in_percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def _traffic_charts(series: dict[str, Any]) -> dict[str, Any]:
    if series["empty"]:
        return {}
    x, x_label, x_range = _bucket_x(series)
    buckets, totals, window = series["buckets"], series["totals"], series["window"]
    width = _bucket_text(series["bucket_minutes"])
    blank = sum(1 for bucket in buckets if bucket["read"] and bucket["p95"] is None)
    blank_text = (
        f" {blank} bucket{'s' if blank != 1 else ''} without requests {'are' if blank != 1 else 'is'} left blank."
        if blank
        else ""
    )
    counts = [bucket["requests"] for bucket in buckets]
    busiest = max((count for count in counts if count is not None), default=0)
    requests = time_chart(
        [
            {
                "name": "Requests",
                "x": x,
                "y": counts,
                "labels": _bucket_labels(buckets, lambda b: f"{_requests_text(b)} requests"),
            }
        ],
        caption=f"Requests per {width} bucket, {window}",
        summary=(
            f"Requests per {width} bucket over {window}: {totals['requests']} in all, at most {busiest} in one bucket."
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="Requests",
        y_range=(0.0, _nice_ceiling(busiest)),
        table=_bucket_table(
            buckets,
            [
                ("Requests", _requests_text),
                ("Failures", lambda b: "not read" if b["failures"] is None else str(b["failures"])),
            ],
        ),
    )
    target = series["model"].latency_p95_ms_target
    peak = max((bucket["p99"] for bucket in buckets if bucket["p99"] is not None), default=0.0)
    latency_lines = [
        {
            "name": name,
            "x": x,
            "y": [bucket[key] for bucket in buckets],
            "labels": _bucket_labels(buckets, lambda b, key=key, name=name: f"{name} {ms_text(b[key])}"),
        }
        for key, name in (("p50", "p50"), ("p95", "p95"), ("p99", "p99"))
    ]
    if target is not None:
        latency_lines.append(
            {
                "name": f"p95 target {fmt_number(target)} ms",
                "x": list(x_range),
                "y": [target, target],
                "tone": "reference",
            }
        )
    latency = time_chart(
        latency_lines,
        caption=f"Latency percentiles per {width} bucket, {window}",
        summary=(
            f"Latency of each request per {width} bucket over {window}; over the whole window p50 "
            f"{ms_text(totals['p50'])}, p95 {ms_text(totals['p95'])}, p99 {ms_text(totals['p99'])}."
            + (f" The dashed line is the SLA's p95 target, {fmt_number(target)} ms." if target is not None else "")
            + blank_text
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="Latency (ms)",
        y_range=(0.0, _nice_ceiling(max(peak, target or 0.0))),
        table=_bucket_table(
            buckets,
            [
                ("p50", lambda b: ms_text(b["p50"])),
                ("p95", lambda b: ms_text(b["p95"])),
                ("p99", lambda b: ms_text(b["p99"])),
            ],
        ),
    )
    rates = [_in_percent(bucket["error_rate"]) for bucket in buckets]
    errors = time_chart(
        [
            {
                "name": "Error rate",
                "x": x,
                "y": rates,
                "labels": _bucket_labels(
                    buckets,
                    lambda b: f"{percent_text(b['error_rate'])} ({b['failures']} failed of {_attempts(b)})",
                ),
            }
        ],
        caption=f"Error rate per {width} bucket, {window}",
        summary=(
            f"Share of requests the model failed to score per {width} bucket over {window}: "
            f"{totals['failures']} of {totals['requests'] + totals['failures']} in all "
            f"({percent_text(totals['error_rate'])})." + blank_text
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="Error rate (%)",
        y_range=(0.0, _nice_ceiling(max((rate for rate in rates if rate is not None), default=0.0))),
        table=_bucket_table(buckets, [("Error rate", lambda b: percent_text(b["error_rate"]))]),
    )
    charts = {"requests": requests, "latency": latency, "errors": errors}
    if series["canary_served"]:
        charts.update(_canary_charts(series, x, x_label, x_range))
    return charts


def _canary_charts(series: dict[str, Any], x, x_label, x_range) -> dict[str, Any]:
    routes, window = series["routes"], series["window"]
    width = _bucket_text(series["bucket_minutes"])
    champion, canary = routes["champion"], routes["canary"]

    def lines(key: str, transform=lambda value: value, show=str) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "x": x,
                "y": [None if bucket[key] is None else transform(bucket[key]) for bucket in route["buckets"]],
                "labels": _bucket_labels(route["buckets"], lambda b, name=name: f"{name} {show(b[key])}"),
            }
            for name, route in (("Champion", champion), ("Canary", canary))
        ]

    both = champion["buckets"] + canary["buckets"]
    totals = f"champion {champion['totals']['requests']}, canary {canary['totals']['requests']} requests"
    requests = time_chart(
        lines("requests"),
        caption=f"Requests per {width} bucket by route, {window}",
        summary=f"Requests answered by the champion and by the canary per {width} bucket over {window}: {totals}.",
        x_label=x_label,
        x_range=x_range,
        y_label="Requests",
        y_range=(0.0, _nice_ceiling(max((b["requests"] or 0 for b in both), default=0))),
    )
    latency = time_chart(
        lines("p95", show=ms_text),
        caption=f"p95 latency per {width} bucket, champion and canary, {window}",
        summary=(
            f"p95 latency per {width} bucket over {window}: champion {ms_text(champion['totals']['p95'])}, "
            f"canary {ms_text(canary['totals']['p95'])} over the window."
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="p95 latency (ms)",
        y_range=(0.0, _nice_ceiling(max((b["p95"] for b in both if b["p95"] is not None), default=0.0))),
    )
    errors = time_chart(
        lines("error_rate", transform=lambda share: 100 * share, show=percent_text),
        caption=f"Error rate per {width} bucket, champion and canary, {window}",
        summary=(
            f"Error rate per {width} bucket over {window}: champion {percent_text(champion['totals']['error_rate'])}, "
            f"canary {percent_text(canary['totals']['error_rate'])} over the window (the canary's own failures; "
            "the champion answered those requests)."
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="Error rate (%)",
        y_range=(
            0.0,
            _nice_ceiling(max((100 * b["error_rate"] for b in both if b["error_rate"] is not None), default=0.0)),
        ),
    )
    return {"canary_requests": requests, "canary_latency": latency, "canary_errors": errors}


def canary_policy(model: RegisteredModel) -> dict[str, Any] | None:
    """The model's canary as its traffic policy sets it now, or None without one."""
    policy = TrafficPolicy.objects.filter(registered_model=model).select_related("canary_version").first()
    if policy is None or policy.canary_version_id is None:
        return None
    return {"version": policy.canary_version.version, "percent": policy.canary_percent}


# -- reports over time -------------------------------------------------------------------------------------


def _champion(model: RegisteredModel) -> ModelVersion | None:
    alias = (
        ModelAlias.objects.filter(registered_model=model, name=ModelAlias.Name.CHAMPION)
        .select_related("version")
        .first()
    )
    return alias.version if alias is not None else None


def _reports(report_model, model: RegisteredModel) -> list:
    """The REPORTS_SHOWN reports with the newest windows of the champion and the versions before it, oldest
    window first (a report run later about an earlier window takes its place in time): a newer
    challenger's or canary's reports are about another model and would mix into the champion's line."""
    reports = report_model.objects.filter(model_version__registered_model=model)
    champion = _champion(model)
    if champion is not None:
        reports = reports.filter(model_version__version__lte=champion.version)
    return list(reports.select_related("model_version").order_by("-window_end", "-pk")[:REPORTS_SHOWN])[::-1]


def _report_axis(moments: list[datetime], now: datetime) -> tuple[list[float], str, tuple[float, float]]:
    ago_hours = [max((now - moment).total_seconds(), 0.0) / 3600 for moment in moments]
    label, unit_hours = _ago_unit(max(ago_hours, default=0.0))
    x = [round(hours / unit_hours, 4) for hours in ago_hours]
    return x, f"{label} (end of each report's window)", (_nice_ceiling(max(x, default=0.0)), 0.0)


def drift_over_time(model: RegisteredModel, *, now: datetime | None = None) -> dict[str, Any]:
    """The PSI of each monitored input over the model's drift reports (the newest REPORTS_SHOWN of the
    champion and earlier versions), against the end of each report's window, with each report's status.
    The chart draws the DRIFT_FEATURES_CHARTED inputs with the highest PSI and the PSI threshold; a report
    with too few decisions for an input leaves a gap in its line."""
    from apps.monitoring.drift import DriftThresholds  # here, not at the top: drift.py loads scipy for its tests

    now = now or timezone.now()
    reports = _reports(DriftReport, model)
    if not reports:
        return {"reports": [], "chart": None, "newest": None}
    features: dict[str, list[float | None]] = {}
    for position, report in enumerate(reports):
        for feature in report.features or []:
            name = str(feature.get("feature"))
            features.setdefault(name, [None] * len(reports))[position] = _number(feature.get("psi"))
    threshold = DriftThresholds().psi
    peaks = {
        name: max((value for value in values if value is not None), default=None) for name, values in features.items()
    }
    charted = sorted((name for name in features if peaks[name] is not None), key=lambda name: -peaks[name])
    charted = charted[:DRIFT_FEATURES_CHARTED]
    x, x_label, x_range = _report_axis([report.window_end for report in reports], now)
    references = sorted({report.get_reference_display().lower() for report in reports})
    series = [
        {
            "name": name,
            "x": x,
            "y": features[name],
            "labels": [
                f"{name}: PSI {fmt_number(value)} (v{report.model_version.version}, {_moment_text(report.window_end)})"
                for value, report in zip(features[name], reports, strict=True)
            ],
        }
        for name in charted
    ]
    series.append(
        {
            "name": f"PSI {fmt_number(threshold)}: drift threshold",
            "x": list(x_range),
            "y": [threshold] * 2,
            "tone": "reference",
        }
    )
    peak = max((peaks[name] for name in charted), default=0.0)
    left_out = len([name for name in features if peaks[name] is not None]) - len(charted)
    chart = time_chart(
        series,
        caption=f"PSI per input over the last {len(reports)} drift report{'s' if len(reports) != 1 else ''}",
        summary=(
            f"Population stability index of {len(charted)} input{'s' if len(charted) != 1 else ''} "
            f"({', '.join(charted)}) over {len(reports)} drift reports against {' and '.join(references)}; "
            f"the dashed line is the PSI drift threshold, {fmt_number(threshold)}."
            + (
                f" {left_out} input{'s' if left_out != 1 else ''} with lower PSI are in the table only."
                if left_out
                else ""
            )
        ),
        x_label=x_label,
        x_range=x_range,
        y_label="PSI",
        y_range=(0.0, _nice_ceiling(max(peak or 0.0, threshold))),
        table={
            "head": ["Window end", "Version", *features],
            "rows": [
                [
                    _moment_text(report.window_end),
                    f"v{report.model_version.version}",
                    *[fmt_number(values[position]) for values in features.values()],
                ]
                for position, report in enumerate(reports)
            ],
        },
    )
    rows = [
        {
            "report": report,
            "version": report.model_version.version,
            "status": report.status,
            "status_label": report.get_status_display(),
            "drifted": (report.verdict or {}).get("drifted") or [],
            "reason": (report.verdict or {}).get("reason", ""),
            "reference": report.get_reference_display(),
        }
        for report in reversed(reports)
    ]
    return {
        "reports": rows,
        "chart": chart,
        "newest": rows[0],
        "mixed_references": len(references) > 1,
        "threshold": threshold,
    }


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _quality_source(report: QualityReport) -> tuple[float | None, str | None]:
    """The figure a quality report is judged by, as the SLO report reads it: labels first, else the estimate."""
    if report.value is not None:
        return report.value, "labels"
    if report.estimated_value is not None:
        return report.estimated_value, "estimate"
    return None, None


def quality_over_time(model: RegisteredModel, *, now: datetime | None = None) -> dict[str, Any]:
    """The model's live quality over its newest REPORTS_SHOWN quality reports (champion and earlier
    versions) in the metric of the newest one: measured from labels and estimated without them (CBPE) on
    one timeline, the SLA minimum as a dashed reference line when the model has one, and the label delay
    of each report."""
    now = now or timezone.now()
    reports = _reports(QualityReport, model)
    if not reports:
        return {"reports": [], "chart": None, "newest": None}
    metric = reports[-1].metric
    reports = [report for report in reports if report.metric == metric]
    minimum = model.quality_minimum
    x, x_label, x_range = _report_axis([report.window_end for report in reports], now)
    values = [report.value for report in reports]
    estimates = [report.estimated_value for report in reports]
    seen = [value for value in values + estimates + [minimum] if value is not None]
    top = 1.0 if metric in SHARE_METRICS else _nice_ceiling(max(seen, default=0.0))
    series = [
        {
            "name": "Measured from labels",
            "x": x,
            "y": values,
            "labels": [
                f"{metric} {fmt_number(report.value)} from {report.labelled} labels (v{report.model_version.version}, "
                f"{_moment_text(report.window_end)})"
                for report in reports
            ],
        },
        {
            "name": "Estimated without labels (CBPE)",
            "x": x,
            "y": estimates,
            "labels": [
                f"{metric} {fmt_number(report.estimated_value)} estimated over {report.rows} decisions "
                f"(v{report.model_version.version}, {_moment_text(report.window_end)})"
                for report in reports
            ],
        },
    ]
    bound = "at most" if metric in ERROR_METRICS else "at least"
    if minimum is not None:
        series.append(
            {
                "name": f"SLA: {metric} {bound} {fmt_number(minimum)}",
                "x": list(x_range),
                "y": [minimum] * 2,
                "tone": "reference",
            }
        )
    chart = time_chart(
        series,
        caption=f"{metric} over the last {len(reports)} quality report{'s' if len(reports) != 1 else ''}",
        summary=(
            f"{metric} of the model's decisions over {len(reports)} quality reports: measured from the labels "
            f"that arrived ({sum(v is not None for v in values)} reports) and estimated without them "
            f"({sum(v is not None for v in estimates)} reports)."
            + (f" The dashed line is the SLA: {bound} {fmt_number(minimum)}." if minimum is not None else "")
        ),
        x_label=x_label,
        x_range=x_range,
        y_label=metric,
        y_range=(0.0, top),
        table={
            "head": ["Window end", "Version", "Decisions", "Labelled", "Label delay", "Measured", "Estimated"],
            "rows": [
                [
                    _moment_text(report.window_end),
                    f"v{report.model_version.version}",
                    str(report.rows),
                    str(report.labelled),
                    duration_text(report.label_delay_seconds),
                    fmt_number(report.value),
                    fmt_number(report.estimated_value),
                ]
                for report in reports
            ],
        },
    )
    rows = []
    for report in reversed(reports):
        judged, source = _quality_source(report)
        rows.append(
            {
                "report": report,
                "version": report.model_version.version,
                "value": report.value,
                "estimated_value": report.estimated_value,
                "judged": judged,
                "judged_text": fmt_number(judged),
                "value_text": fmt_number(report.value),
                "estimate_text": fmt_number(report.estimated_value),
                "source": source,
                "label_delay": duration_text(report.label_delay_seconds)
                if report.label_delay_seconds is not None
                else None,
                "status": report.status,
                "status_label": report.get_status_display(),
            }
        )
    return {"reports": rows, "chart": chart, "newest": rows[0], "metric": metric, "minimum": minimum, "bound": bound}


def _objective_row(objective: dict[str, Any]) -> dict[str, Any]:
    name = objective.get("objective", "")
    target, measured, remaining = objective.get("target"), objective.get("measured"), objective.get("budget_remaining")
    if name == "latency":
        target_text = f"p95 at most {fmt_number(target)} ms"
        measured_text = "no requests" if measured is None else f"p95 {fmt_number(measured)} ms"
    elif name == "availability":
        target_text = f"at least {fmt_number(target)} %"
        measured_text = "no requests" if measured is None else f"{fmt_number(measured)} %"
    else:
        metric = objective.get("metric") or "quality"
        bound = "at most" if metric in ERROR_METRICS else "at least"
        target_text = f"{metric} {bound} {fmt_number(target)}"
        source = {"labels": "from labels", "estimate": "estimated"}.get(objective.get("source") or "", "")
        measured_text = "no quality report" if measured is None else f"{fmt_number(measured)} {source}".strip()
    percent = None if remaining is None else 100 * remaining
    return {
        "objective": name,
        "label": OBJECTIVE_LABELS.get(name, name),
        "target": target_text,
        "measured": measured_text,
        "met": objective.get("met"),
        "budget_percent": percent,
        "budget_text": "unknown"
        if percent is None
        else ("spent" if percent <= 0 else f"{fmt_number(round(percent, 2))} %"),
        "budget_width": 0 if percent is None else round(min(max(percent, 0.0), 100.0), 2),
        "spent": percent is not None and percent <= 0,
        "burn_rate": objective.get("burn_rate_1h"),
        "burn_rate_text": "—" if objective.get("burn_rate_1h") is None else f"{fmt_number(objective['burn_rate_1h'])}x",
    }


def slo_panel(model: RegisteredModel) -> dict[str, Any]:
    """The newest SLO report's objectives, each with the share of its error budget left as a percentage
    (0 % or less: spent; quality is 100 % met or 0 %)."""
    report = SloReport.objects.filter(registered_model=model).order_by("-created_at", "-pk").first()
    if report is None:
        return {"report": None, "objectives": []}
    return {"report": report, "objectives": [_objective_row(objective) for objective in report.objectives]}


def open_alerts(model: RegisteredModel) -> list[Alert]:
    """The model's unresolved alerts (open or acknowledged), critical first, then the newest."""
    alerts = list(
        Alert.objects.filter(registered_model=model)
        .exclude(status=Alert.Status.RESOLVED)
        .order_by("-opened_at")[:ALERTS_SHOWN]
    )
    return sorted(alerts, key=lambda alert: alert.severity != Alert.Severity.CRITICAL)


# -- cost --------------------------------------------------------------------------------------------------


def _counter_samples() -> Iterable[Any]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        families = registry.collect()
    else:
        from prometheus_client import REGISTRY

        families = REGISTRY.collect()
    for family in families:
        yield from family.samples


def cost_per_inference(model: RegisteredModel) -> dict[str, Any]:
    """CPU time per prediction of each of the model's versions, from the web workers' counters since they
    started: faro_prediction_cpu_seconds_total (the scoring requests' CPU time) over faro_predictions_total
    (the rows they predicted), summed over every worker when PROMETHEUS_MULTIPROC_DIR is set. With
    FARO_CPU_PRICE_PER_HOUR set, also the price of a prediction and of a thousand."""
    cpu: dict[str, float] = {}
    predictions: dict[str, float] = {}
    for sample in _counter_samples():
        if sample.labels.get("model") != model.name:
            continue
        version = sample.labels.get("version", "")
        if sample.name == "faro_prediction_cpu_seconds_total":
            cpu[version] = cpu.get(version, 0.0) + sample.value
        elif sample.name == "faro_predictions_total":
            predictions[version] = predictions.get(version, 0.0) + sample.value
    price = settings.FARO_CPU_PRICE_PER_HOUR
    rows = []
    for version in sorted(
        set(cpu) | set(predictions), key=lambda v: (not v.isdigit(), -int(v) if v.isdigit() else 0, v)
    ):
        seconds, count = cpu.get(version, 0.0), predictions.get(version, 0.0)
        per_prediction = seconds / count if count and version in cpu else None
        row = {
            "version": version,
            "cpu_seconds": seconds if version in cpu else None,
            "predictions": int(count),
            "cpu_seconds_per_prediction": per_prediction,
            "cpu_ms_per_prediction": None if per_prediction is None else per_prediction * 1000,
            "price_per_prediction": None,
            "price_per_thousand": None,
        }
        if per_prediction is not None and price is not None:
            row["price_per_prediction"] = per_prediction * price / 3600
            row["price_per_thousand"] = row["price_per_prediction"] * 1000
        row["cpu_seconds_text"] = fmt_number(row["cpu_seconds"])
        row["cpu_ms_text"] = "—" if per_prediction is None else f"{fmt_number(per_prediction * 1000)} ms"
        row["price_text"] = money_text(row["price_per_prediction"], settings.FARO_COST_CURRENCY)
        row["price_thousand_text"] = money_text(row["price_per_thousand"], settings.FARO_COST_CURRENCY)
        rows.append(row)
    return {
        "rows": rows,
        "price_per_hour": price,
        "currency": settings.FARO_COST_CURRENCY,
        "all_workers": bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR")),
        "uncounted": any(row["cpu_seconds"] is None for row in rows),
    }


# -- pages ------------------------------------------------------------------------------------------------


def model_dashboard(
    model: RegisteredModel, *, hours: int = DEFAULT_HOURS, now: datetime | None = None
) -> dict[str, Any]:
    """Everything the model's monitoring page shows, over the last `hours` (one of HOURS_CHOICES)."""
    now = now or timezone.now()
    return {
        "model": model,
        "champion": _champion(model),
        "hours": hours,
        "hours_choices": [{"hours": choice, "label": window_label(choice)} for choice in HOURS_CHOICES],
        "traffic": traffic_series(model, hours=hours, buckets=BUCKETS_FOR_HOURS.get(hours, 24), now=now),
        "canary": canary_policy(model),
        "drift": drift_over_time(model, now=now),
        "quality": quality_over_time(model, now=now),
        "slo": slo_panel(model),
        "alerts": open_alerts(model),
        "cost": cost_per_inference(model),
    }


def _newest_for(report_model, model: RegisteredModel, champion: ModelVersion | None):
    reports = report_model.objects.filter(model_version__registered_model=model)
    if champion is not None:
        reports = reports.filter(model_version=champion)
    return reports.order_by("-window_end", "-pk").first()


def fleet_overview(*, now: datetime | None = None) -> list[dict[str, Any]]:
    """One row per registered model: its champion, the last 24 hours' requests, p95 and error rate, the
    newest drift status and quality of the champion, the SLO budgets left and the unresolved alerts.
    Models with a problem come first: an unresolved critical alert, then anything else wrong (drift,
    quality below the SLA, an error budget spent, a warning), then the rest, each group by name."""
    now = now or timezone.now()
    unresolved: dict[int, dict[str, int]] = {}
    for model_id, severity in Alert.objects.exclude(status=Alert.Status.RESOLVED).values_list(
        "registered_model_id", "severity"
    ):
        counts = unresolved.setdefault(model_id, {"all": 0, "critical": 0})
        counts["all"] += 1
        counts["critical"] += severity == Alert.Severity.CRITICAL
    rows = []
    for model in RegisteredModel.objects.order_by("name"):
        champion = _champion(model)
        traffic = traffic_series(model, hours=24, buckets=1, now=now, charts=False)["totals"]
        drift = _newest_for(DriftReport, model, champion)
        quality = _newest_for(QualityReport, model, champion)
        slo = slo_panel(model)
        alerts = unresolved.get(model.pk, {"all": 0, "critical": 0})
        problems = []
        if alerts["critical"]:
            problems.append(f"{alerts['critical']} critical alert{'s' if alerts['critical'] != 1 else ''}")
        if drift is not None and drift.status == DriftReport.Status.DRIFTED:
            problems.append("inputs drifted")
        if quality is not None and quality.status == QualityReport.Status.BELOW_SLA:
            problems.append(f"{quality.metric} below the SLA")
        problems.extend(
            f"{objective['objective']} budget spent" for objective in slo["objectives"] if objective["spent"]
        )
        warnings = alerts["all"] - alerts["critical"]
        if warnings:
            problems.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
        judged, source = _quality_source(quality) if quality is not None else (None, None)
        rows.append(
            {
                "model": model,
                "champion": champion,
                "requests": traffic["requests"],
                "failures": traffic["failures"],
                "p95": traffic["p95"],
                "p95_text": ms_text(traffic["p95"]),
                "error_rate": traffic["error_rate"],
                "error_rate_text": percent_text(traffic["error_rate"]),
                "served": traffic["requests"] + traffic["failures"] > 0,
                "drift": drift,
                "quality": quality,
                "quality_value": judged,
                "quality_text": fmt_number(judged),
                "quality_source": source,
                "slo": slo["objectives"] if slo["report"] is not None else None,
                "alerts": alerts["all"],
                "critical_alerts": alerts["critical"],
                "problems": problems,
                "rank": 0 if alerts["critical"] else (1 if problems else 2),
            }
        )
    return sorted(rows, key=lambda row: (row["rank"], row["model"].name))
