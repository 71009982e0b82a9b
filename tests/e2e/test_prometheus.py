"""A real Prometheus scraping the real stack: what it stores adds up to exactly the predictions made.

The stack runs gunicorn with two workers, so /metrics is the sum of the workers' multiprocess files; the
Prometheus here (Debian's `prometheus` package, installed by scripts/bootstrap.sh) scrapes it every second
from a configuration generated for this run, with its own storage in a temporary directory. Also checks the
exposition with `promtool check metrics`, and evaluates every alerting rule and Grafana panel query
(docker/prometheus, docker/grafana) on what Prometheus scraped.

Run with `pytest -m e2e tests/e2e/test_prometheus.py`. With DATABASE_URL and REDIS_URL set, the stack runs on
a fresh PostgreSQL database and a Redis broker; otherwise on SQLite and the filesystem broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import valid_row
from tests.e2e.conftest import POLL_SECONDS, Stack, _free_port, log_tail
from tests.monitoring.test_alert_rules import DASHBOARD, alert_rules, dashboard_panels, grafana_to_promql

pytestmark = pytest.mark.e2e

MODEL = "loan-risk"
HTTP_TIMEOUT = 30
PROMETHEUS_START_SECONDS = 30.0
PROMETHEUS_STOP_SECONDS = 10.0
SCRAPE_WAIT_SECONDS = 20.0  # a scrape every second; this is many missed scrapes
SINGLE_ROW_REQUESTS = 37
BATCHES = 3
BATCH_ROWS = 5

SETUP = """
import json, time
from django.core.files.uploadedfile import SimpleUploadedFile
from apps.data.services import dataset_create, dataset_version_create_from_upload
from apps.governance.services import token_create
from apps.registry.models import TrainingJob
from apps.registry.services import registered_model_create, training_job_create, training_job_run
from tests.conftest import SMALL_PARAMS, generated_csv, release
dataset = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
rows = dataset_version_create_from_upload(
    dataset=dataset, upload=SimpleUploadedFile("loans.csv", generated_csv(), content_type="text/csv")
)
model = registered_model_create(name="loan-risk", task_type="classification", favourable_label="yes")
job = training_job_create(registered_model=model, dataset_version=rows, params=SMALL_PARAMS)
training_job_run(job_id=job.pk)  # here, unless the worker's delivery of the same task claimed it first
deadline = time.monotonic() + 120
while TrainingJob.objects.get(pk=job.pk).status not in ("succeeded", "failed") and time.monotonic() < deadline:
    time.sleep(0.2)
job = TrainingJob.objects.get(pk=job.pk)
assert job.status == "succeeded", (job.status, job.error)
release(job.model_version)
_, token = token_create(name="e2e-prometheus", scopes=["predict"])
print(json.dumps({"token": token, "version": job.model_version.version}))
"""


@dataclass
class Prometheus:
    url: str
    tmp_dir: Path
    log: Path
    process: subprocess.Popen

    def query(self, expr: str, result_type: str = "vector") -> list[dict]:
        """An instant query, now; the result (a vector, or a matrix for a range selector)."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, f"{expr}: {response.status_code} {response.text}"
        body = response.json()
        assert body["status"] == "success" and body["data"]["resultType"] == result_type, body
        return body["data"]["result"]

    def value(self, expr: str) -> float | None:
        """The single value of `expr` now, or None when the result is empty."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr}: more than one series: {result}"
        return float(result[0]["value"][1]) if result else None

    def by(self, label: str, expr: str) -> dict[str, float]:
        return {series["metric"].get(label, ""): float(series["value"][1]) for series in self.query(expr)}

    def assert_running(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"Prometheus exited with {self.process.returncode}:\n{log_tail(self.log)}")


def shell(stack: Stack, code: str) -> dict:
    done = stack.manage("shell", "-c", code, timeout=300)
    assert done.returncode == 0, f"manage.py shell failed:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM (Prometheus shuts down cleanly on it), a bounded wait, then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=PROMETHEUS_STOP_SECONDS)
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _ready(url: str) -> bool:
    try:
        return requests.get(f"{url}/-/ready", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def model(stack: Stack) -> dict:
    """A trained, approved champion of MODEL and a token that may predict with it."""
    return shell(stack, SETUP)


@pytest.fixture(scope="module")
def prometheus(stack: Stack, request: pytest.FixtureRequest) -> Prometheus:
    """A Prometheus of its own, scraping the stack's /metrics every second; stopped when the module ends."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: run scripts/bootstrap.sh as root, or apt-get install prometheus"
    tmp = Path(tempfile.mkdtemp(prefix="faro-e2e-prometheus-"))
    target = stack.base_url.removeprefix("http://")
    config = tmp / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "faro", "static_configs": [{"targets": [target]}]}],
            },
            indent=2,
        )
    )
    log = tmp / "prometheus.log"
    port = _free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=tmp,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Prometheus(url=f"http://127.0.0.1:{port}", tmp_dir=tmp, log=log, process=process)

    def finish() -> None:
        _stop(process)
        if stack.failed:  # set by tests/e2e/conftest.py when a test of this module failed
            print(f"\nPrometheus kept for inspection in {tmp}\n{log_tail(log)}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    request.addfinalizer(finish)
    deadline = time.monotonic() + PROMETHEUS_START_SECONDS
    while not _ready(server.url):
        server.assert_running()
        assert time.monotonic() < deadline, (
            f"Prometheus not ready in {PROMETHEUS_START_SECONDS:.0f} s:\n{log_tail(log)}"
        )
        time.sleep(POLL_SECONDS)
    return server


def wait_for_scrape_after(prometheus: Prometheus, stack: Stack, moment: float) -> float:
    """Wait (bounded) until Prometheus holds a successful scrape of the stack that started after `moment`
    (wall-clock seconds); returns that scrape's timestamp.

    The raw samples of `up` carry the scrapes' own timestamps (`timestamp(up == 1)` would not: a comparison's
    result is stamped with the evaluation time), and Prometheus commits a scrape's samples together with its
    `up`, so once that scrape shows here, everything it read is queryable.
    """
    deadline = time.monotonic() + SCRAPE_WAIT_SECONDS
    while True:
        prometheus.assert_running()
        stack.assert_running()
        scrapes = [
            (float(timestamp), value)
            for series in prometheus.query(f'up{{job="faro"}}[{SCRAPE_WAIT_SECONDS:.0f}s]', "matrix")
            for timestamp, value in series["values"]
        ]
        after = [timestamp for timestamp, value in scrapes if timestamp > moment and value == "1"]
        if after:
            return min(after)
        if time.monotonic() > deadline:
            targets = requests.get(f"{prometheus.url}/api/v1/targets", timeout=HTTP_TIMEOUT).text
            raise AssertionError(
                f"no successful scrape after {moment:.3f} within {SCRAPE_WAIT_SECONDS:.0f} s; up: {scrapes[-5:]}; "
                f"targets: {targets}\n{log_tail(prometheus.log)}"
            )
        time.sleep(POLL_SECONDS)


def predict(stack: Stack, token: str, rows: int, seed: int) -> tuple[int, int]:
    inputs = [valid_row(income=1500.0 + 617.3 * ((seed + i) % 13), age=20 + (seed + i) % 50) for i in range(rows)]
    response = requests.post(
        stack.url(f"/api/v1/models/{MODEL}/predict"),
        json={"inputs": inputs},
        headers={"Authorization": f"Bearer {token}"},
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["outputs"]) == rows, body
    return body["version"], rows


def predictions_by_web_worker(stack: Stack, expected: int) -> Counter:
    """Successful predictions in the access log by web worker pid, once it holds `expected` of them.

    gunicorn writes an access line after the response has gone, so wait (bounded) for the last ones.
    """
    deadline = time.monotonic() + 5.0
    while True:
        served: Counter = Counter()
        for line in stack.log_text("access").splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[1] == "POST" and parts[2].endswith("/predict") and parts[3] == "200":
                served[parts[0]] += 1
        if served.total() >= expected:
            return served
        assert time.monotonic() < deadline, f"access log has {served.total()} predictions, expected {expected}"
        time.sleep(0.01)


def test_prometheus_counts_every_prediction_of_both_web_workers(stack: Stack, model: dict, prometheus: Prometheus):
    # Prometheus scrapes the stack before any prediction; nothing is counted for the model yet.
    wait_for_scrape_after(prometheus, stack, time.time())
    assert prometheus.value(f'sum(faro_predictions_total{{model="{MODEL}"}})') is None

    # Concurrent, so that both gunicorn workers answer some: 37 single rows and 3 batches of 5 rows.
    sizes = [1] * SINGLE_ROW_REQUESTS + [BATCH_ROWS] * BATCHES
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda seed: predict(stack, model["token"], sizes[seed], seed), range(len(sizes))))
    last_response = time.time()
    requests_made = len(answers)
    rows_predicted = sum(rows for _, rows in answers)
    assert (requests_made, rows_predicted) == (40, 52)
    assert {version for version, _ in answers} == {model["version"]}

    served = predictions_by_web_worker(stack, requests_made)
    assert served.total() == requests_made and len(served) == 2, f"expected both web workers to serve: {served}"

    wait_for_scrape_after(prometheus, stack, last_response)
    selector = f'model="{MODEL}"'
    assert prometheus.value(f"sum(faro_predictions_total{{{selector}}})") == rows_predicted
    assert prometheus.value(f'sum(faro_prediction_requests_total{{{selector},status="ok"}})') == requests_made
    # Nothing else was counted: every row by the version that answered, every request ok.
    assert prometheus.by("version", f"sum by (version) (faro_predictions_total{{{selector}}})") == {
        str(model["version"]): rows_predicted
    }
    assert prometheus.by("status", f"sum by (status) (faro_prediction_requests_total{{{selector}}})") == {
        "ok": requests_made
    }
    assert prometheus.value(f"sum(faro_prediction_latency_seconds_count{{{selector}}})") == requests_made


def ensure_predictions(stack: Stack, model: dict, prometheus: Prometheus) -> None:
    """After the test above, Prometheus holds predictions; run alone, a test makes a few and waits for them."""
    if prometheus.value(f'sum(faro_predictions_total{{model="{MODEL}"}})') is None:
        for seed in range(4):
            predict(stack, model["token"], rows=1 + seed % 2, seed=seed)
        wait_for_scrape_after(prometheus, stack, time.time())


def test_promtool_finds_no_problem_in_the_metrics(stack: Stack, model: dict, prometheus: Prometheus):
    ensure_predictions(stack, model, prometheus)  # so that the prediction metrics have samples
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run scripts/bootstrap.sh as root, or apt-get install prometheus"
    response = requests.get(stack.url("/metrics"), timeout=HTTP_TIMEOUT)
    assert response.status_code == 200
    assert "faro_predictions_total{" in response.text
    checked = subprocess.run(
        [promtool, "check", "metrics"], input=response.text, capture_output=True, text=True, timeout=60, check=False
    )
    findings = (checked.stdout + checked.stderr).splitlines()
    assert (checked.returncode, findings) == (0, []), "\n".join(findings)


def test_alert_and_dashboard_queries_evaluate_on_the_scraped_metrics(stack: Stack, model: dict, prometheus: Prometheus):
    """promtool parses the queries (tests/monitoring/test_alert_rules.py); only evaluation on real series finds
    a vector match gone wrong (duplicate series on one side, many-to-many). Each query must evaluate; those on
    the prediction metrics must also show the traffic."""
    # rate() needs two samples of a series in its window: predictions, a scrape, more, another scrape.
    ensure_predictions(stack, model, prometheus)
    for seed in range(4):
        predict(stack, model["token"], rows=1, seed=seed)
    wait_for_scrape_after(prometheus, stack, time.time())
    queries = {rule["alert"]: rule["expr"] for rule in alert_rules()}
    for panel in dashboard_panels(json.loads(DASHBOARD.read_text())["panels"]):
        for target in panel.get("targets", []):
            queries[f"{panel['title']} [{target['refId']}]"] = grafana_to_promql(target["expr"], model=MODEL)
    results = {}
    for name, expr in queries.items():
        response = requests.get(f"{prometheus.url}/api/v1/query", params={"query": expr}, timeout=HTTP_TIMEOUT)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (name, expr, body)
        results[name] = body["data"]["result"]
    with_data = {
        "Prediction requests/s by status [A]": [{"status": "ok"}],
        "Predictions/s by outcome [A]": None,  # the outcomes are the model's: some
        "Prediction latency p50 / p95 / p99 [A]": [{"model": MODEL}],
        "Prediction latency p50 / p95 / p99 [B]": [{"model": MODEL}],
        "Prediction latency p50 / p95 / p99 [C]": [{"model": MODEL}],
    }
    for name, labels in with_data.items():
        assert results[name], f"{name}: no data"
        if labels is not None:
            assert [series["metric"] for series in results[name]] == labels, (name, results[name])
    # Nothing is down, failing or drifted in this stack. (Latency is not checked: each web worker loads the
    # model on its first request, and with a few dozen requests that one may be the p95.)
    quiet = ("FaroTargetDown", "FaroPredictionErrorRateHigh", "FaroModelDrifted")
    assert {name: results[name] for name in quiet if results[name]} == {}
