"""Ingesting a 1,000,000-row CSV with Faro against a bare pyarrow baseline, on this machine.

What is measured: wall time and peak resident memory (VmHWM) for one deterministic ~200 MB CSV of
1,000,000 rows (an id, dates and a timestamp, integers, floats, categorical and free text, with empty
cells in several columns), each side in its own fresh Python process:

- baseline: `pyarrow.csv.read_csv` (whole file into memory, all cores) then
  `pyarrow.parquet.write_table(compression="zstd")`.
- faro: what a data scientist's upload costs once the HTTP body has arrived, through the real services with
  the embedded default settings (config.settings.base, a temporary SQLite database and artefact root):
  `dataset_version_create_from_upload` stages the file (copy, SHA-256, fsync), then `dataset_version_ingest`
  reads it in blocks into zstd Parquet, profiles every column, runs the dataset's checks (not_null, unique,
  range, allowed_values, regex, max_missing_fraction, row_count), stores the file under its SHA-256 and
  records the version. Django set-up and migrations happen before the clock starts.

Both clocks start after the imports, so interpreter start-up is not counted on either side. Peak RSS is
the process's VmHWM as the kernel counts it (os.wait4's ru_maxrss), so it includes Python, pyarrow and,
for Faro, Django. The Faro child also times its phases and samples VmRSS every few milliseconds to say
which phase holds the peak; the phase peaks are samples, the overall peak is exact.

The ratio faro_seconds / baseline_seconds is what Faro's extra work (streaming, profiling, checks,
checksums, the database) costs. The goals are ratio <= 2 and Faro's peak RSS < 600 MB.

Run from the repository root: `.venv/bin/python bench/ingest.py [--rows 1000000] [--profile]`.
`--profile` also runs Faro once more under cProfile and prints where the time goes. Needs nothing but
the virtualenv; everything is written under a temporary directory that is removed at the end. The last
line of output is

    BENCH ingest: ratio=<faro_seconds/baseline_seconds> peak_rss_mb=<faro peak RSS in MB>
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
ROWS = 1_000_000
CHUNK_ROWS = 100_000
SEED = 20240601
CHILD_TIMEOUT = 900.0
RSS_SAMPLE_SECONDS = 0.005
MB = 1024 * 1024
GOAL_RATIO = 2.0
GOAL_PEAK_MB = 600.0
STAGE = "stage upload (copy, sha256, fsync)"

CITIES = [f"city_{letter}" for letter in "abcdefghijklmnopqrstuvwxyz"] + ["Lisboa", "Porto", "Braga", "Faro"]
SEGMENTS = ["retail", "small_business", "corporate", "private"]
CHANNELS = ["branch", "web", "mobile", "phone", "partner"]
STATUSES = ["active", "dormant", "closed"]
NOTES = [
    "called about a late payment",
    "asked for a higher limit",
    "moved to a new address",
    "complaint resolved",
    "prefers email contact",
    "card reported lost",
]
CHECKS = [
    ("not_null", "customer_id", {}),
    ("unique", "customer_id", {}),
    ("regex", "customer_id", {"pattern": r"^CUST-\d{8}$"}),
    ("range", "age", {"min": 18, "max": 120}),
    ("allowed_values", "segment", {"values": SEGMENTS}),
    ("max_missing_fraction", "income", {"fraction": 0.2}),
    ("row_count", "", {"min": 1}),
]


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# -- the data -------------------------------------------------------------------------------------------


def _chunk(rng, start: int, rows: int):
    """`rows` customers from number `start` on: the same numbers for the same seed, chunk by chunk."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    def maybe_missing(fraction: float):
        return rng.random(rows) < fraction

    def pick(values: list[str], missing: float = 0.0):
        chosen = np.array(values, dtype=object)[rng.integers(0, len(values), rows)]
        return pa.array(chosen, pa.string(), mask=maybe_missing(missing) if missing else None)

    numbers = pc.cast(pa.array(np.arange(start, start + rows)), pa.string())
    epoch = dt.date(1970, 1, 1)
    first_day = (dt.date(2005, 1, 1) - epoch).days
    login_seconds = int((dt.datetime(2024, 1, 1) - dt.datetime(1970, 1, 1)).total_seconds())
    columns = {
        "customer_id": pc.binary_join_element_wise("CUST-", pc.utf8_lpad(numbers, 8, "0"), ""),
        "signup_date": pa.array(rng.integers(0, 6000, rows).astype("int32") + first_day, pa.date32()),
        "last_login": pa.array(
            rng.integers(0, 365 * 86400, rows) + login_seconds, pa.timestamp("s"), mask=maybe_missing(0.04)
        ),
        "age": pa.array(rng.integers(18, 91, rows), mask=maybe_missing(0.02)),
        "tenure_months": pa.array(rng.integers(0, 241, rows)),
        "n_products": pa.array(rng.integers(1, 9, rows)),
        "balance_cents": pa.array(rng.integers(-5_000_000, 2_000_000_000, rows)),
        "income": pa.array(np.round(rng.lognormal(10, 0.6, rows), 2), mask=maybe_missing(0.05)),
        "credit_limit": pa.array(np.round(rng.uniform(500, 50_000, rows), 2)),
        "utilisation": pa.array(rng.random(rows)),
        "score": pa.array(rng.normal(600, 80, rows)),
        "pd": pa.array(rng.beta(2, 20, rows), mask=maybe_missing(0.01)),
        "latitude": pa.array(np.round(rng.uniform(36.9, 42.1, rows), 6)),
        "longitude": pa.array(np.round(rng.uniform(-9.5, -6.2, rows), 6)),
        "spend_30d": pa.array(np.round(rng.exponential(300, rows), 2)),
        "city": pick(CITIES, missing=0.03),
        "segment": pick(SEGMENTS),
        "channel": pick(CHANNELS, missing=0.01),
        "status": pick(STATUSES),
        "note": pick(NOTES, missing=0.8),
        "repaid": pick(["yes", "no"]),
    }
    return pa.table(columns)


def generate_csv(path: Path, rows: int, seed: int = SEED) -> None:
    """A deterministic customer table as plain CSV: a bare header, no quotes, missing values as empty cells."""
    import numpy as np
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    first = _chunk(rng, 0, min(CHUNK_ROWS, rows))
    with open(path, "wb") as handle:
        handle.write((",".join(first.column_names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        with pacsv.CSVWriter(handle, first.schema, write_options=options) as writer:
            writer.write_table(first)
            for start in range(len(first), rows, CHUNK_ROWS):
                writer.write_table(_chunk(rng, start, min(CHUNK_ROWS, rows - start)))


# -- the children ---------------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child_baseline(csv_path: Path, result_path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    target = result_path.with_suffix(".parquet")
    started = time.perf_counter()
    table = pacsv.read_csv(csv_path)
    read = time.perf_counter() - started
    pq.write_table(table, target, compression="zstd")
    seconds = time.perf_counter() - started
    result = {
        "seconds": seconds,
        "phases": {"read_csv": read, "write_table": seconds - read},
        "rows": table.num_rows,
        "parquet_bytes": target.stat().st_size,
        "vmhwm_kb": _status_kb("VmHWM"),
    }
    target.unlink()
    result_path.write_text(json.dumps(result))


class Phases:
    """Wall time per phase, and the highest VmRSS sampled while each phase ran (a sample, not the exact peak)."""

    def __init__(self, sample: bool = True) -> None:
        self.current = "setup"
        self.seconds: dict[str, float] = {}
        self.peak_kb: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True) if sample else None
        if self._thread is not None:
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_SECONDS):
            phase, rss = self.current, _status_kb("VmRSS")
            self.peak_kb[phase] = max(self.peak_kb.get(phase, 0), rss)

    def wrap(self, module, name: str, label: str) -> None:
        original = getattr(module, name)

        def timed(*args, **kwargs):
            outer, self.current = self.current, label
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - started
                self.current = outer

        setattr(module, name, timed)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def child_faro(csv_path: Path, result_path: Path, name: str, profile: bool) -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    import django

    django.setup()
    # The imports a worker has already done, as the baseline has before its clock starts.
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.parquet  # noqa: F401
    from django.core.files import File

    from apps.data import checks, profiling, services

    dataset = services.dataset_create(
        name=name, description="Generated customers", target_column="repaid", subject_key_column="customer_id"
    )
    for kind, column, params in CHECKS:
        services.dataset_check_create(dataset=dataset, kind=kind, column=column, params=params)

    phases = Phases(sample=not profile)  # cProfile sees every thread (sys.monitoring): no sampler then
    phases.wrap(services, "_stage", STAGE)
    phases.wrap(services, "write_version", "read CSV, write Parquet")
    phases.wrap(profiling, "profile_parquet", "profile")
    phases.wrap(checks, "run_checks", "checks")
    phases.wrap(services, "artefact_write_file", "store (sha256, fsync, rename)")
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    phases.current = "rest (database, audit)"
    rss_before_kb = _status_kb("VmRSS")
    started = time.perf_counter()
    with open(csv_path, "rb") as handle:
        upload = File(handle, name="customers.csv")
        if profiler is not None:
            profiler.enable()
        version = services.dataset_version_create_from_upload(dataset=dataset, upload=upload)
        if profiler is not None:
            profiler.disable()
    seconds = time.perf_counter() - started
    phases.stop()
    accounted = sum(phases.seconds.values())
    phases.seconds["rest (database, audit)"] = seconds - accounted
    failed = [item for item in version.validation["checks"] if not item["passed"]]
    result = {
        "seconds": seconds,
        "phases": phases.seconds,
        "phase_peak_kb": phases.peak_kb,
        "rows": version.row_count,
        "schema": {column["name"]: column["type"] for column in version.schema},
        "checks": len(version.validation["checks"]),
        "failed_checks": [item["message"] for item in failed],
        "parquet_bytes": (Path(services.settings.FARO_ARTEFACT_ROOT) / version.file_path).stat().st_size,
        "rss_before_kb": rss_before_kb,
        "vmhwm_kb": _status_kb("VmHWM"),
    }
    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()  # most of the work is in pyarrow's C++: the Python callers that wait for it
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"apps/|pyarrow/(compute|parquet)", 40)
        result["profile"] = out.getvalue()
    result_path.write_text(json.dumps(result))


# -- the run --------------------------------------------------------------------------------------------


def run_child(role: str, csv_path: Path, env: dict[str, str], work: Path, name: str) -> tuple[dict, float]:
    """Run this script as a child; return its result and its peak RSS in MB as the kernel counted it."""
    result_path = work / f"{name}.json"
    output = work / f"{name}.log"
    args = [PYTHON, str(Path(__file__).resolve()), "--child", role, str(csv_path), str(result_path), name]
    with open(output, "wb") as log_file:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                process.kill()
                os.wait4(process.pid, 0)
                raise RuntimeError(f"{name} did not finish within {CHILD_TIMEOUT:.0f} s")
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0 or not result_path.exists():
        tail = output.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"{name} failed ({process.returncode}):\n{tail}")
    return json.loads(result_path.read_text()), usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


def faro_env(work: Path) -> dict[str, str]:
    var_dir, artefacts = work / "var", work / "artefacts"
    var_dir.mkdir(exist_ok=True)
    artefacts.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "FARO_VAR_DIR": str(var_dir),
        "FARO_ARTEFACT_ROOT": str(artefacts),
        "FARO_UPLOAD_MAX_BYTES": str(4 * 1024 * MB),
        "FARO_LOG_LEVEL": "WARNING",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "FARO_TASKS_EAGER"):
        env.pop(name, None)
    return env


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def print_phases(result: dict) -> None:
    peaks = result.get("phase_peak_kb", {})
    for phase, seconds in result["phases"].items():
        share = seconds / result["seconds"] * 100 if result["seconds"] else 0.0
        peak = f"  RSS sampled up to {peaks[phase] / 1024:6.1f} MB" if phase in peaks else ""
        print(f"      {phase:<36} {seconds:6.2f} s {share:5.1f} %{peak}", flush=True)


def check_faro(result: dict, rows: int) -> None:
    problems = []
    if result["rows"] != rows:
        problems.append(f"Faro's version has {result['rows']} rows, expected {rows}")
    if result["failed_checks"]:
        problems.append(f"checks failed: {result['failed_checks']}")
    if problems:
        raise RuntimeError("; ".join(problems))


def benchmark(args: argparse.Namespace, work: Path) -> tuple[float, float]:
    csv_path = work / "customers.csv"
    log(f"generating {args.rows:,} rows ...")
    started = time.perf_counter()
    generate_csv(csv_path, args.rows)
    size = csv_path.stat().st_size
    log(f"wrote {csv_path.name}: {size / MB:.1f} MB ({size:,} bytes) in {time.perf_counter() - started:.1f} s")

    env = faro_env(work)
    log("migrate (temporary SQLite database) ...")
    done = subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v0"], cwd=REPO, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py migrate failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")

    log(
        f"{args.repeat} run(s) each, alternating, on {os.cpu_count()} cores; "
        "baseline = pyarrow.csv.read_csv + pyarrow.parquet.write_table(compression='zstd'); "
        "faro = dataset_version_create_from_upload (stage, read, write, profile, checks, store, record)"
    )
    runs: dict[str, list[tuple[dict, float]]] = {"baseline": [], "faro": []}
    for index in range(1, args.repeat + 1):
        for role in ("baseline", "faro"):
            result, rss = run_child(role, csv_path, env, work, f"{role}-{index}")
            if role == "faro":
                check_faro(result, args.rows)
            elif result["rows"] != args.rows:
                raise RuntimeError(f"the baseline read {result['rows']} rows, expected {args.rows}")
            runs[role].append((result, rss))
            before = f"  RSS at start {result['rss_before_kb'] / 1024:.1f} MB" if "rss_before_kb" in result else ""
            print(
                f"  {role:<8} run {index}: {result['seconds']:6.2f} s  peak RSS {rss:6.1f} MB{before}  "
                f"Parquet {result['parquet_bytes'] / MB:.1f} MB",
                flush=True,
            )
            print_phases(result)

    faro_last = runs["faro"][-1][0]
    print(f"faro's schema: {', '.join(f'{name}:{kind}' for name, kind in faro_last['schema'].items())}", flush=True)
    print(f"faro ran {faro_last['checks']} checks, all passed", flush=True)

    if args.profile:
        log("faro once more under cProfile (slower than the measured runs) ...")
        profiled, _ = run_child("faro-profile", csv_path, env, work, "faro-profile")
        print(profiled["profile"], flush=True)

    baseline_seconds = median([result["seconds"] for result, _ in runs["baseline"]])
    faro_seconds = median([result["seconds"] for result, _ in runs["faro"]])
    baseline_rss = max(rss for _, rss in runs["baseline"])
    faro_rss = max(rss for _, rss in runs["faro"])
    staging = median([result["phases"].get(STAGE, 0.0) for result, _ in runs["faro"]])
    ratio = faro_seconds / baseline_seconds
    for role, seconds, rss in (("baseline", baseline_seconds, baseline_rss), ("faro", faro_seconds, faro_rss)):
        print(f"{role + ':':<9} median {seconds:.2f} s, peak RSS {rss:.1f} MB (the highest of its runs)", flush=True)
    print(
        f"ratio faro/baseline = {ratio:.3f} (without staging the upload: "
        f"{(faro_seconds - staging) / baseline_seconds:.3f}); goal <= {GOAL_RATIO:g}: "
        f"{'met' if ratio <= GOAL_RATIO else 'MISSED'}",
        flush=True,
    )
    verdict = "met" if faro_rss < GOAL_PEAK_MB else "MISSED"
    print(f"faro peak RSS {faro_rss:.1f} MB; goal < {GOAL_PEAK_MB:g} MB: {verdict}", flush=True)
    return ratio, faro_rss


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        role, csv_path, result_path, name = sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), sys.argv[5]
        if role == "baseline":
            child_baseline(csv_path, result_path)
        else:
            child_faro(csv_path, result_path, name, profile=role == "faro-profile")
        return 0

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows in the generated CSV (default {ROWS:,})")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side; times are medians (default 3)")
    parser.add_argument("--profile", action="store_true", help="also run Faro under cProfile and print the profile")
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    work = Path(tempfile.mkdtemp(prefix="faro-bench-ingest-"))
    try:
        ratio, peak = benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"BENCH ingest: ratio={ratio:.3f} peak_rss_mb={peak:.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
