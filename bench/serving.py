"""Serving throughput of Faro against a bare Django baseline, on this machine: single rows and 1000-row batches.

What is measured, in two phases: requests per second (and rows per second), p50 and p99 latency and errors
when a fixed number of concurrent clients POST on loopback (1) one German Credit row per request, (2) 1000
rows per request (the demo file's 1000 rows), against two servers that both run under gunicorn with the
same worker model (default: config/gunicorn.py's 2 sync workers) and score the same XGBoost artefact:

- faro: the real product with production settings (PostgreSQL, Redis, Prometheus multiprocess metrics),
  `POST /api/v1/models/credit-risk/predict` with a Bearer token. Every request goes through the full
  middleware stack, DRF, token authentication, the per-client throttle (Redis), the traffic policy, signature
  validation, the feature pipeline, the model, the decision log (one INSERT + COMMIT per request, one row per
  scored row) and the Prometheus counters.
- baseline: bench/bare_app.py, a one-view Django app with no database and no middleware that parses the
  body, transforms the rows with the same fitted feature pipeline and calls `Booster.inplace_predict` on the
  same file (with --baseline-scorer onnx: onnxruntime on the version's verified ONNX export, for comparing
  with a Faro that scores through ONNX).

The ratios faro / baseline (req/s for single rows, rows/s for batches) are what Faro's extra work costs;
PERF-NOTES.md puts the bare stack at ~2,400 single-row req/s with 8 clients on 2 cores. The goals of the
serving issue on a 2-core machine: single-row ratio >= 0.60, Faro's p99 <= 10 ms at 8 clients, Faro's
1000-row batches >= 100 k rows/s.

Pinning: the server under test (gunicorn master and workers) runs on core 0 and the load generator on core 1
(`taskset`, util-linux), so the two never compete for a core. PostgreSQL and Redis are not pinned: they are
shared services of the machine and run wherever the scheduler puts them. --no-pin runs everything unpinned.
Both servers are measured the same way in the same run, in alternating rounds (--rounds, default 3: faro
then baseline, baseline then faro, ...), so that a change in the machine's speed during the run falls on
both; the ratios are the median of the rounds' ratios. Other jobs on the machine still share the cores, so
the 1-minute load average is logged before each measurement.

The load generator is wrk when it is on PATH (`apt-get install wrk`; a Lua script sets the POST body and
counts non-200 answers), otherwise N Python client processes, each with its own http.client connection;
the output says which. gunicorn's sync workers close the connection after every answer, so with them each
request opens a new connection. Errors are answers other than 200 and requests without an answer, warm-up
included; Faro's decision log must also hold at least one row per row it answered with 200.

Run from the repository root: `.venv/bin/python bench/serving.py [--seconds 10] [--clients 8]`
(--help for the worker model, the batch phase and the load generator). Needs PostgreSQL (trust auth) on
127.0.0.1:5432 and Redis on 127.0.0.1:6379. It creates and drops the database faro_bench and uses Redis
database 14. The last line of output is

    BENCH serving: ratio=<median faro_rps/baseline_rps> p99_ms=<faro p99> rps=<faro rps> baseline_rps=<rps> ...

(rps over all rounds, p99 the median of the rounds') followed by p50s, the baseline's p99, the batch phase
(batch_rows_per_s, baseline_batch_rows_per_s, batch_ratio, batch p50/p99), loadgen= and pinned=.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import http.client
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST = "127.0.0.1"
PG_USERS = ("postgres", "root")
PG_ADMIN_DB = "test"
BENCH_DB = "faro_bench"
REDIS_URL = "redis://127.0.0.1:6379/14"  # 15 belongs to the test suite
MODEL = "credit-risk"
FARO_PATH = f"/api/v1/models/{MODEL}/predict"
BASELINE_PATH = "/predict"
DEMO_CSV = REPO / "apps" / "data" / "demo" / "german_credit.csv"
DROPPED_COLUMNS = ("applicant_id", "creditability")
REQUEST_TIMEOUT = 30.0  # a failure detector: queued 1000-row batches on a busy machine take seconds
START_TIMEOUT = 90.0
MAX_ERROR_SAMPLES = 5
SERVER_CORE = 0
LOAD_CORE = 1
BATCH_ROWS = 1000
GOAL_RATIO, GOAL_P99_MS, GOAL_BATCH_ROWS_PER_S = 0.60, 10.0, 100_000.0


@dataclass
class Result:
    name: str
    requests: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    rows_per_request: int = 1

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows_per_request


@dataclass
class Target:
    name: str
    port: int
    path: str
    headers: dict[str, str]
    body: bytes
    rows: int = 1

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{self.path}"


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


@dataclass(frozen=True)
class Pinning:
    """Command prefixes that put a server on SERVER_CORE and the load generator on LOAD_CORE."""

    server: tuple[str, ...] = ()
    load: tuple[str, ...] = ()
    load_core: int | None = None

    @property
    def description(self) -> str:
        if not self.server:
            return "not pinned"
        return f"servers on core {SERVER_CORE}, load generator on core {LOAD_CORE} (taskset)"


def pinning_for(enabled: bool) -> Pinning:
    if not enabled:
        return Pinning()
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("taskset (util-linux) is not on PATH; install util-linux or run with --no-pin")
    available = os.sched_getaffinity(0)
    if not {SERVER_CORE, LOAD_CORE} <= available:
        raise RuntimeError(
            f"Pinning needs cores {SERVER_CORE} and {LOAD_CORE}; this process may use {sorted(available)} "
            "(run with --no-pin)"
        )
    return Pinning(server=(taskset, "-c", str(SERVER_CORE)), load=(taskset, "-c", str(LOAD_CORE)), load_core=LOAD_CORE)


# -- infrastructure: database, processes ----------------------------------------------------------------


def pg_admin_connect():
    import psycopg

    failures = []
    for user in PG_USERS:
        try:
            return psycopg.connect(host=HOST, port=5432, user=user, dbname=PG_ADMIN_DB, autocommit=True), user
        except psycopg.OperationalError as exc:
            failures.append(f"{user}: {str(exc).strip()}")
    raise RuntimeError("Cannot connect to PostgreSQL on 127.0.0.1:5432: " + "; ".join(failures))


def database_recreate() -> str:
    """Drop and create the bench database; return the PostgreSQL user to connect as."""
    conn, user = pg_admin_connect()
    with conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_DB}")
    return user


def database_drop() -> None:
    conn, _ = pg_admin_connect()
    with conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def run_checked(args: list[str], env: dict[str, str], timeout: float, what: str) -> str:
    try:
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what} did not finish within {timeout:.0f} s") from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


class Server:
    """A gunicorn started in its own session, so that the whole process group can be stopped."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM the group (gunicorn stops its workers gracefully), then SIGKILL whatever is left of it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=25)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=5)
        self._log.close()


def wait_until(server: Server, check, what: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited ({server.process.returncode}):\n{server.log_tail()}")
        try:
            status, text = check()
            if status == 200:
                return
            last = f"HTTP {status}: {text[:300]}"
        except (OSError, http.client.HTTPException) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.25)
    raise RuntimeError(f"{server.name} was not {what} within {timeout:.0f} s ({last}):\n{server.log_tail()}")


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def http_post(target: Target) -> tuple[int, str]:
    conn = http.client.HTTPConnection(HOST, target.port, timeout=REQUEST_TIMEOUT)
    try:
        conn.request("POST", target.path, body=target.body, headers=target.headers)
        response = conn.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        conn.close()


# -- the model and the request ----------------------------------------------------------------------------


def champion_spec(user: str, artefact_root: Path) -> dict:
    """The champion of credit-risk as Faro stored it: artefact, SHA-256, labels and fitted features."""
    import psycopg

    with psycopg.connect(host=HOST, port=5432, user=user, dbname=BENCH_DB) as conn:
        row = conn.execute(
            """
            SELECT mv.version, mv.artefact_path, mv.artefact_sha256, mv.labels, mv.feature_state,
                   mv.onnx_path, mv.onnx_sha256
            FROM registry_modelalias AS alias
            JOIN registry_registeredmodel AS rm ON rm.id = alias.registered_model_id
            JOIN registry_modelversion AS mv ON mv.id = alias.version_id
            WHERE rm.name = %s AND alias.name = 'champion'
            """,
            (MODEL,),
        ).fetchone()
    if row is None:
        raise RuntimeError(f"demo_setup left no champion for {MODEL}")
    version, relative, sha256, labels, feature_state, onnx_relative, onnx_sha256 = row
    return {
        "model": MODEL,
        "version": version,
        "artefact": str(artefact_root / relative),
        "sha256": sha256,
        "labels": labels,
        "feature_state": feature_state,
        "onnx_artefact": str(artefact_root / onnx_relative) if onnx_relative else "",
        "onnx_sha256": onnx_sha256,
    }


def faro_logged_predictions(user: str) -> int:
    """Rows in Faro's prediction log: every row answered with 200 by the predict endpoint must have one."""
    import psycopg

    with psycopg.connect(host=HOST, port=5432, user=user, dbname=BENCH_DB) as conn:
        return conn.execute("SELECT count(*) FROM predictions_predictionrecord").fetchone()[0]


def request_rows(feature_state: dict, count: int) -> list[dict]:
    """The first `count` German Credit rows (the file's rows again from the top when it has fewer), typed by
    the stored signature: numbers as numbers, categories as text."""
    with open(DEMO_CSV, newline="") as handle:
        raws = list(csv.DictReader(handle))
    return [typed_row(raws[index % len(raws)], feature_state) for index in range(count)]


def typed_row(raw: dict[str, str], feature_state: dict) -> dict:
    if "definition_hash" in feature_state:  # fitted with a feature set: its inputs are the source columns it reads
        kinds = {
            item["name"]: {
                "kind": "categorical" if item["type"] == "category" else "numeric",
                "integer": item["type"] == "integer",
            }
            for item in feature_state["inputs"]
        }
    else:
        kinds = {item["name"]: item for item in feature_state["features"]}
    row: dict = {}
    for name, value in raw.items():
        if name in DROPPED_COLUMNS or name not in kinds:
            continue
        feature = kinds[name]
        if feature["kind"] == "numeric":
            row[name] = int(value) if feature.get("integer") else float(value)
        else:
            row[name] = value
    missing = kinds.keys() - row.keys()
    if missing:
        raise RuntimeError(f"The demo row lacks inputs {sorted(missing)}")
    return row


def check_same_prediction(faro: Target, baseline: Target) -> str:
    """Both servers answer every row of the request body with the same label and probabilities (1e-5)."""
    answers = {}
    for target in (faro, baseline):
        status, text = http_post(target)
        if status != 200:
            raise RuntimeError(f"{target.name} answered HTTP {status} to the benchmark request: {text[:500]}")
        answers[target.name] = json.loads(text)["outputs"]
    ours, theirs = answers[faro.name], answers[baseline.name]
    if len(ours) != faro.rows or len(theirs) != baseline.rows:
        raise RuntimeError(f"Expected {faro.rows} outputs; faro answered {len(ours)}, baseline {len(theirs)}")
    for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
        same = mine["label"] == other["label"] and all(
            abs(mine["probabilities"][key] - other["probabilities"][key]) < 1e-5 for key in mine["probabilities"]
        )
        if not same or mine["probabilities"].keys() != other["probabilities"].keys():
            raise RuntimeError(f"The servers disagree on row {index}: faro {mine}, baseline {other}")
    first = ours[0]
    return f"{first['label']} {first['probabilities']}" if faro.rows == 1 else f"all {faro.rows} rows alike"


# -- load: wrk ------------------------------------------------------------------------------------------

WRK_LUA = """
wrk.method = "POST"
wrk.body = {body}
{headers}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  sample = ""
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if sample == "" then
      sample = "HTTP " .. status .. ": " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("non200")
    local s = thread:get("sample")
    if s ~= "" then
      io.write("BENCH_SAMPLE " .. string.gsub(s, "\\n", " ") .. "\\n")
    end
  end
  io.write(string.format("BENCH_NON200 %d\\n", total))
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def lua_string(text: str) -> str:
    """A double-quoted Lua literal: every byte that is not plain printable ASCII as a decimal escape."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def wrk_script(target: Target, directory: Path) -> Path:
    headers = "\n".join(f"wrk.headers[{lua_string(k)}] = {lua_string(v)}" for k, v in target.headers.items())
    path = directory / f"{target.name}.lua"
    path.write_text(WRK_LUA.format(body=lua_string(target.body.decode()), headers=headers))
    return path


def parse_wrk(name: str, output: str, rows: int = 1) -> Result:
    result = Result(name, rows_per_request=rows)
    found = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not found:
        raise RuntimeError(f"Cannot read wrk's output:\n{output}")
    result.requests = int(found.group(1))
    result.seconds = float(found.group(2)) * _UNITS[found.group(3)] / 1000
    for percent, attribute in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s*{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
        if match:
            setattr(result, attribute, float(match.group(1)) * _UNITS[match.group(2)])
    latency = re.search(r"^\s*Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s|m)\s", output, re.MULTILINE)
    if latency:
        result.max_ms = float(latency.group(1)) * _UNITS[latency.group(2)]
    counted = re.search(r"BENCH_NON200 (\d+)", output)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)  # wrk's own count, as a cross-check
    result.errors = max(int(counted.group(1)) if counted else 0, int(non2xx.group(1)) if non2xx else 0)
    result.requests -= min(result.requests, result.errors)  # throughput counts only the 200s
    result.error_samples = re.findall(r"BENCH_SAMPLE (.*)", output)[:MAX_ERROR_SAMPLES]
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets:  # a request that got no answer at all
        result.errors += sum(int(value) for value in sockets.groups())
        result.error_samples.append(sockets.group(0))
    return result


def run_wrk(args: list[str], timeout: float) -> str:
    """Run wrk; refuse its output unless the Lua script ran (wrk goes on with plain GETs if it fails)."""
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or done.stderr.strip() or "BENCH_NON200" not in done.stdout:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def load_wrk(target: Target, clients: int, seconds: int, warmup: int, directory: Path, pin: Pinning) -> Result:
    script = wrk_script(target, directory)
    # One event-loop thread saturates far more than these servers answer; pinned, wrk has exactly one core.
    threads = "1" if pin.load else str(max(1, min(2, clients)))
    base = [
        *pin.load,
        "wrk",
        "-t",
        threads,
        "-c",
        str(clients),
        "--timeout",
        f"{int(REQUEST_TIMEOUT)}s",
        "-s",
        str(script),
    ]
    bound = seconds + warmup + 30
    warm = (
        parse_wrk(target.name, run_wrk([*base, "-d", f"{warmup}s", target.url], bound), target.rows) if warmup else None
    )
    if warm is not None:
        # wrk drops its connections when a run ends, but the server still answers what it had read: let it
        # finish (about the slowest warm-up answer) so that the measured run does not pay for the warm-up's work.
        time.sleep(min(REQUEST_TIMEOUT, (warm.max_ms if warm.requests else warmup * 1000) / 1000))
    result = parse_wrk(target.name, run_wrk([*base, "-d", f"{seconds}s", "--latency", target.url], bound), target.rows)
    if warm is not None and warm.errors:  # answers during the warm-up must be right too
        result.errors += warm.errors
        result.error_samples = [*warm.error_samples, *result.error_samples][:MAX_ERROR_SAMPLES]
    return result


# -- load: Python clients -------------------------------------------------------------------------------


def client_loop(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    measure_from: float,
    stop_at: float,
    core: int | None = None,
) -> tuple[list[float], int, list[str]]:
    """One client: POST back to back until stop_at; keep the latencies of requests that end in the measured
    window [measure_from, stop_at] and count every answer other than 200, warm-up included. With `core`,
    the client runs on that core only.

    Times are CLOCK_MONOTONIC, which is shared by all processes of the machine.
    """
    if core is not None:
        os.sched_setaffinity(0, {core})
    latencies: list[float] = []
    errors = 0
    samples: list[str] = []
    conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT)
    while True:
        started = time.monotonic()
        if started >= stop_at:
            break
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            status = response.status
            if response.will_close:
                conn.close()  # http.client reconnects on the next request
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            status, payload = None, f"{type(exc).__name__}: {exc}".encode()
        ended = time.monotonic()
        if status == 200:
            if measure_from <= ended <= stop_at:
                latencies.append(ended - started)
        else:
            errors += 1
            if len(samples) < MAX_ERROR_SAMPLES:
                samples.append(f"HTTP {status}: {payload[:300].decode(errors='replace')}")
    conn.close()
    return latencies, errors, samples


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def load_python(target: Target, clients: int, seconds: int, warmup: int, pin: Pinning) -> Result:
    context = multiprocessing.get_context("spawn")
    slack = 1.5  # time for the client processes to start before the warm-up begins
    measure_from = time.monotonic() + slack + warmup
    stop_at = measure_from + seconds
    args = [(target.port, target.path, target.body, target.headers, measure_from, stop_at, pin.load_core)] * clients
    with context.Pool(clients) as pool:
        outcomes = pool.starmap_async(client_loop, args).get(timeout=slack + warmup + seconds + REQUEST_TIMEOUT + 30)
    latencies = sorted(value for outcome in outcomes for value in outcome[0])
    result = Result(target.name, requests=len(latencies), seconds=float(seconds), rows_per_request=target.rows)
    result.errors = sum(outcome[1] for outcome in outcomes)
    result.error_samples = [sample for outcome in outcomes for sample in outcome[2]][:MAX_ERROR_SAMPLES]
    result.p50_ms = percentile(latencies, 0.50) * 1000
    result.p99_ms = percentile(latencies, 0.99) * 1000
    return result


# -- the run --------------------------------------------------------------------------------------------


def worker_args(args: argparse.Namespace) -> list[str]:
    """The worker model, the same for both servers (on the command line, it overrides config/gunicorn.py)."""
    return ["--workers", str(args.workers), "--worker-class", args.worker_class, "--threads", str(args.threads)]


def start_faro(work: Path, user: str, port: int, args: argparse.Namespace, pin: Pinning) -> tuple[Server, str, dict]:
    var_dir, artefacts, prometheus = work / "var", work / "artefacts", work / "prometheus"
    for directory in (var_dir, artefacts, prometheus):
        directory.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
        "DATABASE_URL": f"postgres://{user}@{HOST}:5432/{BENCH_DB}",
        "REDIS_URL": REDIS_URL,
        "DJANGO_ALLOWED_HOSTS": f"{HOST},localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_DEBUG": "0",
        "FARO_VAR_DIR": str(var_dir),
        "FARO_ARTEFACT_ROOT": str(artefacts),
        "PROMETHEUS_MULTIPROC_DIR": str(prometheus),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("FARO_TASKS_EAGER", None)
    env.pop("FARO_WEB_WORKERS", None)
    log("migrate ...")
    run_checked([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], env, 300, "manage.py migrate")
    log("demo_setup (trains credit-risk in-process) ...")
    run_checked([PYTHON, "manage.py", "demo_setup"], {**env, "FARO_TASKS_EAGER": "1"}, 600, "manage.py demo_setup")
    token = (var_dir / "demo-token").read_text().strip()
    spec = champion_spec(user, artefacts)
    command = [*pin.server, PYTHON, "-m", "gunicorn", "-c", args.faro_config, "--bind", f"{HOST}:{port}"]
    server = Server("faro", [*command, *worker_args(args)], env, work / "faro.log")
    return server, token, spec


def start_baseline(work: Path, spec: dict, port: int, args: argparse.Namespace, pin: Pinning) -> Server:
    if args.baseline_scorer == "onnx" and not spec["onnx_artefact"]:
        raise RuntimeError(f"--baseline-scorer onnx, but {MODEL} v{spec['version']} has no ONNX export")
    spec_path = work / "bare-spec.json"
    spec_path.write_text(json.dumps({**spec, "scorer": args.baseline_scorer}))
    env = {**os.environ, "BENCH_BARE_SPEC": str(spec_path), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    # Faro's worker model; sync workers close the connection after every answer whatever the keep-alive.
    command = [
        *pin.server,
        PYTHON,
        "-m",
        "gunicorn",
        "--bind",
        f"{HOST}:{port}",
        *worker_args(args),
        "--keep-alive",
        "5",
        "--timeout",
        "30",
        "bench.bare_app:application",
    ]
    return Server("baseline", command, env, work / "baseline.log")


def report(result: Result) -> None:
    rows = f"  rows/s={result.rows_per_s:10.0f}" if result.rows_per_request > 1 else ""
    print(
        f"{result.name:<15} requests/s={result.rps:8.1f}{rows}  p50_ms={result.p50_ms:8.2f}  "
        f"p99_ms={result.p99_ms:8.2f}  errors={result.errors}  ({result.requests} requests in "
        f"{result.seconds:.2f} s)",
        flush=True,
    )
    for sample in result.error_samples:
        print(f"                {sample}", flush=True)


def measure(target: Target, clients: int, args: argparse.Namespace, work: Path, pin: Pinning, use_wrk: bool) -> Result:
    log(f"{target.name}: {clients} clients; 1-minute load average before the run {os.getloadavg()[0]:.2f}")
    if use_wrk:
        result = load_wrk(target, clients, args.seconds, args.warmup, work, pin)
    else:
        result = load_python(target, clients, args.seconds, args.warmup, pin)
    if result.requests == 0:
        result.errors += 1
        result.error_samples.append(f"no request was answered in the {args.seconds} s measured: measure longer")
    return result


def measure_faro(
    target: Target, clients: int, args: argparse.Namespace, work: Path, pin: Pinning, use_wrk: bool, user: str
) -> Result:
    """Measure Faro, then check that its decision log grew by at least one row per row answered."""
    before = faro_logged_predictions(user)
    result = measure(target, clients, args, work, pin, use_wrk)
    logged = faro_logged_predictions(user) - before
    answered = result.requests * target.rows
    if logged < answered:
        result.errors += 1
        result.error_samples.append(f"only {logged} predictions logged for {answered} rows answered")
    log(f"{target.name} logged {logged} predictions (warm-up included) for {answered} measured rows")
    return result


def measure_rounds(
    targets: tuple[Target, Target],
    clients: int,
    args: argparse.Namespace,
    work: Path,
    pin: Pinning,
    use_wrk: bool,
    user: str,
) -> tuple[Result, Result, float]:
    """Faro and the baseline measured in alternating rounds (faro first, then baseline first, ...), so that a
    change in the machine's speed during the run (other jobs, a noisy neighbour) falls on both. Returns
    both servers' results over all rounds and the median of the rounds' ratios (rows/s faro / baseline)."""
    faro_target, baseline_target = targets
    faro_runs: list[Result] = []
    baseline_runs: list[Result] = []
    ratios: list[float] = []
    for number in range(args.rounds):
        order = ("faro", "baseline") if number % 2 == 0 else ("baseline", "faro")
        round_results = {}
        for name in order:
            if name == "faro":
                round_results[name] = measure_faro(faro_target, clients, args, work, pin, use_wrk, user)
            else:
                round_results[name] = measure(baseline_target, clients, args, work, pin, use_wrk)
            report(round_results[name])
        faro, baseline = round_results["faro"], round_results["baseline"]
        ratio = faro.rows_per_s / baseline.rows_per_s if baseline.rows_per_s else 0.0
        log(f"round {number + 1}: faro/baseline = {ratio:.3f}")
        faro_runs.append(faro)
        baseline_runs.append(baseline)
        ratios.append(ratio)
    return combined(faro_runs), combined(baseline_runs), statistics.median(ratios)


def combined(runs: list[Result]) -> Result:
    """One result for several runs of a server: every request counted, the median p50 and p99 of the runs."""
    result = Result(
        runs[0].name,
        requests=sum(run.requests for run in runs),
        seconds=sum(run.seconds for run in runs),
        errors=sum(run.errors for run in runs),
        error_samples=[sample for run in runs for sample in run.error_samples][:MAX_ERROR_SAMPLES],
        rows_per_request=runs[0].rows_per_request,
    )
    result.p50_ms = statistics.median(run.p50_ms for run in runs)
    result.p99_ms = statistics.median(run.p99_ms for run in runs)
    return result


def benchmark(args: argparse.Namespace, work: Path, servers: list[Server], pin: Pinning) -> tuple[dict, str]:
    """Results by name (and the ratios, "ratio" and "batch ratio"), and the load generator used."""
    log(f"recreating database {BENCH_DB} ...")
    user = database_recreate()
    faro_port, baseline_port = free_port(), free_port()
    while baseline_port == faro_port:
        baseline_port = free_port()

    faro, token, spec = start_faro(work, user, faro_port, args, pin)
    servers.append(faro)
    baseline = start_baseline(work, spec, baseline_port, args, pin)
    servers.append(baseline)

    rows = request_rows(spec["feature_state"], max(1, args.batch_rows))
    json_headers = {"Content-Type": "application/json", "Accept": "application/json"}
    faro_headers = {**json_headers, "Authorization": f"Bearer {token}"}
    body = json.dumps({"inputs": rows[:1]}, separators=(",", ":")).encode()
    batch_body = json.dumps({"inputs": rows}, separators=(",", ":")).encode()
    faro_target = Target("faro", faro_port, FARO_PATH, faro_headers, body)
    baseline_target = Target("baseline", baseline_port, BASELINE_PATH, json_headers, body)
    faro_batch = Target("faro batch", faro_port, FARO_PATH, faro_headers, batch_body, len(rows))
    baseline_batch = Target("baseline batch", baseline_port, BASELINE_PATH, json_headers, batch_body, len(rows))

    wait_until(faro, lambda: http_get(faro_port, "/readyz"), "ready (/readyz)")
    wait_until(baseline, lambda: http_post(baseline_target), "answering")
    agreed = check_same_prediction(faro_target, baseline_target)
    agreed_batch = check_same_prediction(faro_batch, baseline_batch) if args.batch_seconds else "-"
    log(f"both servers are up on {HOST}:{faro_port} (faro) and {HOST}:{baseline_port} (baseline)")
    log(f"model {MODEL} v{spec['version']}; both predict {agreed}; on the {len(rows)}-row batch: {agreed_batch}")
    log(f"request body ({len(body)} bytes): {body.decode()}")
    log(f"batch body: {len(rows)} rows, {len(batch_body)} bytes")

    use_wrk = bool(args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk")))
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        raise RuntimeError("--loadgen wrk but wrk is not on PATH")
    log(
        f"load: {'wrk' if use_wrk else 'Python clients'}; {args.warmup} s warm-up + {args.seconds} s per server "
        f"and phase; {os.cpu_count()} cores, {pin.description}"
    )
    log(
        f"workers (both servers): {args.workers} x {args.worker_class}"
        + (f", {args.threads} threads" if args.worker_class == "gthread" else "")
        + f"; faro config {args.faro_config}; baseline scorer {args.baseline_scorer}"
    )
    results: dict[str, Result] = {}
    log(f"phase 1: one row per request, {args.clients} clients, {args.rounds} round(s)")
    results["faro"], results["baseline"], results["ratio"] = measure_rounds(
        (faro_target, baseline_target), args.clients, args, work, pin, use_wrk, user
    )
    if args.batch_seconds:
        batch_args = argparse.Namespace(**{**vars(args), "seconds": args.batch_seconds})
        log(f"phase 2: {len(rows)} rows per request, {args.batch_clients} clients, {args.rounds} round(s)")
        results["faro batch"], results["baseline batch"], results["batch ratio"] = measure_rounds(
            (faro_batch, baseline_batch), args.batch_clients, batch_args, work, pin, use_wrk, user
        )
    return results, "wrk" if use_wrk else "python"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds per server, single rows (10)")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds of both servers per phase (default 3)"
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, single rows (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each run (default 2)")
    parser.add_argument(
        "--batch-seconds", type=int, default=10, help="measured seconds per server, batches (10; 0 skips the phase)"
    )
    parser.add_argument("--batch-clients", type=int, default=8, help="concurrent clients, batches (default 8)")
    parser.add_argument("--batch-rows", type=int, default=BATCH_ROWS, help=f"rows per batch (default {BATCH_ROWS})")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers per server (default 2)")
    parser.add_argument(
        "--worker-class", choices=("sync", "gthread"), default="sync", help="gunicorn worker class (default sync)"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker (default 1)")
    parser.add_argument(
        "--faro-config", default="config/gunicorn.py", help="Faro's gunicorn config (default config/gunicorn.py)"
    )
    parser.add_argument(
        "--baseline-scorer",
        choices=("xgboost", "onnx"),
        default="xgboost",
        help="how the bare view scores: Booster.inplace_predict (default) or onnxruntime on the ONNX export",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin servers and load generator to cores")
    parser.add_argument(
        "--loadgen", choices=("auto", "wrk", "python"), default="auto", help="auto: wrk when on PATH, else Python"
    )
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.seconds < 1 or args.clients < 1 or args.warmup < 0 or args.batch_seconds < 0:
        parser.error("--seconds and --clients must be at least 1, --warmup and --batch-seconds at least 0")
    if args.batch_clients < 1 or args.batch_rows < 1 or args.workers < 1 or args.threads < 1:
        parser.error("--batch-clients, --batch-rows, --workers and --threads must be at least 1")
    pin = pinning_for(not args.no_pin)

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    work = Path(tempfile.mkdtemp(prefix="faro-bench-"))
    servers: list[Server] = []
    try:
        results, loadgen = benchmark(args, work, servers, pin)
    finally:
        for server in reversed(servers):
            try:
                server.stop()
            except Exception as exc:
                print(f"[bench] stopping {server.name} failed: {exc}", file=sys.stderr, flush=True)
        try:
            database_drop()
        except Exception as exc:
            print(f"[bench] dropping {BENCH_DB} failed: {exc}", file=sys.stderr, flush=True)
        shutil.rmtree(work, ignore_errors=True)

    faro, baseline = results["faro"], results["baseline"]
    ratio = results["ratio"]
    print("all rounds:", flush=True)
    for name in ("faro", "baseline", "faro batch", "baseline batch"):
        if name in results:
            report(results[name])
    line = (
        f"BENCH serving: ratio={ratio:.3f} p99_ms={faro.p99_ms:.2f} rps={faro.rps:.1f} "
        f"baseline_rps={baseline.rps:.1f} p50_ms={faro.p50_ms:.2f} baseline_p50_ms={baseline.p50_ms:.2f} "
        f"baseline_p99_ms={baseline.p99_ms:.2f}"
    )
    print(f"single row: faro/baseline requests/s = {ratio:.3f} (the median of the rounds' ratios)", flush=True)
    goals = [
        f"single-row ratio >= {GOAL_RATIO:.2f}: {verdict(ratio >= GOAL_RATIO)} ({ratio:.3f})",
        f"p99 <= {GOAL_P99_MS:g} ms at {args.clients} clients: {verdict(faro.p99_ms <= GOAL_P99_MS)} "
        f"({faro.p99_ms:.2f} ms)",
    ]
    if "faro batch" in results:
        batch, baseline_batch = results["faro batch"], results["baseline batch"]
        batch_ratio = results["batch ratio"]
        print(f"{batch.rows_per_request}-row batches: faro/baseline rows/s = {batch_ratio:.3f} (median)", flush=True)
        goals.append(
            f"batches >= {GOAL_BATCH_ROWS_PER_S / 1000:g} k rows/s: "
            f"{verdict(batch.rows_per_s >= GOAL_BATCH_ROWS_PER_S)} ({batch.rows_per_s / 1000:.1f} k)"
        )
        line += (
            f" batch_rows_per_s={batch.rows_per_s:.0f} baseline_batch_rows_per_s={baseline_batch.rows_per_s:.0f}"
            f" batch_ratio={batch_ratio:.3f} batch_p50_ms={batch.p50_ms:.1f} batch_p99_ms={batch.p99_ms:.1f}"
            f" baseline_batch_p99_ms={baseline_batch.p99_ms:.1f}"
        )
    print("goals: " + "; ".join(goals), flush=True)
    print(f"{line} loadgen={loadgen} pinned={'yes' if pin.server else 'no'}", flush=True)
    return 1 if any(result.errors for result in results.values() if isinstance(result, Result)) else 0


if __name__ == "__main__":
    sys.exit(main())
