"""Erasing one data subject from ten dataset versions of a million rows each and from a million-row decision log.

Set-up, not timed (its duration is printed): a fresh Faro in a temporary directory (settings
config.settings.base, artefacts and SQLite there, migrated; DATABASE_URL is honoured when set, see below), and
generated data (numpy's default_rng, seed 20261207, so every run sees the same rows):

- a dataset "applicants" with subject_key_column "applicant_id" and --versions versions (default 10) of --rows
  rows each (default 1,000,000): 12 columns, the id ("A0000001"), a date, integers, floats with missing values,
  text categories and the yes/no target. Ids are drawn, with repeats, from a space of 3 x --rows applicants;
  the subject ("A0000042") is planted 1 to 3 times in every version at scattered positions. Each version is
  written as ingestion writes one (`apps.data.ingest.parquet_writer`: zstd, dictionaries for text, row groups
  of `ROW_GROUP_ROWS` rows), profiled with `profile_parquet`, stored with `artefact_write_file` and recorded
  as a `DatasetVersion` row directly, with its schema as ingestion records it (an ingest of ten million rows
  would be the set-up's whole time);
- a tiny model: a 1,000-row sample of version 1 (without the id) ingested as the dataset "applicants-sample"
  (no subject key) and trained through the real training service;
- the decision log: --decisions `PredictionRecord` rows (default --rows) on that model version, written with
  the product's own writer (`apps.predictions.decision_log.decisions_write`: an executemany on SQLite, COPY on
  PostgreSQL) in requests of 1,000 rows a minute apart; on the busy bench machine bulk_create took 322 s for a
  million rows on SQLite, this 88-99 s. Their subject ids come from the same id space, 5 % are anonymous, 10 %
  carry feedback, and 20 of them are the subject's;
- a data protection officer holding `governance.handle_subjectrequest`, who records the erasure request and
  its identity check.

Timed: from `subject_request_carry_out` (which plans the ledger: one step per store target) to the end of
`erasure_run`, called in this process as the Celery worker would call it (the task the carry-out queues goes to
the temporary filesystem broker and is never consumed). Every registered store's steps run: each dataset
version is read for the subject's rows, rewritten without them, stored under its new SHA-256 and profiled
again; the decision log's rows are deleted; the other stores (online features, review cases, batch outputs,
requests) find nothing. Printed: each step of the receipt (`request.receipt["stores"]`: store, target, rows
removed, finished_at - started_at), the totals per store, the time outside the steps (planning, leases, the
second planning round, the receipt and journal), where the dataset steps' time goes (find the rows, rewrite,
store, profile, the rest), the queries the run made, and the peak RSS of the erasure (VmHWM, reset before the
clock starts) and of the whole process. Afterwards every version is read back (no row with the subject's key,
row counts as expected, the replaced files gone) and the decision log counted: "verified".

The goal is seconds <= 60 on the 2-core machine. `--profile` runs the timed part under cProfile (slower) and
prints where the time goes.

With DATABASE_URL set (e.g. postgres://postgres@127.0.0.1:5432/faro_bench_erasure, a database made for it with
createdb) that database is migrated and used; it must hold no datasets, decisions or requests, and it is
emptied again (`flush`) at the end. Artefacts always go to the temporary directory, removed at the end.

Run from the repository root: `.venv/bin/python bench/erasure.py [--rows 1000000] [--versions 10]
[--decisions N] [--profile]`; `--rows 20000 --versions 2` is a run of a few seconds. The last line is

    BENCH erasure: seconds=<total> versions=<n> rows_per_version=<n> decisions=<n> removed=<n>
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ROWS = 1_000_000
VERSIONS = 10
SEED = 20261207
SUBJECT_NUMBER = 42
SUBJECT_DECISIONS = 20
SAMPLE_ROWS = 1_000
REQUEST_ROWS = 1_000
GOAL_SECONDS = 60.0
TABLE = re.compile(r'(?:FROM|UPDATE|INTO)\s+("?\w+"?)', re.IGNORECASE)
SMALL_PARAMS = {"n_estimators": 20, "max_depth": 3, "early_stopping_rounds": 5}
CITIES = [f"city_{index:02d}" for index in range(30)]
EMPLOYMENT = ["employed", "self_employed", "unemployed", "student", "retired"]
PURPOSES = ["car", "furniture", "education", "business", "repairs", "holiday", "medical", "other", "tv", "home"]


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def applicant_ids(numbers: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise("A", pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), 7, "0"), "")


SUBJECT = f"A{SUBJECT_NUMBER:07d}"


def other_numbers(rng: np.random.Generator, count: int, space: int) -> np.ndarray:
    """Applicant numbers in 1..space, never the subject's."""
    numbers = rng.integers(1, space, count)  # 1..space-1, then the subject's number and above move up by one
    return numbers + (numbers >= SUBJECT_NUMBER)


def applicants(rows: int, number: int) -> tuple[pa.Table, list[int]]:
    """Version `number` of the applicants table, and the positions where the subject was planted."""
    rng = np.random.default_rng([SEED, number])
    ids = other_numbers(rng, rows, 3 * rows)
    planted = sorted(int(p) for p in rng.choice(rows, size=min(rows, int(rng.integers(1, 4))), replace=False))
    ids[planted] = SUBJECT_NUMBER
    income = np.round(rng.lognormal(10, 0.6, rows), 2)
    score = rng.normal(600, 80, rows)

    def pick(values: list[str], missing: float = 0.0) -> pa.Array:
        codes = pa.array(rng.integers(0, len(values), rows).astype(np.int32))
        text = pa.DictionaryArray.from_arrays(codes, pa.array(values)).dictionary_decode()
        return pc.if_else(pa.array(rng.random(rows) < missing), pa.scalar(None, pa.string()), text) if missing else text

    first_day = (np.datetime64("2020-01-01") - np.datetime64("1970-01-01")).astype(int)
    table = pa.table(
        {
            "applicant_id": applicant_ids(ids),
            "applied_on": pa.array((rng.integers(0, 1500, rows) + first_day).astype(np.int32), pa.date32()),
            "age": pa.array(rng.integers(18, 81, rows)),
            "income": pa.array(income, mask=rng.random(rows) < 0.03),
            "loan_amount": pa.array(np.round(rng.lognormal(8.5, 0.8, rows), 2)),
            "duration_months": pa.array(rng.integers(6, 73, rows)),
            "existing_credits": pa.array(rng.integers(0, 5, rows)),
            "credit_score": pa.array(score),
            "city": pick(CITIES),
            "employment": pick(EMPLOYMENT, missing=0.02),
            "purpose": pick(PURPOSES),
            "repaid": pa.array(np.where(score / 800 + income / 200_000 + rng.normal(0, 0.1, rows) > 0.9, "yes", "no")),
        }
    )
    return table, planted


# -- set-up ---------------------------------------------------------------------------------------------------


def environment(tmp: Path) -> bool:
    """Point Faro at the temporary directory (keeping DATABASE_URL when set); True when DATABASE_URL was set."""
    database_url = os.environ.get("DATABASE_URL", "")
    for key in list(os.environ):
        if key.startswith(("FARO_", "DJANGO_", "CELERY_")) or key in ("REDIS_URL", "DATABASE_URL"):
            del os.environ[key]  # nothing of the developer's: no journal, broker, Redis or secret of theirs
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "FARO_VAR_DIR": str(tmp / "var"),
            "FARO_ARTEFACT_ROOT": str(tmp / "artefacts"),
            "FARO_LOG_LEVEL": "WARNING",
            "FARO_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        }
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    return bool(database_url)


def refuse_unless_empty() -> None:
    from apps.data.models import Dataset
    from apps.governance.models import DataSubjectRequest
    from apps.predictions.models import PredictionRecord

    if Dataset.objects.exists() or PredictionRecord.objects.exists() or DataSubjectRequest.objects.exists():
        raise SystemExit(
            "DATABASE_URL names a database that already holds datasets, decisions or requests; point it at an "
            "empty database made for the bench (createdb faro_bench_erasure): it is emptied at the end."
        )


def version_create(dataset: Any, table: pa.Table, number: int, parent: Any) -> Any:
    """Store `table` as ingestion stores a version and record it (what dataset_version_ingest records)."""
    from apps.core.artefacts import artefact_path, artefact_temp_path, artefact_write_file
    from apps.data.ingest import ROW_GROUP_ROWS, arrow_schema_to_list, parquet_writer
    from apps.data.models import DatasetVersion
    from apps.data.profiling import profile_parquet

    temp = artefact_temp_path("datasets", ".parquet")
    try:
        writer = parquet_writer(temp, table.schema)
        try:
            for start in range(0, table.num_rows, ROW_GROUP_ROWS):
                writer.write_table(table.slice(start, ROW_GROUP_ROWS))
        finally:
            writer.close()
        statistics = profile_parquet(temp)
        relative, digest = artefact_write_file("datasets", ".parquet", temp)
    finally:
        temp.unlink(missing_ok=True)
    nullable = {name: table.column(name).null_count > 0 for name in table.column_names}
    return DatasetVersion.objects.create(
        dataset=dataset,
        number=number,
        parent=parent,
        mode=DatasetVersion.Mode.REPLACE,
        source_format="parquet",
        file_path=relative,
        sha256=digest,
        original_name=f"applicants-{number}.parquet",
        original_sha256=digest,
        row_count=table.num_rows,
        schema=arrow_schema_to_list(pq.read_schema(artefact_path(relative)), nullable),
        statistics=statistics,
        validation={"schema_changes": None, "checks": [], "source": {"format": "parquet"}},
    )


def model_version_train(sample: pa.Table, tmp: Path) -> Any:
    """A tiny model trained through the real services on a sample (without the id) in its own dataset."""
    from django.core.files import File

    from apps.data.services import dataset_create, dataset_version_create_from_upload
    from apps.registry.models import TrainingJob
    from apps.registry.services import registered_model_create, training_job_create, training_job_run

    path = tmp / "sample.parquet"
    pq.write_table(sample.drop_columns(["applicant_id"]), path, compression="zstd")
    dataset = dataset_create(name="applicants-sample", description="A sample to train on", target_column="repaid")
    with open(path, "rb") as handle:
        version = dataset_version_create_from_upload(dataset=dataset, upload=File(handle, name="sample.parquet"))
    registered = registered_model_create(name="applicant-risk", task_type="classification", favourable_label="yes")
    job = training_job_create(registered_model=registered, dataset_version=version, params=SMALL_PARAMS)
    trained = training_job_run(job_id=job.pk) or TrainingJob.objects.get(pk=job.pk).model_version
    if trained is None:
        raise SystemExit(f"training failed: {TrainingJob.objects.get(pk=job.pk).error}")
    return trained


def decision_log_write(count: int, rows: int, model_version_id: int) -> int:
    """Write the decision log through the product's writer (`decisions_write`, what every prediction goes
    through), in requests of REQUEST_ROWS rows a minute apart, then give every tenth row feedback. Returns how
    many of the records are the subject's (SUBJECT_DECISIONS, at scattered positions)."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.predictions.decision_log import Decision, decisions_write
    from apps.predictions.models import PredictionRecord

    rng = np.random.default_rng([SEED, 0])
    theirs = set(rng.choice(count, size=min(count, SUBJECT_DECISIONS), replace=False).tolist())
    requests = -(-count // REQUEST_ROWS)
    now = timezone.now()
    for request in range(requests):
        start = request * REQUEST_ROWS
        size = min(REQUEST_ROWS, count - start)
        ids = applicant_ids(other_numbers(rng, size, 3 * rows)).to_pylist()
        anonymous = (rng.random(size) < 0.05).tolist()
        ages = rng.integers(18, 81, size).tolist()
        incomes = np.round(rng.lognormal(10, 0.6, size), 2).tolist()
        amounts = np.round(rng.lognormal(8.5, 0.8, size), 2).tolist()
        months = rng.integers(6, 73, size).tolist()
        cities = rng.integers(0, len(CITIES), size).tolist()
        purposes = rng.integers(0, len(PURPOSES), size).tolist()
        yes = np.round(rng.random(size), 6).tolist()
        decisions = [
            Decision(
                row=index,
                subject_id=SUBJECT if start + index in theirs else ("" if anonymous[index] else ids[index]),
                inputs={
                    "age": ages[index],
                    "income": incomes[index],
                    "loan_amount": amounts[index],
                    "duration_months": months[index],
                    "city": CITIES[cities[index]],
                    "purpose": PURPOSES[purposes[index]],
                },
                output={
                    "label": "yes" if yes[index] >= 0.5 else "no",
                    "probabilities": {"no": round(1 - yes[index], 6), "yes": yes[index]},
                },
            )
            for index in range(size)
        ]
        decisions_write(
            decisions,
            request_id=uuid.uuid4(),
            model_version_id=model_version_id,
            route=PredictionRecord.Route.CHAMPION,
            channel=PredictionRecord.Channel.API,
            client="token:1",
            latency_ms=round(float(rng.uniform(5, 50)), 3),
            created_at=now - timedelta(minutes=requests - request),
        )
    PredictionRecord.objects.filter(row__in=range(3, REQUEST_ROWS, 10)).update(actual="yes", actual_at=now)
    return len(theirs)


def dpo_create() -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission

    user = get_user_model().objects.create_user("dpo", password=uuid.uuid4().hex, is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="governance", codename="handle_subjectrequest")
    )
    return get_user_model().objects.get(pk=user.pk)  # a fresh instance: no stale permission cache


# -- measuring ------------------------------------------------------------------------------------------------


def status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def peak_reset() -> bool:
    """Reset this process's VmHWM (Linux: `5` to clear_refs), so the next reading is the timed part's peak."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


class Phases:
    """Wall time per wrapped function, exclusive of the wrapped functions it calls."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._stack: list[float] = []
        self._originals: list[tuple[Any, str, Any]] = []

    def wrap(self, module: Any, name: str, label: str) -> None:
        original = getattr(module, name)
        self.seconds.setdefault(label, 0.0)

        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append(0.0)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                inner = self._stack.pop()
                self.seconds[label] += elapsed - inner
                self.calls[label] = self.calls.get(label, 0) + 1
                if self._stack:
                    self._stack[-1] += elapsed

        self._originals.append((module, name, original))
        setattr(module, name, timed)

    def restore(self) -> None:
        for module, name, original in reversed(self._originals):
            setattr(module, name, original)
        self._originals.clear()


class Queries:
    """Every query's wall time during the timed part, by the statement's first words."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.count: dict[str, int] = {}

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            verb = sql.split(None, 1)[0].upper() if sql.strip() else "?"
            table = TABLE.search(sql)
            key = f"{verb} {table.group(1).strip(chr(34)) if table else ''}".strip()
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - started
            self.count[key] = self.count.get(key, 0) + 1


def step_seconds(step: dict[str, Any]) -> float:
    from datetime import datetime

    if not step.get("started_at") or not step.get("finished_at"):
        return 0.0
    return (datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(step["started_at"])).total_seconds()


# -- the run --------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, tmp: Path) -> tuple[float, int, int]:
    from django.db import connection

    from apps.core import personal_data
    from apps.core.artefacts import artefact_path
    from apps.data import personal_data as data_personal_data
    from apps.data import profiling
    from apps.data.models import DatasetVersion
    from apps.data.services import dataset_create
    from apps.governance.privacy import (
        erasure_run,
        subject_request_carry_out,
        subject_request_create,
        subject_request_verify,
    )
    from apps.predictions.models import PredictionRecord

    stores = [handler.store for handler in personal_data.handlers()]
    log(
        f"{os.cpu_count()} cores; {connection.vendor} database; pyarrow {pa.__version__}; "
        f"stores registered: {', '.join(stores)}"
    )
    if "predictions.decision_log" not in stores:
        log("no decision log handler is registered: its rows are written but only the stores above are measured")

    # -- set-up ---------------------------------------------------------------------------------------------
    setup_started = time.perf_counter()
    applicants_dataset = dataset_create(
        name="applicants",
        description="Generated loan applicants",
        target_column="repaid",
        subject_key_column="applicant_id",
    )
    planted: dict[int, int] = {}
    rows: dict[int, int] = {}
    sample = None
    parent = None
    for number in range(1, args.versions + 1):
        started = time.perf_counter()
        table, positions = applicants(args.rows, number)
        if sample is None:
            sample = table.slice(0, min(SAMPLE_ROWS, table.num_rows))
        parent = version_create(applicants_dataset, table, number, parent)
        planted[parent.pk], rows[parent.pk] = len(positions), table.num_rows
        size = artefact_path(parent.file_path).stat().st_size
        groups = pq.ParquetFile(artefact_path(parent.file_path)).metadata.num_row_groups
        log(
            f"applicants v{number}: {table.num_rows:,} rows x {table.num_columns} columns, {groups} row groups, "
            f"{size / 2**20:.1f} MB; the subject at rows {positions} ({time.perf_counter() - started:.1f} s)"
        )
        del table
    started = time.perf_counter()
    model_version = model_version_train(sample, tmp)
    log(f"model: {model_version} trained on {sample.num_rows:,} sampled rows in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    subject_decisions = decision_log_write(args.decisions, args.rows, model_version.pk)
    written = PredictionRecord.objects.count()
    elapsed = time.perf_counter() - started
    log(f"decision log: {written:,} records ({subject_decisions} the subject's) in {elapsed:.1f} s")
    dpo = dpo_create()
    request, _token = subject_request_create(
        kind="erasure", subject_id=SUBJECT, contact="applicant@example.org", details="Erase me.", actor=dpo
    )
    request = subject_request_verify(request=request, actor=dpo, method="Signed letter, ID document checked")
    setup_seconds = time.perf_counter() - setup_started
    log(f"set-up took {setup_seconds:.1f} s (not timed)")
    old_paths = {
        pk: path
        for pk, path in DatasetVersion.objects.filter(dataset=applicants_dataset).values_list("pk", "file_path")
    }

    # -- timed ----------------------------------------------------------------------------------------------
    phases = Phases()
    phases.wrap(data_personal_data, "_positions", "find the subject's rows (key column)")
    phases.wrap(data_personal_data, "_rewrite", "rewrite without them (read, filter, zstd write)")
    phases.wrap(data_personal_data, "artefact_write_file", "store the new file (sha256, fsync, rename)")
    phases.wrap(profiling, "profile_parquet", "profile the new file (statistics)")
    queries = Queries()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    process_peak_before_kb = status_kb("VmHWM")
    reset = peak_reset()
    rss_start_kb = status_kb("VmRSS")
    load_before = os.getloadavg()[0]
    cpu_started = time.process_time()
    with connection.execute_wrapper(queries):
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        request = subject_request_carry_out(request=request, actor=dpo)
        planned = time.perf_counter()
        done = erasure_run(request_id=request.pk)
        if profiler is not None:
            profiler.disable()
        seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    erasure_peak_kb = status_kb("VmHWM")
    load_after = os.getloadavg()[0]
    phases.restore()
    if done is None:
        raise SystemExit("erasure_run did not take the request (a lease held elsewhere?)")

    # -- the receipt ----------------------------------------------------------------------------------------
    receipt = done.receipt
    steps = receipt["stores"]
    print(f"\nreceipt of request {done.pk} ({done.status}): {len(steps)} steps", flush=True)
    print(f"  {'store':<28} {'target':<8} {'removed':>8} {'seconds':>8}  detail", flush=True)
    per_store: dict[str, list[float]] = {}
    for step in steps:
        step_s = step_seconds(step)
        totals = per_store.setdefault(step["store"], [0, 0, 0.0])
        totals[0] += 1
        totals[1] += step["removed"]
        totals[2] += step_s
        detail = step.get("detail", {})
        shown = detail.get("version") or ", ".join(f"{k}={v}" for k, v in detail.items())
        print(f"  {step['store']:<28} {step['target']:<8} {step['removed']:>8,} {step_s:>8.2f}  {shown}", flush=True)
    print(f"\n  {'store':<28} {'steps':>5} {'removed':>8} {'seconds':>8}", flush=True)
    for store, (count, removed, store_s) in per_store.items():
        print(f"  {store:<28} {count:>5} {removed:>8,} {store_s:>8.2f}", flush=True)
    in_steps = sum(total[2] for total in per_store.values())
    print(
        f"  {'outside the steps':<28} {'':>5} {'':>8} {seconds - in_steps:>8.2f}  "
        f"(carry-out and planning {planned - started:.2f} s; leases, second planning round, receipt, journal)",
        flush=True,
    )
    print(f"  {'total':<28} {len(steps):>5} {receipt['removed']:>8,} {seconds:>8.2f}  (CPU {cpu_seconds:.2f} s)")

    dataset_s = per_store.get("data.dataset_version", [0, 0, 0.0])[2]
    print("\nwhere the dataset steps' time goes (wall, exclusive):", flush=True)
    for label, label_s in phases.seconds.items():
        share = label_s / dataset_s * 100 if dataset_s else 0.0
        print(f"  {label:<52} {label_s:7.2f} s {share:5.1f} %  ({phases.calls.get(label, 0)} calls)", flush=True)
    rest = dataset_s - sum(phases.seconds.values())
    share = rest / dataset_s * 100 if dataset_s else 0.0
    print(f"  {'the rest (database, audit, signal, old file removal)':<52} {rest:7.2f} s {share:5.1f} %", flush=True)
    top = sorted(queries.seconds.items(), key=lambda item: -item[1])[:6]
    print(
        f"queries: {sum(queries.count.values()):,} taking {sum(queries.seconds.values()):.2f} s; the slowest kinds: "
        + "; ".join(f"{key} x{queries.count[key]} {key_s:.2f} s" for key, key_s in top),
        flush=True,
    )
    whole_peak_mb = max(process_peak_before_kb, erasure_peak_kb) / 1024
    erasure_peak = (
        f"{erasure_peak_kb / 1024:.0f} MB (from {rss_start_kb / 1024:.0f} MB resident when the clock started, "
        f"+{(erasure_peak_kb - rss_start_kb) / 1024:.0f} MB)"
        if reset
        else "not measurable (no clear_refs)"
    )
    print(f"peak RSS: erasure {erasure_peak}; whole process (set-up included) {whole_peak_mb:.0f} MB", flush=True)
    print(
        f"load average (1 min) {load_before:.2f} when the clock started, {load_after:.2f} when it stopped, on "
        f"{os.cpu_count()} cores: wall time grows with other processes' load, CPU time much less",
        flush=True,
    )

    if profiler is not None:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(r"apps/", 30)
        print(out.getvalue(), flush=True)

    # -- verification ---------------------------------------------------------------------------------------
    problems = []
    removed_rows = sum(step["removed"] for step in steps if step["store"] == "data.dataset_version")
    if "data.dataset_version" in per_store and removed_rows != sum(planted.values()):
        problems.append(f"the receipt says {removed_rows} dataset rows removed; {sum(planted.values())} were planted")
    for version in DatasetVersion.objects.filter(dataset=applicants_dataset).order_by("number"):
        path = artefact_path(version.file_path)
        key = pq.read_table(path, columns=["applicant_id"]).column(0)
        left = pc.sum(pc.equal(key, SUBJECT)).as_py() or 0
        expected = rows[version.pk] - planted[version.pk]
        if left or key.length() != expected or version.row_count != expected:
            problems.append(
                f"v{version.number}: {left} subject rows left, {key.length():,} rows, {expected:,} expected"
            )
        if version.file_path != old_paths[version.pk] and artefact_path(old_paths[version.pk]).exists():
            problems.append(f"v{version.number}: the replaced file {old_paths[version.pk]} is still there")
    left_decisions = PredictionRecord.objects.filter(subject_id=SUBJECT).count()
    if left_decisions:
        problems.append(f"{left_decisions} of the subject's decisions are left")
    if PredictionRecord.objects.count() != written - subject_decisions:
        problems.append(f"{PredictionRecord.objects.count():,} decisions left of {written:,} - {subject_decisions}")
    if done.status != done.Status.COMPLETED or done.subject_id:
        problems.append(f"the request is {done.status} and still holds the key: {bool(done.subject_id)}")
    if problems:
        raise SystemExit("verification failed:\n  " + "\n  ".join(problems))
    print(
        f"verified: no row of {SUBJECT} in any of the {args.versions} versions (each read back), "
        f"{written - subject_decisions:,} decisions left and none of theirs",
        flush=True,
    )
    verdict = "met" if seconds <= GOAL_SECONDS else "MISSED"
    profiled = " (under cProfile)" if profiler is not None else ""
    print(f"erasure took {seconds:.1f} s{profiled}; goal <= {GOAL_SECONDS:g} s: {verdict}", flush=True)
    return seconds, written, receipt["removed"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows per dataset version (default {ROWS:,})")
    parser.add_argument("--versions", type=int, default=VERSIONS, help=f"dataset versions (default {VERSIONS})")
    parser.add_argument("--decisions", type=int, default=None, help="decision log records (default: --rows)")
    parser.add_argument("--profile", action="store_true", help="run the timed part under cProfile and print it")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    args.decisions = args.rows if args.decisions is None else args.decisions
    if args.rows < 100 or args.versions < 1 or args.decisions < SUBJECT_DECISIONS:
        parser.error(f"--rows must be at least 100, --versions 1 and --decisions {SUBJECT_DECISIONS}")

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the temporary directory is removed
    tmp = Path(tempfile.mkdtemp(prefix="faro-bench-erasure-"))
    (tmp / "var").mkdir()
    (tmp / "artefacts").mkdir()
    own_database = environment(tmp)
    emptied = False
    try:
        import django

        django.setup()
        from django.core.management import call_command

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        log(f"migrated in {time.perf_counter() - started:.1f} s")
        if own_database:
            refuse_unless_empty()
            emptied = True
        seconds, decisions, removed = run(args, tmp)
    finally:
        if emptied:
            from django.core.management import call_command

            with contextlib.suppress(Exception):
                call_command("flush", interactive=False, verbosity=0)
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"BENCH erasure: seconds={seconds:.1f} versions={args.versions} rows_per_version={args.rows} "
        f"decisions={decisions} removed={removed}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
