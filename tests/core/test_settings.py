import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ["DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOWED_HOSTS"]
GOOD = {
    "DJANGO_SECRET_KEY": "x" * 50,
    "DATABASE_URL": "postgres://faro@127.0.0.1:5432/faro",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DJANGO_ALLOWED_HOSTS": "faro.example.org",
}


def start(settings: str, env: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    clean = {
        key: value
        for key, value in os.environ.items()
        if key not in REQUIRED and not key.startswith(("FARO_", "DJANGO_"))
    }
    clean.update({"DJANGO_SETTINGS_MODULE": settings, "FARO_VAR_DIR": str(tmp_path), **env})
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('started')"],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_refuses_to_start_without_its_variables(tmp_path):
    result = start("config.settings.production", {}, tmp_path)
    assert result.returncode != 0
    assert (
        "Production settings need these environment variables: DJANGO_SECRET_KEY, DATABASE_URL, REDIS_URL, "
        "DJANGO_ALLOWED_HOSTS"
    ) in result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_production_names_the_one_missing_variable(tmp_path, missing):
    env = {key: value for key, value in GOOD.items() if key != missing}
    result = start("config.settings.production", env, tmp_path)
    assert result.returncode != 0
    assert f"Production settings need these environment variables: {missing}\n" in result.stderr


def test_production_refuses_sqlite_and_short_keys(tmp_path):
    result = start("config.settings.production", {**GOOD, "DATABASE_URL": "sqlite:////tmp/x.db"}, tmp_path)
    assert "DATABASE_URL must be a PostgreSQL URL" in result.stderr
    result = start("config.settings.production", {**GOOD, "DJANGO_SECRET_KEY": "short"}, tmp_path)
    assert "DJANGO_SECRET_KEY must be at least 32 characters long" in result.stderr


def test_production_starts_with_its_variables(tmp_path):
    result = start("config.settings.production", GOOD, tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "started"), result.stderr


def test_embedded_default_needs_no_variables(tmp_path):
    result = start("config.settings.base", {}, tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "started"), result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("FARO_PREDICT_MAX_ROWS", "many", "FARO_PREDICT_MAX_ROWS='many' is not an integer"),
        ("FARO_PREDICT_MAX_ROWS", "0", "FARO_PREDICT_MAX_ROWS=0 must be at least 1"),
        ("DJANGO_DEBUG", "maybe", "DJANGO_DEBUG='maybe' is not a boolean"),
        ("FARO_ALIAS_TTL_SECONDS", "nan", "FARO_ALIAS_TTL_SECONDS='nan' is not a finite number"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL must be a sqlite:// or postgres:// URL, not mysql://"),
        ("DJANGO_ALLOWED_HOSTS", "a,,b", "DJANGO_ALLOWED_HOSTS='a,,b' has an empty item"),
    ],
)
def test_malformed_values_stop_start_up_with_the_name(tmp_path, name, value, message):
    result = start("config.settings.base", {name: value}, tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
