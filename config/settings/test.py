"""Test settings: fast and isolated; PostgreSQL and Redis when DATABASE_URL and REDIS_URL are set."""

import os
import secrets
import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403
from config.settings.base import DATABASES, SQLITE_ENGINE, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
FARO_ARTEFACT_ROOT = Path(tempfile.mkdtemp(prefix="faro-test-artefacts-"))
FARO_TOKEN_CACHE_SECONDS = 0.0
FARO_ALIAS_TTL_SECONDS = 0.0
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}

if DATABASES["default"]["ENGINE"] == SQLITE_ENGINE:
    # A file rather than memory: concurrency tests need real SQLite locking across connections.
    # One file per test run, so runs side by side (a developer's and a helper's) never share a database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

if not REDIS_URL:  # noqa: F405
    CACHES = {**CACHES, "default": {"BACKEND": "django_prometheus.cache.backends.locmem.LocMemCache"}}  # noqa: F405
# Rate counters of one test run never meet another run's (nor production's) on a shared Redis.
CACHES["throttle"] = {**CACHES["throttle"], "KEY_PREFIX": f"faro-rate-test-{os.getpid()}-{secrets.token_hex(4)}"}
