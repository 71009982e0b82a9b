"""The Prometheus side of Faro's monitoring, checked with promtool (Debian's `prometheus` package, installed by
scripts/bootstrap.sh): the alerting rules and their unit tests, the compose scrape configuration, and the
Grafana dashboard's queries. Without promtool these tests fail: they are the only check of those files.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "docker" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ALERT_TESTS = PROMETHEUS_DIR / "alerts.test.yml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "docker" / "grafana" / "faro-dashboard.json"

COUNTERS = {
    "faro_prediction_requests",
    "faro_predictions",
    "faro_http_requests",
    "faro_prediction_cpu_seconds",
    "faro_batch_rows_scored",
    "faro_data_check_failures",
}
HISTOGRAMS = {"faro_prediction_latency_seconds", "faro_prediction_stage_seconds", "faro_http_request_duration_seconds"}
GAUGES = {
    "faro_celery_queue_depth",
    "faro_celery_queue_oldest_age_seconds",
    "faro_training_jobs",
    "faro_drift_status",
    "faro_drift_score",
    "faro_live_quality",
    "faro_slo_error_budget_remaining",
    "faro_alerts_open",
    "faro_cpu_price_per_hour",
}
# The series names Faro exports (plus Prometheus' own `up`): a query naming anything else shows nothing.
KNOWN_SERIES = (
    {f"{name}_total" for name in COUNTERS}
    | {f"{name}_{suffix}" for name in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
    | GAUGES
    | {"up"}
)
# Metrics with a model label: an alert on them names the model in its summary and description.
MODEL_LABELLED = ("faro_prediction", "faro_drift_", "faro_live_quality", "faro_slo_", "faro_batch_rows")

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left"}
PROMQL_KEYWORDS |= {"group_right", "inf", "nan", "start", "end"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: run scripts/bootstrap.sh as root, or apt-get install prometheus"
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions, aggregations,
    keywords, label names (in matchers and grouping lists) or parts of durations and numbers."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][\w:]*(?![\w(])(?!\s*\()", text):
        if match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def grafana_to_promql(expr: str, model: str = "loan-risk") -> str:
    """Grafana's variables replaced by values a PromQL parser accepts: intervals by 5m, the rest by `model`."""
    expr = re.sub(r"\$\{?__(?:rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", model, expr)


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels(panels: list[dict]) -> list[dict]:
    """Every panel, including those inside (collapsed) rows."""
    found = []
    for panel in panels:
        found.append(panel)
        found.extend(dashboard_panels(panel.get("panels", [])))
    return found


def check_exprs_parse(promtool: str, exprs: dict[str, str], tmp_path: Path) -> None:
    """Parse each expression with promtool, as the expression of a recording rule named after it."""
    rules = [{"record": f"faro:check:{name}", "expr": expr} for name, expr in exprs.items()]
    path = tmp_path / "exprs.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "exprs", "rules": rules}]}, sort_keys=False))
    checked = run(promtool, "check", "rules", str(path), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout, checked.stdout + checked.stderr


def test_metric_names_reads_selectors_only():
    expr = (
        'sum by (model, le) (rate(faro_prediction_latency_seconds_bucket{model=~"a|b", le!="+Inf"}[5m] offset 1h))'
        " / on (model) group_left (version) max(faro_drift_status) * 1e3 > bool up"
    )
    assert metric_names(expr) == {"faro_prediction_latency_seconds_bucket", "faro_drift_status", "up"}


# -- alerting rules ------------------------------------------------------------------------------------------


def test_alert_rules_are_valid(promtool):
    checked = run(promtool, "check", "rules", str(ALERTS), cwd=PROMETHEUS_DIR)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout, checked.stdout


def test_alert_rule_unit_tests_pass(promtool):
    tested = run(promtool, "test", "rules", ALERT_TESTS.name, cwd=PROMETHEUS_DIR)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout and "FAILED" not in tested.stdout, tested.stdout


def test_every_alert_has_a_firing_and_a_quiet_case():
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    alerts = {rule["alert"] for rule in alert_rules()}
    assert set(cases) == alerts
    assert {name: seen for name, seen in cases.items() if seen != {True, False}} == {}


def test_alerts_are_labelled_and_described():
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "FaroTargetDown",
        "FaroPredictionErrorRateHigh",
        "FaroPredictionLatencyHigh",
        "FaroModelDrifted",
        "FaroSLOErrorBudgetSpent",
        "FaroSLOErrorBudgetBurningFast",
        "FaroQueueBacklog",
        "FaroTrainingJobsFailed",
    }
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), name
        if any(metric.startswith(MODEL_LABELLED) for metric in metric_names(rule["expr"])):
            assert "$labels.model" in rule["annotations"]["summary"], name
            assert "$labels.model" in rule["annotations"]["description"], name


def test_alert_rules_use_only_faro_metrics():
    used = {rule["alert"]: metric_names(rule["expr"]) for rule in alert_rules()}
    assert all(used.values()), used
    assert {name: names - KNOWN_SERIES for name, names in used.items() if names - KNOWN_SERIES} == {}


def test_compose_prometheus_config_is_valid(promtool, tmp_path):
    # From an unrelated directory: the rule file must resolve next to the configuration, as in the container.
    checked = run(promtool, "check", "config", str(PROMETHEUS_CONFIG), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout, checked.stdout
    assert f"SUCCESS: {len(alert_rules())} rules found" in checked.stdout, checked.stdout
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    assert [(job["job_name"], job["static_configs"]) for job in config["scrape_configs"]] == [
        ("faro", [{"targets": ["web:8000"]}])
    ]


# -- Grafana dashboard ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_panels_have_unique_ids_and_titles(dashboard):
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = dashboard_panels(dashboard["panels"])
    assert panels
    ids = [panel.get("id") for panel in panels]
    assert all(isinstance(panel_id, int) for panel_id in ids), ids
    assert len(set(ids)) == len(ids), ids
    assert [panel for panel in panels if not str(panel.get("title", "")).strip()] == []
    # Every panel but a row shows something.
    assert [panel["title"] for panel in panels if panel["type"] != "row" and not panel.get("targets")] == []


def test_dashboard_model_variable(dashboard):
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    model = variables["model"]
    query = model["query"]["query"] if isinstance(model["query"], dict) else model["query"]
    assert query == "label_values(faro_predictions_total, model)"
    assert model["type"] == "query"


def test_dashboard_queries_parse_and_use_only_faro_metrics(dashboard, promtool, tmp_path):
    exprs = {}
    for panel in dashboard_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            assert target.get("expr", "").strip(), (panel["title"], target)
            exprs[f"panel_{panel['id']}_{target['refId']}"] = grafana_to_promql(target["expr"])
    assert exprs
    check_exprs_parse(promtool, exprs, tmp_path)
    used = {name: metric_names(expr) for name, expr in exprs.items()}
    assert all(used.values()), used
    assert {name: names - KNOWN_SERIES for name, names in used.items() if names - KNOWN_SERIES} == {}
