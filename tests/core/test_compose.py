"""The Docker deployment (docker/compose.yml, docker/Dockerfile, .env.example) checked without a Docker engine:
the variables it sets are ones Faro reads, every queue has a worker, every volume is declared, the image runs
unprivileged without a compiler, and `docker-compose config` accepts the file. docker-compose is installed by
scripts/bootstrap.sh (Debian's package); without it the last test fails: it is the only check of the syntax.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from apps.monitoring.queues import queue_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
ENV_EXAMPLE = ROOT / ".env.example"
# Where Faro reads its environment: the settings, and the gunicorn configuration the image runs.
SETTINGS_FILES = [
    ROOT / "config" / "settings" / "base.py",
    ROOT / "config" / "settings" / "production.py",
    ROOT / "config" / "gunicorn.py",
]
FARO_SERVICES = ("migrate", "web", "worker", "beat")

_READS = re.compile(
    r"""(?:env_(?:str|int|float|list|bool)\(|os\.environ\.get\(|os\.environ\[|os\.getenv\()\s*["']([A-Z][A-Z0-9_]*)["']"""
)
_INTERPOLATED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[?-][^}]*)?\}")


def variables_read() -> set[str]:
    """Every environment variable the settings and config/gunicorn.py read by name."""
    return {name for path in SETTINGS_FILES for name in _READS.findall(path.read_text())}


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, separator, value = line.partition("=")
            assert separator and name == name.strip(), f".env.example: not NAME=value: {line!r}"
            pairs[name] = value
    return pairs


def interpolated() -> dict[str, str]:
    """The compose file's own ${NAME} substitutions, each with its modifier (":?message", ":-default" or "")."""
    return {name: modifier for name, modifier in _INTERPOLATED.findall(COMPOSE_FILE.read_text())}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_the_scanner_finds_the_required_production_variables():
    assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"} <= variables_read()


def test_every_variable_given_to_faro_is_one_faro_reads(compose):
    read = variables_read()
    for name in FARO_SERVICES:
        service = compose["services"][name]
        assert service["env_file"] == "../.env", name
        unknown = set(service["environment"]) - read - {"DJANGO_SETTINGS_MODULE"}
        assert not unknown, f"{name} sets variables Faro never reads: {sorted(unknown)}"


def test_every_variable_in_env_example_is_read_by_faro_or_by_the_compose_file():
    # POSTGRES_PASSWORD and GRAFANA_ADMIN_PASSWORD are the compose file's (its PostgreSQL and Grafana services,
    # and DATABASE_URL); anything else must be a variable Faro reads, or it is a typo that silently does nothing.
    unknown = set(env_example()) - variables_read() - set(interpolated())
    assert not unknown, f".env.example sets variables nothing reads: {sorted(unknown)}"


def test_env_example_sets_what_the_compose_file_requires():
    required = {name for name, modifier in interpolated().items() if modifier.startswith(":?")}
    assert required == {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD"}
    assert required <= set(env_example())
    assert len(env_example()["DJANGO_SECRET_KEY"]) >= 32  # production refuses shorter keys
    assert {"web", "localhost"} <= set(env_example()["DJANGO_ALLOWED_HOSTS"].split(","))  # scrape, health check


def test_faro_services_run_the_production_settings(compose):
    for name in FARO_SERVICES:
        service = compose["services"][name]
        assert service["environment"]["DJANGO_SETTINGS_MODULE"] == "config.settings.production", name
        assert service["build"] == {
            "context": "..",
            "dockerfile": "docker/Dockerfile",
            "args": {"FARO_CODE_VERSION": "${FARO_CODE_VERSION:-}"},
        }
    assert compose["services"]["web"]["command"][:3] == ["gunicorn", "-c", "config/gunicorn.py"]


def consumed_queues(command: list[str]) -> list[str]:
    assert command[:4] == ["celery", "-A", "config", "worker"], command
    return command[command.index("-Q") + 1].split(",")


def test_every_queue_has_a_worker(compose):
    workers = {name: s for name, s in compose["services"].items() if s.get("command", [None])[3:4] == ["worker"]}
    consumed = {queue for service in workers.values() for queue in consumed_queues(service["command"])}
    # Every task goes to Celery's default queue today (no routes): one queue, one worker service.
    assert queue_names() == ["faro"]
    assert consumed == set(queue_names())
    assert "FARO_TASK_QUEUE" not in env_example()  # the workers' -Q would have to follow it
    for service in workers.values():
        flags = service["command"]
        assert any(flag.startswith("--soft-time-limit=") for flag in flags)
        assert any(flag.startswith("--time-limit=") for flag in flags)
    beat = compose["services"]["beat"]["command"]
    assert beat[:4] == ["celery", "-A", "config", "beat"]


def test_settings_already_ack_late_and_prefetch_one():
    # The worker command does not repeat these: the settings carry them.
    base = SETTINGS_FILES[0].read_text()
    assert "CELERY_TASK_ACKS_LATE = True" in base
    assert "CELERY_WORKER_PREFETCH_MULTIPLIER = 1" in base


def test_every_volume_is_declared_and_every_mounted_file_exists(compose):
    declared = set(compose["volumes"])
    used = set()
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE_FILE.parent / source).exists(), f"{name} mounts a missing {source}"
            else:
                assert source in declared, f"{name} mounts an undeclared volume {source}"
                used.add(source)
    assert used == declared
    assert {"artefacts", "postgres-data", "prometheus-data", "grafana-data"} <= declared


def test_health_checks_and_start_order(compose):
    services = compose["services"]
    for name in ("postgres", "redis", "web"):
        assert "test" in services[name]["healthcheck"], name
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"},
        }, name
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped), one list per stage."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_the_final_image_is_slim_unprivileged_and_checks_its_health():
    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    assert final[0].split()[1] == "python:3.13-slim"
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    healthchecks = [line for line in final if line.upper().startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1 and "/healthz" in healthchecks[0]
    runs = " ".join(line for line in final if line.upper().startswith("RUN "))
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", runs), runs
    assert "collectstatic" in runs
    assert any("DJANGO_SETTINGS_MODULE=config.settings.production" in line for line in final)
    assert final[-1].startswith('CMD ["gunicorn", "-c", "config/gunicorn.py"')
    # The builder installs what scripts/bootstrap.sh installs, from the same files.
    builder = " ".join(stages[0])
    assert "-r /tmp/requirements/production.txt -c /tmp/requirements/constraints.txt" in builder


def test_docker_compose_accepts_the_file(tmp_path):
    """`docker-compose config` as an operator would run it after `cp .env.example .env`, in a copy of the files
    (the compose file reads ../.env, which a checkout does not have)."""
    docker_compose = shutil.which("docker-compose")
    if docker_compose is None:
        pytest.fail(
            "docker-compose is not installed: run scripts/bootstrap.sh (as root) or apt-get install docker-compose"
        )
    shutil.copytree(ROOT / "docker", tmp_path / "docker")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env.example")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    result = subprocess.run(
        [docker_compose, "-f", "docker/compose.yml", "--env-file", ".env.example", "config", "-q"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
