"""Ingesting a million-row CSV end to end, in a fresh process, within a memory budget.

The CSV is generated here, so every statistic is known exactly. The ingestion runs in a child process on
the embedded default settings (a temporary SQLite database, var directory and artefact root), as a worker
would run it, and the child reports its own peak resident memory (VmHWM): that is what the budget bounds.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pytest

from tests.support import fresh_postgres_database

ROOT = Path(__file__).resolve().parents[2]
_VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

ROWS = 1_000_000
CHUNK_ROWS = 250_000
PEAK_RSS_LIMIT_MB = 600
CITIES = ["north", "south", "east", "west", "centre"]
FIRST_DAY = dt.date(2020, 1, 1)
DAYS = 1461  # 2020-01-01 to 2023-12-31
CHILD_TIMEOUT_SECONDS = 300

# Runs in the child: ingest the CSV through the real services and print what the version holds.
CHILD = """
import json, sys
from pathlib import Path

import django

django.setup()

import pyarrow.parquet as pq
from django.conf import settings
from django.core.files import File

from apps.data.services import dataset_check_create, dataset_create, dataset_version_create_from_upload


dataset = dataset_create(name="scale", description="A million generated rows", subject_key_column="row_id")
dataset_check_create(dataset=dataset, kind="unique", column="row_id")
dataset_check_create(dataset=dataset, kind="range", column="quantity", params={"min": -50000, "max": 50002})
dataset_check_create(dataset=dataset, kind="not_null", column="day")
dataset_check_create(dataset=dataset, kind="max_missing_fraction", column="amount", params={"fraction": 0.05})
with open(sys.argv[1], "rb") as handle:
    version = dataset_version_create_from_upload(dataset=dataset, upload=File(handle, name="scale.csv"))
stored = pq.ParquetFile(Path(settings.FARO_ARTEFACT_ROOT) / version.file_path)
with open("/proc/self/status") as status:
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({
    "row_count": version.row_count,
    "stored_rows": stored.metadata.num_rows,
    "schema": version.schema,
    "statistics": version.statistics,
    "checks": version.validation["checks"],
    "peak_rss_kb": peak_kb,
}))
"""


def columns(start: int, rows: int) -> dict[str, pa.Array]:
    """Rows start..start+rows-1, computed from the row number alone, so the expected values are exact."""
    i = np.arange(start, start + rows, dtype=np.int64)
    numbers = pc.cast(pa.array(i), pa.string())
    return {
        "row_id": pc.binary_join_element_wise("R", pc.utf8_lpad(numbers, 7, "0"), ""),
        "quantity": pa.array((i * 7919) % 100_003 - 50_000),  # 100_003 is prime: -50_000 to 50_002 all occur
        "amount": pa.array(((i * 37) % 10_007) / 8.0, mask=i % 50 == 7),  # exact in binary; every 50th empty
        "score": pa.array(np.sin(i.astype(np.float64))),
        "city": pa.array(np.array(CITIES, dtype=object)[i % len(CITIES)], pa.string(), mask=i % 40 == 3),
        "day": pa.array((i % DAYS).astype(np.int32) + (FIRST_DAY - dt.date(1970, 1, 1)).days, pa.date32()),
        "flag": pa.array(i % 3 == 0),
    }


def write_csv(path: Path) -> None:
    """A bare header and unquoted values; a missing value is an empty cell."""
    with open(path, "wb") as handle:
        handle.write(b"row_id,quantity,amount,score,city,day,flag\n")
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        writer = None
        for start in range(0, ROWS, CHUNK_ROWS):
            table = pa.table(columns(start, min(CHUNK_ROWS, ROWS - start)))
            if writer is None:
                writer = pacsv.CSVWriter(handle, table.schema, write_options=options)
            writer.write_table(table)
        writer.close()


def ingest_in_child(csv_path: Path, work: Path) -> dict:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "FARO_VAR_DIR": str(work / "var"),
        "FARO_ARTEFACT_ROOT": str(work / "artefacts"),
        "FARO_UPLOAD_MAX_BYTES": str(1024 * 1024 * 1024),
        "FARO_LOG_LEVEL": "WARNING",
    }
    for name in ("DATABASE_URL", "REDIS_URL", "FARO_TASKS_EAGER"):
        env.pop(name, None)
    server = os.environ.get("DATABASE_URL", "")
    if server.startswith(("postgres://", "postgresql://")):  # the same database engine as the rest of the run
        with fresh_postgres_database(server, "faro_scale") as url:
            return _run_child(csv_path, {**env, "DATABASE_URL": url})
    return _run_child(csv_path, env)  # the embedded default: SQLite on disk


def _run_child(csv_path: Path, env: dict[str, str]) -> dict:
    for args in ([PYTHON, "manage.py", "migrate", "--no-input", "-v0"], [PYTHON, "-c", CHILD, str(csv_path)]):
        done = subprocess.run(
            args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=False
        )
        assert done.returncode == 0, f"{args[1]} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_million_rows_are_ingested_exactly_within_the_memory_budget(tmp_path):
    csv_path = tmp_path / "scale.csv"
    write_csv(csv_path)
    assert csv_path.stat().st_size > 40 * 1024 * 1024

    report = ingest_in_child(csv_path, tmp_path)

    assert report["row_count"] == ROWS
    assert report["stored_rows"] == ROWS
    assert [(column["name"], column["type"], column["nullable"]) for column in report["schema"]] == [
        ("row_id", "string", False),
        ("quantity", "integer", False),
        ("amount", "float", True),
        ("score", "float", False),
        ("city", "string", True),
        ("day", "datetime", False),
        ("flag", "boolean", False),
    ]
    stats = report["statistics"]
    assert {name: stats[name]["count"] for name in stats} == dict.fromkeys(stats, ROWS)
    assert stats["row_id"]["distinct"] == ROWS
    assert stats["row_id"]["missing"] == 0
    assert (stats["quantity"]["min"], stats["quantity"]["max"]) == (-50_000, 50_002)
    assert stats["quantity"]["distinct"] == 100_003
    assert stats["amount"]["missing"] == ROWS // 50  # the empty cells, and only those
    assert (stats["amount"]["min"], stats["amount"]["max"]) == (0.0, 10_006 / 8)
    assert stats["score"]["missing"] == 0
    sines = np.sin(np.arange(ROWS, dtype=np.float64))  # as written: the CSV holds each double's shortest repr
    assert (stats["score"]["min"], stats["score"]["max"]) == (float(sines.min()), float(sines.max()))
    assert stats["city"]["missing"] == ROWS // 40
    assert stats["city"]["distinct"] == len(CITIES)
    assert {item["value"] for item in stats["city"]["top"]} == set(CITIES)
    assert (stats["day"]["min"], stats["day"]["max"]) == ("2020-01-01", "2023-12-31")
    assert (stats["flag"]["true"], stats["flag"]["false"]) == ((ROWS + 2) // 3, ROWS - (ROWS + 2) // 3)
    assert [check["kind"] for check in report["checks"] if not check["passed"]] == []
    assert len(report["checks"]) == 4

    peak_mb = report["peak_rss_kb"] / 1024
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"ingesting {ROWS:,} rows peaked at {peak_mb:.0f} MB of resident memory"
