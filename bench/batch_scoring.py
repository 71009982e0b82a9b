"""Batch scoring ten million rows: Faro's job, run by a real Celery worker, against bare XGBoost
`Booster.inplace_predict` on the same rows, in one run on this machine.

Set-up, not timed: a fresh Faro in a temporary directory (SQLite, artefacts, kombu's filesystem broker,
migrated), and a generated "loans" table of --rows rows (default 10,000,000): a text subject key
`customer_id`, eight numeric columns (four of them integers, one with 2 % missing values), three text
columns (5, 10 and 3 values) and a yes/no target from a known nonlinear formula plus noise. Its first
--train-rows rows (default 200,000) are ingested as version 1 of the dataset "loans" and train a model
through Faro's training service with Faro's default depth (6), learning rate (0.1) and rounds (200), early
stopping never reached: the model Faro gives for this data, 200 trees like the reference model of the
serving measurements (PERF-NOTES.md). The ratio depends on the model: the cheaper each row's prediction,
the more reading and writing weigh. All rows are ingested as version 2: a zstd Parquet file, as every
dataset version is stored.

- faro: a batch scoring job of version 2 with that model (Parquet out, no explanations), created through
  the service and run by a real Celery worker (solo pool, one process) started for it: it reads the
  version's Parquet file a chunk at a time, reads each column as the model's input type, builds the matrix
  with the pipeline's vectorised path, predicts FARO_BATCH_THREADS chunks at once (default: one per core),
  rounds the probabilities as /predict does, and writes a zstd Parquet file with the row ids, labels and
  probabilities, then stores it under its SHA-256. Its time is the job's finished_at - started_at (what
  the job row records); its peak memory is the worker process's VmHWM (peak resident set) after the job.
- baseline: the same rows' model matrix, built with Faro's pipeline before the clock starts and held in
  memory whole, and `Booster.inplace_predict` on it in three styles: one call with nthread = every core;
  calls of FARO_BATCH_CHUNK_ROWS rows with nthread = every core; and those calls spread over one thread per
  core with nthread = 1 each (what Faro's job does, from memory). The model's own cost, with no reading,
  no writing and no memory bound. Each style is timed before and after the Faro run; the best of the six
  runs counts.

ratio = Faro's rows/s / the baseline's rows/s. The goals: ratio >= 0.5 and the worker's peak RSS <= 1 GB.
The CPU seconds of each side are printed too (the worker's from /proc, all its threads): when other
processes take the cores, XGBoost's threads wait for each other and wall times grow far more than CPU times.
A check ties the two together: every probability in Faro's file equals the baseline's raw output rounded as
/predict rounds it, and every label is the more probable class.

Run from the repository root: `.venv/bin/python bench/batch_scoring.py [--rows 10000000] [--format parquet]`.
Needs nothing but the virtualenv (and a few GB of free memory and disk for the baseline and the files).
The last line of output is

    BENCH batch_scoring: ratio=<faro rows/s / bare rows/s> peak_rss_mb=<worker peak RSS> faro_rows_per_s=<...>
    bare_rows_per_s=<...> cpu_ratio=<bare CPU s / faro CPU s> rows=<...>
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ROWS = 10_000_000
TRAIN_ROWS = 200_000
SEED = 20261201
PARAMS = {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.1, "early_stopping_rounds": 1000}
GOAL_RATIO = 0.5
GOAL_RSS_MB = 1024
CITIES = ["north", "south", "east", "west", "centre"]
PURPOSES = [f"purpose_{index}" for index in range(10)]
HOUSING = ["own", "rent", "free"]
WORKER_START_SECONDS = 120
JOB_TIMEOUT_SECONDS = 3600


def dataset(rows: int) -> pa.Table:
    """The generated loans table; the target mixes products, periodic and absolute effects of the numbers, the
    text columns and noise, so that boosting keeps finding structure for 200 rounds."""
    rng = np.random.default_rng(SEED)
    ids = pc.binary_join_element_wise(
        "C", pc.utf8_lpad(pc.cast(pa.array(np.arange(rows, dtype=np.int64)), pa.string()), 9, "0"), ""
    )
    normal = rng.normal(size=(rows, 5))
    duration = rng.integers(4, 73, rows)
    credits = rng.integers(1, 5, rows)
    tenure = rng.integers(0, 40, rows)
    codes = [rng.integers(0, len(values), rows) for values in (CITIES, PURPOSES, HOUSING)]
    score = (
        0.9 * normal[:, 0]
        + 0.6 * normal[:, 1] * normal[:, 2]
        - 0.5 * np.abs(normal[:, 3])
        + 0.6 * np.sin(2 * normal[:, 4])
        + 0.4 * np.cos(duration / 9.0)
        + 0.3 * (credits > 2) * normal[:, 0]
        + 0.02 * tenure
        + 0.5 * (codes[0] == 0)
        - 0.3 * (codes[1] % 3 == 1)
        + 0.25 * (codes[2] == 1) * normal[:, 1]
        + rng.normal(scale=0.5, size=rows)
    )

    def text(values: list[str], code: np.ndarray) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), pa.array(values)).dictionary_decode()

    return pa.table(
        {
            "customer_id": ids,
            "income": pa.array(np.round(np.exp(8 + 0.5 * normal[:, 0]), 2)),
            "age": pa.array(np.clip(np.round(45 + 14 * normal[:, 1]), 18, 90).astype(np.int64)),
            "credit_amount": pa.array(np.round(np.exp(7.5 + 0.8 * normal[:, 2]), 2)),
            "duration_months": pa.array(duration),
            "existing_credits": pa.array(credits),
            "savings": pa.array(np.round(np.exp(7 + normal[:, 3]), 2), mask=rng.random(rows) < 0.02),
            "balance": pa.array(np.round(1000 * normal[:, 4], 2)),
            "tenure_years": pa.array(tenure),
            "city": text(CITIES, codes[0]),
            "purpose": text(PURPOSES, codes[1]),
            "housing": text(HOUSING, codes[2]),
            "repaid": pa.array(np.where(score > 0.3, "yes", "no")),
        }
    )


def environment(tmp: Path, queue: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FARO_", "DJANGO_", "CELERY_")) and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{tmp / 'faro.sqlite3'}",
            "FARO_VAR_DIR": str(tmp / "var"),
            "FARO_ARTEFACT_ROOT": str(tmp / "artefacts"),
            "FARO_TASK_QUEUE": queue,
            "FARO_LOG_LEVEL": "WARNING",
            "FARO_UPLOAD_MAX_BYTES": str(64 * 2**30),  # the set-up ingests the whole table as one upload
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: Linux is needed to measure the worker's peak memory")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (every thread) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_worker(env: dict[str, str], queue: str, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel=INFO",
                "--pool=solo",
                "--concurrency=1",
                "-Q",
                queue,
                "-n",
                f"{queue}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + WORKER_START_SECONDS
    while " ready." not in log.read_text(errors="replace"):
        if worker.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the Celery worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return worker


def stop_worker(worker: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def model_matrix(pipeline, path: Path, columns: list[str], rows: int) -> np.ndarray:
    """The model's matrix of every row of `path`, built a row group at a time with Faro's pipeline."""
    from apps.predictions import batch

    matrix = np.empty((rows, len(pipeline.names)), dtype=np.float32)
    start = 0
    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=1 << 17, columns=columns):
        part = batch.model_matrix(pipeline, pa.Table.from_batches([record_batch]))
        matrix[start : start + len(part)] = part
        start += len(part)
    assert start == rows
    return matrix


def timed_predict(
    booster, matrix: np.ndarray, chunk_rows: int | None = None, threads: int = 1
) -> tuple[float, np.ndarray, float]:
    """Wall seconds, raw outputs and CPU seconds of inplace_predict over the whole matrix: one call, or one
    call per `chunk_rows` rows (slices, no copies), on `threads` threads at once."""
    started, cpu = time.perf_counter(), time.process_time()
    if chunk_rows is None:
        raw = np.asarray(booster.inplace_predict(matrix))
    else:
        parts = [matrix[start : start + chunk_rows] for start in range(0, len(matrix), chunk_rows)]
        with ThreadPoolExecutor(max_workers=threads) as pool:
            raw = np.concatenate([np.asarray(part) for part in pool.map(booster.inplace_predict, parts)])
    return time.perf_counter() - started, raw, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows to score (default {ROWS:,})")
    parser.add_argument("--train-rows", type=int, default=TRAIN_ROWS, help=f"rows to train on (default {TRAIN_ROWS:,})")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="Faro's output (parquet)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    if args.rows < 10_000 or not 1_000 <= args.train_rows <= args.rows:
        parser.error("--rows must be at least 10,000 and --train-rows between 1,000 and --rows")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the worker and the files are cleaned up
    run_id = secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix=f"faro-bench-batch-{run_id}-"))
    for sub in ("var", "artefacts", "data"):
        (tmp / sub).mkdir()
    queue = f"faro-bench-batch-{run_id}"
    env = environment(tmp, queue)
    os.environ.update(env)
    for key in ("REDIS_URL",):
        os.environ.pop(key, None)
    worker = None
    try:
        import django

        django.setup()
        import xgboost as xgb
        from django.conf import settings
        from django.core.files import File
        from django.core.management import call_command

        from apps.core.artefacts import artefact_path, artefact_read_bytes
        from apps.data.services import dataset_create, dataset_version_create_from_upload
        from apps.predictions import batch
        from apps.predictions.batch_services import batch_job_create
        from apps.predictions.models import BatchScoringJob
        from apps.registry.scoring import version_pipeline
        from apps.registry.services import registered_model_create, training_job_create, training_job_run

        call_command("migrate", verbosity=0)
        print(
            f"machine: {os.cpu_count()} cores; xgboost {xgb.__version__}, numpy {np.__version__}, "
            f"pyarrow {pa.__version__}, python {sys.version.split()[0]}; FARO_BATCH_THREADS "
            f"{settings.FARO_BATCH_THREADS}, FARO_BATCH_CHUNK_ROWS {settings.FARO_BATCH_CHUNK_ROWS:,}",
            flush=True,
        )

        started = time.perf_counter()
        table = dataset(args.rows)
        all_path, train_path = tmp / "data" / "loans.parquet", tmp / "data" / "train.parquet"
        pq.write_table(table, all_path, compression="zstd")
        pq.write_table(table.slice(0, args.train_rows), train_path, compression="zstd")
        print(
            f"data: {args.rows:,} rows x {table.num_columns} columns ({table.nbytes / 2**20:.0f} MB in arrow), "
            f"made in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        del table

        loans = dataset_create(name="loans", target_column="repaid", subject_key_column="customer_id")
        started = time.perf_counter()
        with open(train_path, "rb") as handle:
            train_version = dataset_version_create_from_upload(dataset=loans, upload=File(handle, name="train.parquet"))
        registered = registered_model_create(name="loan-risk", task_type="classification", favourable_label="yes")
        job = training_job_create(registered_model=registered, dataset_version=train_version, params=PARAMS)
        version = training_job_run(job_id=job.pk)
        assert version is not None, "training failed"
        print(
            f"model: {version} trained on {args.train_rows:,} rows in {time.perf_counter() - started:.1f} s: "
            f"{len(version_pipeline(version).names)} inputs, {version.params.get('best_iteration', 0) + 1} trees "
            f"of depth {PARAMS['max_depth']}, test AUC {version.metrics.get('auc', float('nan')):.3f}",
            flush=True,
        )
        started = time.perf_counter()
        with open(all_path, "rb") as handle:
            scored = dataset_version_create_from_upload(dataset=loans, upload=File(handle, name="loans.parquet"))
        scored_path = artefact_path(scored.file_path)
        print(
            f"input: {scored} ingested in {time.perf_counter() - started:.1f} s, {scored.row_count:,} rows, "
            f"{scored_path.stat().st_size / 2**20:.0f} MB zstd Parquet",
            flush=True,
        )

        # -- baseline: the matrix held whole, one inplace_predict on every core ----------------------------
        pipeline = version_pipeline(version)
        started = time.perf_counter()
        matrix = model_matrix(pipeline, scored_path, list(pipeline.names), scored.row_count)
        print(
            f"baseline matrix: {matrix.shape[0]:,} x {matrix.shape[1]} float32 ({matrix.nbytes / 2**20:.0f} MB), "
            f"built in {time.perf_counter() - started:.1f} s (not timed)",
            flush=True,
        )
        booster = xgb.Booster()
        booster.load_model(bytearray(artefact_read_bytes(version.artefact_path, version.artefact_sha256)))
        booster.set_param({"nthread": os.cpu_count() or 1})
        timed_predict(booster, matrix[:10_000])  # warm-up
        chunk, cores = int(settings.FARO_BATCH_CHUNK_ROWS), os.cpu_count() or 1
        single = booster.copy()
        single.set_param({"nthread": 1})
        styles = {
            f"one call, nthread {cores}": (booster, None, 1),
            f"calls of {chunk:,} rows, nthread {cores}": (booster, chunk, 1),
            f"calls of {chunk:,} rows on {cores} threads, nthread 1": (single, chunk, cores),
        }
        bare_runs = []

        def baseline_runs(matrix: np.ndarray, when: str) -> None:
            for style, (model, rows, threads) in styles.items():
                bare_runs.append(timed_predict(model, matrix, rows, threads))
                seconds, _, cpu = bare_runs[-1]
                print(
                    f"  baseline ({style}, {when}): {seconds:7.2f} s  {scored.row_count / seconds:12,.0f} rows/s  "
                    f"(cpu {cpu:.2f} s)  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )

        baseline_runs(matrix, "before")
        raw = bare_runs[0][1]

        # -- faro: the job, run by a real worker ----------------------------------------------------------
        worker = start_worker(env, queue, tmp / "worker.log")
        idle_cpu = cpu_seconds(worker.pid)
        created = time.perf_counter()
        batch_job = batch_job_create(model_version=version, dataset_version=scored, output_format=args.format)
        deadline = time.monotonic() + JOB_TIMEOUT_SECONDS
        while True:
            batch_job.refresh_from_db()
            if batch_job.is_finished:
                break
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the job did not finish:\n{(tmp / 'worker.log').read_text()[-3000:]}")
            time.sleep(0.2)
        wall = time.perf_counter() - created
        rss_mb = peak_rss_mb(worker.pid)
        faro_cpu = cpu_seconds(worker.pid) - idle_cpu
        stop_worker(worker)
        worker = None
        if batch_job.status != BatchScoringJob.Status.SUCCEEDED:
            raise SystemExit(f"the job ended {batch_job.status}: {batch_job.error}")
        faro_s = (batch_job.finished_at - batch_job.started_at).total_seconds()
        output = artefact_path(batch_job.output_path)
        print(
            f"  faro job:       {faro_s:7.2f} s  {scored.row_count / faro_s:12,.0f} rows/s  "
            f"(queued to finished {wall:.2f} s, worker cpu {faro_cpu:.2f} s); worker peak RSS {rss_mb:.0f} MB; output "
            f"{output.stat().st_size / 2**20:.0f} MB {args.format}",
            flush=True,
        )
        baseline_runs(matrix, "after")
        assert all(np.array_equal(raw, run[1]) for run in bare_runs)
        bare_cpu = min(run[2] for run in bare_runs)
        del matrix

        # -- the same scores ---------------------------------------------------------------------------
        if args.format == "parquet":
            result = pq.read_table(output, columns=["label", "probability_no", "probability_yes"])
        else:
            import pyarrow.csv as pacsv

            result = pacsv.read_csv(output).select(["label", "probability_no", "probability_yes"])
        assert result.num_rows == scored.row_count
        yes = result.column("probability_yes").to_numpy()
        no = result.column("probability_no").to_numpy()
        assert np.array_equal(yes, batch.round_half_even_6(raw.astype(np.float64)))
        assert np.array_equal(no, batch.round_half_even_6((1.0 - raw).astype(np.float64)))
        labels = np.where(raw > 1.0 - raw, "yes", "no")
        assert np.array_equal(result.column("label").to_numpy(zero_copy_only=False), labels)
        print(
            f"same scores: Faro's {result.num_rows:,} probabilities are the baseline's, rounded as /predict rounds",
            flush=True,
        )

        bare_s = min(run[0] for run in bare_runs)
        faro_rate, bare_rate = scored.row_count / faro_s, scored.row_count / bare_s
        ratio = faro_rate / bare_rate
        print(
            f"ratio faro/baseline rows/s = {ratio:.3f}; "
            f"goal >= {GOAL_RATIO}: {'met' if ratio >= GOAL_RATIO else 'MISSED'}"
        )
        print(
            f"worker peak RSS {rss_mb:.0f} MB; goal <= {GOAL_RSS_MB} MB: {'met' if rss_mb <= GOAL_RSS_MB else 'MISSED'}"
        )
        print(
            f"BENCH batch_scoring: ratio={ratio:.3f} peak_rss_mb={rss_mb:.0f} faro_rows_per_s={faro_rate:.0f} "
            f"bare_rows_per_s={bare_rate:.0f} cpu_ratio={bare_cpu / faro_cpu:.3f} rows={scored.row_count}",
            flush=True,
        )
        return 0
    finally:
        if worker is not None:
            stop_worker(worker)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
