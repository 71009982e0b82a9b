"""An isolated, real Faro stack for end-to-end tests: gunicorn (2 workers) and a Celery worker.

Nothing here touches pytest-django's test database. The stack gets its own temporary var directory,
artefact root, Prometheus multiprocess directory and database: a fresh `faro_e2e_<random>` database on
the server of $DATABASE_URL when that is set (PostgreSQL), otherwise a SQLite file in the temporary
directory. With $REDIS_URL the worker consumes from Redis on a queue unique to this run; otherwise from
kombu's filesystem transport under the temporary var directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.support import pg_create, pg_drop, with_database

ROOT = Path(__file__).resolve().parents[2]
_VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

ALIAS_TTL_SECONDS = 0.5
POLL_SECONDS = 0.2
START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 20.0
# pid, method, path, status, the X-Model-Version response header: which web worker served what.
ACCESS_LOG_FORMAT = "%(p)s %(m)s %(U)s %(s)s %({x-model-version}o)s"


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@dataclass
class Stack:
    base_url: str
    env: dict[str, str] = field(repr=False)
    tmp_dir: Path
    logs: dict[str, Path] = field(repr=False)
    queue: str
    database: str  # "postgresql" or "sqlite"
    broker: str  # "redis" or "filesystem"
    processes: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    failed: bool = False

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def manage(self, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess:
        """Run `manage.py <args>` against this stack's database and broker."""
        return subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def log_text(self, name: str) -> str:
        try:
            return self.logs[name].read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tails(self, lines: int = 60) -> str:
        return "\n".join(f"----- {name} ({path}) -----\n{log_tail(path, lines)}" for name, path in self.logs.items())

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise AssertionError(f"The {name} process exited with {process.returncode}.\n{self.tails()}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_cleanup(redis_url: str, queue: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=5)
        # The queue, its exchange's binding tables (the default exchange is named after the queue).
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.zrem("_kombu.binding_deadlines", queue)
        client.close()
    except Exception as exc:  # best effort: an empty list and a binding set are harmless
        print(f"Could not clean Redis queue {queue}: {exc}")


def _stack_env(tmp: Path, database_url: str, redis_url: str | None, queue: str) -> dict[str, str]:
    # Start from the caller's environment without any Faro or Django settings it may carry
    # (pytest-django sets DJANGO_SETTINGS_MODULE to the test settings, for one).
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FARO_", "DJANGO_", "PROMETHEUS_", "CELERY_"))
        and key not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": database_url,
            "FARO_VAR_DIR": str(tmp / "var"),
            "FARO_ARTEFACT_ROOT": str(tmp / "artefacts"),
            "FARO_TASK_QUEUE": queue,
            "FARO_ALIAS_TTL_SECONDS": str(ALIAS_TTL_SECONDS),
            "FARO_LOG_LEVEL": "INFO",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, wait (bounded), then SIGKILL whatever is left of the group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
    # Stragglers (a gunicorn or Celery child that outlived its parent) are still in the group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        print(f"Process {process.pid} did not exit after SIGKILL")


def _wait_until(stack: Stack, what: str, ready, timeout: float = START_TIMEOUT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack.assert_running()
        if ready():
            return
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"{what} not ready within {timeout:.0f} s.\n{stack.tails()}")


def _healthy(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def spawn_worker(stack: Stack) -> subprocess.Popen:
    """Start (or restart) the stack's Celery worker: one process, solo pool, on the run's own queue."""
    run_id = stack.queue.removeprefix("faro-e2e-")
    # -Q names the queue explicitly; it equals CELERY_TASK_DEFAULT_QUEUE (FARO_TASK_QUEUE), where
    # the web and `manage.py shell` publish.
    process = _spawn(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            "--pool=solo",
            "-Q",
            stack.queue,
            "-n",
            f"faro-e2e-{run_id}-{len(stack.log_text('worker'))}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        stack.env,
        stack.logs["worker"],
    )
    stack.processes["worker"] = process
    return process


def wait_for_worker(stack: Stack, ready_lines_before: int = 0) -> None:
    _wait_until(stack, "the Celery worker", lambda: stack.log_text("worker").count(" ready.") > ready_lines_before)


@contextlib.contextmanager
def running_stack(*, extra_env: dict[str, str] | None = None, web: bool = True) -> Iterator[Stack]:
    """A fresh stack (database, broker queue, worker and, with `web`, gunicorn), torn down on exit."""
    run_id = secrets.token_hex(4)
    tmp = Path(tempfile.mkdtemp(prefix=f"faro-e2e-{run_id}-"))
    for sub in ("var", "artefacts", "prometheus", "log"):
        (tmp / sub).mkdir()

    # Only a PostgreSQL server gets a database of its own; anything else runs on a SQLite file here.
    server_url = os.environ.get("DATABASE_URL") or ""
    if not server_url.startswith(("postgres://", "postgresql://")):
        server_url = ""
    redis_url = os.environ.get("REDIS_URL") or None
    pg_name = None
    if server_url:
        pg_name = f"faro_e2e_{run_id}"
        pg_create(server_url, pg_name)
        database_url = with_database(server_url, pg_name)
    else:
        database_url = f"sqlite:///{tmp / 'faro.sqlite3'}"  # an absolute path: sqlite:////tmp/...
    queue = f"faro-e2e-{run_id}"
    env = _stack_env(tmp, database_url, redis_url, queue)
    env.update(extra_env or {})
    port = _free_port()
    logs = {
        "migrate": tmp / "log" / "migrate.log",
        "worker": tmp / "log" / "worker.log",
        "web": tmp / "log" / "web.log",
        "access": tmp / "log" / "access.log",
    }
    stack = Stack(
        base_url=f"http://127.0.0.1:{port}",
        env=env,
        tmp_dir=tmp,
        logs=logs,
        queue=queue,
        database="postgresql" if pg_name else "sqlite",
        broker="redis" if redis_url else "filesystem",
    )
    try:
        migrated = stack.manage("migrate", "--no-input", "-v1")
        logs["migrate"].write_text(migrated.stdout + migrated.stderr)
        assert migrated.returncode == 0, f"migrate failed:\n{migrated.stdout}\n{migrated.stderr}"
        spawn_worker(stack)
        if web:
            stack.processes["web"] = _spawn(
                [
                    PYTHON,
                    "-m",
                    "gunicorn",
                    "-c",
                    "config/gunicorn.py",
                    "--bind",
                    f"127.0.0.1:{port}",
                    "--workers",
                    "2",
                    "--access-logfile",
                    str(logs["access"]),
                    "--access-logformat",
                    ACCESS_LOG_FORMAT,
                    # Not the shared default (~/.gunicorn/gunicorn.ctl), which parallel stacks would fight over.
                    "--control-socket",
                    str(tmp / "gunicorn.ctl"),
                ],
                env,
                logs["web"],
            )
            _wait_until(stack, "gunicorn", lambda: _healthy(stack.base_url))
        wait_for_worker(stack)
    except BaseException:
        stack.failed = True
        print(stack.tails())
        _teardown(stack, pg_name, server_url, redis_url)
        raise
    try:
        yield stack
    except BaseException:
        stack.failed = True
        raise
    finally:
        _teardown(stack, pg_name, server_url, redis_url)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as started:
        yield started


def _teardown(stack: Stack, pg_name: str | None, server_url: str, redis_url: str | None) -> None:
    for name in ("web", "worker"):
        if name in stack.processes:
            _stop(stack.processes[name])
    if stack.failed:
        print(f"\nFaro e2e stack kept for inspection in {stack.tmp_dir}\n{stack.tails()}")
    if pg_name:
        pg_drop(server_url, pg_name)
    if redis_url:
        _redis_cleanup(redis_url, stack.queue)
    if not stack.failed:
        shutil.rmtree(stack.tmp_dir, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tails of the stack's logs to a failing test's report."""
    report = yield
    if report.failed:
        stack = getattr(item, "funcargs", {}).get("stack")
        if isinstance(stack, Stack):
            stack.failed = True
            for name, path in stack.logs.items():
                report.sections.append((f"faro {name} log (last lines)", log_tail(path)))
    return report
