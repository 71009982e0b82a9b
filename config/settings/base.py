"""Settings of the embedded default: runs with zero environment variables.

SQLite, artefacts on the local filesystem, a Celery broker on the filesystem (kombu's filesystem
transport) consumed by a real worker process. Setting DATABASE_URL (PostgreSQL) and REDIS_URL switches
the database, the broker and the cache to those servers.
"""

import os
import re
import secrets
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from config.settings.env import SQLITE_ENGINE, database_config, env_bool, env_float, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("FARO_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _local_secret_key() -> str:
    """A per-installation key kept in var/, so the embedded default needs no variable."""
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env_str("DJANGO_SECRET_KEY") or _local_secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "django_prometheus",
    "apps.core",
    "apps.governance",
    "apps.events",
    "apps.data",
    "apps.features",
    "apps.registry",
    "apps.predictions",
    "apps.monitoring",
]

MIDDLEWARE = [
    "apps.core.middleware.HttpMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_config(DATABASE_URL)}
else:
    DATABASES = {"default": {"ENGINE": SQLITE_ENGINE, "NAME": VAR_DIR / "faro.sqlite3"}}

if DATABASES["default"]["ENGINE"] == SQLITE_ENGINE:
    # IMMEDIATE makes concurrent writers queue instead of failing on upgrade; WAL lets the web
    # read while the worker writes; synchronous=FULL syncs the WAL at every commit, so an acknowledged
    # decision survives a power loss.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
# The default cache's gets, hits and misses are counted by django-prometheus (django_cache_*).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "apps.core.cache.CountedRedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django_prometheus.cache.backends.filebased.FileBasedCache",
            "LOCATION": VAR_DIR / "cache",
        }
    }
# Request counters for fair use: shared by every process through Redis; without Redis, each process counts
# its own requests.
CACHES["throttle"] = (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "faro-rate"}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "faro-rate"}
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns about a missing root before the first collectstatic
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGIN_URL = "admin:login"
LOGIN_REDIRECT_URL = "/"

# Uploads larger than this are streamed to a temporary file instead of held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("FARO_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.governance.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["apps.core.api.OrjsonRenderer"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.api.OrjsonParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Faro API",
    "DESCRIPTION": "Datasets, training, the model registry and predictions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Operation ids and tags are named after the path below /api (v1_models_predict_create), whatever other
    # paths (/v2 for the Open Inference Protocol) the schema also lists.
    "SCHEMA_PATH_PREFIX": "/api",
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "apps.core.models.JobStatus",
        "ModelVersionStatusEnum": "apps.registry.models.ModelVersion.Status",
        "ModelSourceEnum": "apps.registry.models.ModelVersion.Source",
        "TaskTypeEnum": "apps.registry.models.TaskType",
        "ImportedTaskTypeEnum": [("classification", "classification"), ("regression", "regression")],
    },
}

# Celery: the job row is the source of truth, so results are not stored.
CELERY_TASK_DEFAULT_QUEUE = env_str("FARO_TASK_QUEUE", "faro")
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("FARO_TASKS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
# Periodic tasks: django-celery-beat's database scheduler copies these entries into its tables at start-up.
FARO_WEBHOOK_RETRY_SECONDS = env_float("FARO_WEBHOOK_RETRY_SECONDS", 30.0, minimum=1.0)


def beat_every(task: str, seconds: float) -> dict:
    """A beat entry running `task` every `seconds`. A run that waited longer than one interval in the queue
    is superseded by the next one (expire_seconds is the database scheduler's name for apply_async's
    expires)."""
    return {"task": task, "schedule": timedelta(seconds=seconds), "options": {"expire_seconds": max(1, round(seconds))}}


CELERY_BEAT_SCHEDULE = {"events.deliveries_retry": beat_every("events.deliveries_retry", FARO_WEBHOOK_RETRY_SECONDS)}
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
else:
    BROKER_DIR = VAR_DIR / "broker"
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://localhost//"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
        "polling_interval": 0.2,
    }

# Faro's own settings.
FARO_ARTEFACT_ROOT = Path(env_str("FARO_ARTEFACT_ROOT", str(VAR_DIR / "artefacts")))
FARO_PREDICT_MAX_BODY_BYTES = env_int("FARO_PREDICT_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
FARO_PREDICT_MAX_ROWS = env_int("FARO_PREDICT_MAX_ROWS", 1000, minimum=1)
# Fair use: requests a client (a token, else a user, else an address) may make to the scoring endpoints
# per second, minute or hour ("600/minute"); beyond it 429 with Retry-After. "off": no limit.
FARO_PREDICT_RATE_LIMIT = env_str("FARO_PREDICT_RATE_LIMIT", "100000/minute")
if FARO_PREDICT_RATE_LIMIT != "off" and not re.fullmatch(r"[1-9][0-9]*/(second|minute|hour)", FARO_PREDICT_RATE_LIMIT):
    raise ImproperlyConfigured(
        f"FARO_PREDICT_RATE_LIMIT={FARO_PREDICT_RATE_LIMIT!r} must look like 600/minute (second, minute or hour) or off"
    )
FARO_UPLOAD_MAX_BYTES = env_int("FARO_UPLOAD_MAX_BYTES", 100 * 1024 * 1024, minimum=1024)
# How long a web process trusts its view of an alias or a traffic policy before asking the database again:
# a promotion or a policy change reaches every worker within this time.
FARO_ALIAS_TTL_SECONDS = env_float("FARO_ALIAS_TTL_SECONDS", 1.0, minimum=0.0)
# The key of the pseudonyms that replace personal inputs in the decision log; without it, one derived from
# SECRET_KEY (so rotating SECRET_KEY changes new pseudonyms: set this to keep them stable).
FARO_PSEUDONYM_KEY = env_str("FARO_PSEUDONYM_KEY", "")
# Canaries are judged against the champion this often (and rolled back when worse by the policy's margins).
FARO_CANARY_CHECK_SECONDS = env_float("FARO_CANARY_CHECK_SECONDS", 30.0, minimum=1.0)
# Shadow scoring runs on a thread of each web process; requests beyond this many waiting are not shadowed.
FARO_SHADOW_QUEUE_SIZE = env_int("FARO_SHADOW_QUEUE_SIZE", 1000, minimum=1)
# A running job renews its lease while it works; one whose lease lapses (its worker died) is queued again
# by the reaper, up to FARO_JOB_MAX_ATTEMPTS attempts, then failed with the reason.
FARO_JOB_LEASE_SECONDS = env_float("FARO_JOB_LEASE_SECONDS", 120.0, minimum=1.0)
FARO_JOB_MAX_ATTEMPTS = env_int("FARO_JOB_MAX_ATTEMPTS", 3, minimum=1)
FARO_JOB_REAP_INTERVAL_SECONDS = env_float("FARO_JOB_REAP_INTERVAL_SECONDS", 15.0, minimum=1.0)
CELERY_BEAT_SCHEDULE["registry.training_jobs_reap"] = beat_every(
    "registry.training_jobs_reap", FARO_JOB_REAP_INTERVAL_SECONDS
)
CELERY_BEAT_SCHEDULE["predictions.batch_jobs_reap"] = beat_every(
    "predictions.batch_jobs_reap", FARO_JOB_REAP_INTERVAL_SECONDS
)
# Batch scoring reads, scores and writes this many rows at a time (fewer for wide inputs: about 64 MB of values
# per chunk at most), and scores this many chunks at once, each on one thread (default: one per core).
FARO_BATCH_CHUNK_ROWS = env_int("FARO_BATCH_CHUNK_ROWS", 262_144, minimum=1_000)
FARO_BATCH_THREADS = env_int("FARO_BATCH_THREADS", os.cpu_count() or 1, minimum=1)
CELERY_BEAT_SCHEDULE["predictions.canaries_check"] = beat_every("predictions.canaries_check", FARO_CANARY_CHECK_SECONDS)
# Drift reports: every champion's served inputs in the last FARO_DRIFT_WINDOW_HOURS against its training data,
# every FARO_DRIFT_INTERVAL_SECONDS (and on demand: API, manage.py drift_report).
FARO_DRIFT_WINDOW_HOURS = env_float("FARO_DRIFT_WINDOW_HOURS", 24.0, minimum=0.01)
FARO_DRIFT_INTERVAL_SECONDS = env_float("FARO_DRIFT_INTERVAL_SECONDS", 3600.0, minimum=60.0)
# A report reads at most this many of the window's newest decisions (a busy day holds millions).
FARO_DRIFT_MAX_ROWS = env_int("FARO_DRIFT_MAX_ROWS", 500_000, minimum=1_000)
CELERY_BEAT_SCHEDULE["monitoring.drift_reports_run"] = beat_every(
    "monitoring.drift_reports_run", FARO_DRIFT_INTERVAL_SECONDS
)
# Monitoring checks, every FARO_MONITOR_INTERVAL_SECONDS: each champion's live quality over the last
# FARO_QUALITY_WINDOW_HOURS (labels arrive late, so the window is long), each model's SLOs over the last
# FARO_SLO_WINDOW_DAYS, failed jobs; alerts are raised and resolved from them.
FARO_MONITOR_INTERVAL_SECONDS = env_float("FARO_MONITOR_INTERVAL_SECONDS", 300.0, minimum=10.0)
FARO_QUALITY_WINDOW_HOURS = env_float("FARO_QUALITY_WINDOW_HOURS", 168.0, minimum=0.01)
FARO_SLO_WINDOW_DAYS = env_float("FARO_SLO_WINDOW_DAYS", 30.0, minimum=0.01)
CELERY_BEAT_SCHEDULE["monitoring.checks_run"] = beat_every("monitoring.checks_run", FARO_MONITOR_INTERVAL_SECONDS)

# -- Audit anchoring (apps.governance) ------------------------------------------------------------------------
# Every FARO_AUDIT_ANCHOR_SECONDS beat anchors the audit chain's head outside the database: an INFO log line,
# the faro_audit_head_* gauges, and a JSON line appended to FARO_AUDIT_ANCHOR_FILE when it is set (a place the
# database's owner cannot rewrite). `manage.py audit_verify --anchors FILE` checks the chain against that file.
FARO_AUDIT_ANCHOR_SECONDS = env_float("FARO_AUDIT_ANCHOR_SECONDS", 3600.0, minimum=60.0)
FARO_AUDIT_ANCHOR_FILE = env_str("FARO_AUDIT_ANCHOR_FILE", "")
CELERY_BEAT_SCHEDULE["governance.audit_anchor"] = beat_every("governance.audit_anchor", FARO_AUDIT_ANCHOR_SECONDS)
# -- Data-subject requests (apps.governance.privacy) --
# Each completed erasure appends its subject's digest (never the key) to FARO_ERASURE_JOURNAL: keep it where a
# database restore does not roll it back, so `manage.py gdpr_replay` can erase those subjects again. Empty: a file
# under the artefact root. Erasures left in progress by a stopped worker are resumed by beat.
FARO_ERASURE_JOURNAL = env_str("FARO_ERASURE_JOURNAL", "")
CELERY_BEAT_SCHEDULE["governance.erasures_resume"] = beat_every("governance.erasures_resume", FARO_JOB_LEASE_SECONDS)
# -- end of audit anchoring and data-subject requests ---------------------------------------------------------------

# Who is e-mailed when an alert opens (besides the model's owner), and how mail leaves.
FARO_ALERT_EMAILS = env_list("FARO_ALERT_EMAILS", [])
DEFAULT_FROM_EMAIL = env_str("FARO_EMAIL_FROM", "faro@localhost")
EMAIL_BACKEND = env_str("FARO_EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env_str("FARO_EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("FARO_EMAIL_PORT", 25, minimum=1)
EMAIL_HOST_USER = env_str("FARO_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("FARO_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("FARO_EMAIL_TLS", False)
EMAIL_TIMEOUT = 10
# The price of one CPU-hour, to turn the CPU seconds a prediction costs into money (unset: CPU seconds only).
FARO_CPU_PRICE_PER_HOUR = (
    env_float("FARO_CPU_PRICE_PER_HOUR", 0.0, minimum=0.0) if env_str("FARO_CPU_PRICE_PER_HOUR") else None
)
FARO_COST_CURRENCY = env_str("FARO_COST_CURRENCY", "USD")
# The code version recorded in every model version's lineage (e.g. the release's git commit).
FARO_CODE_VERSION = env_str("FARO_CODE_VERSION", "")
# Online scoring of a trained version goes through its ONNX export when that export passed its parity check
# (one row in about 10 µs against the booster's 150 to 230 µs here); explanations still come from the booster.
FARO_SERVE_ONNX = env_bool("FARO_SERVE_ONNX", True)
FARO_MODEL_CACHE_SIZE = env_int("FARO_MODEL_CACHE_SIZE", 16, minimum=1)
FARO_TOKEN_CACHE_SECONDS = env_float("FARO_TOKEN_CACHE_SECONDS", 5.0, minimum=0.0)
# Where the latest feature values per entity live for online lookups: Redis when REDIS_URL is set, else the database.
FARO_ONLINE_STORE = env_str("FARO_ONLINE_STORE", "redis" if REDIS_URL else "database")
if FARO_ONLINE_STORE not in ("database", "redis") or (FARO_ONLINE_STORE == "redis" and not REDIS_URL):
    raise ImproperlyConfigured(
        f"FARO_ONLINE_STORE={FARO_ONLINE_STORE!r} must be database or redis (redis needs REDIS_URL)"
    )
# Webhooks (apps.events): request timeout, and retries at base * 2^(attempt - 1) seconds (at most an hour)
# until the maximum number of attempts.
FARO_WEBHOOK_TIMEOUT_SECONDS = env_float("FARO_WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
FARO_WEBHOOK_BACKOFF_SECONDS = env_float("FARO_WEBHOOK_BACKOFF_SECONDS", 30.0, minimum=1.0)
FARO_WEBHOOK_MAX_ATTEMPTS = env_int("FARO_WEBHOOK_MAX_ATTEMPTS", 8, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("FARO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# -- Security baseline and sign-in lockout (apps.governance) --------------------------------------------------
# Response headers, the Content Security Policy, cookies, password hashing and the sign-in lockout (README,
# "Security"). production.py adds what needs HTTPS: the redirect, Secure cookies, HSTS.
# A strict Content Security Policy on every response (pages, API, admin): scripts, styles, images, fonts and
# fetches from this origin only; no inline script or style (bar widths are classes in static/css/faro.css), no
# plugins, no framing, no <base> rewriting, forms post here only. The API docs widen img-src for Swagger UI's
# data: icons (config/urls.py). After WhiteNoise, so static files go without it (it means nothing on them).
MIDDLEWARE.insert(
    MIDDLEWARE.index("whitenoise.middleware.WhiteNoiseMiddleware") + 1,
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
)
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "base-uri": [CSP.NONE],
    "object-src": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}
# Swagger UI would load a badge from validator.swagger.io, with the schema's address in the query: off.
SPECTACULAR_SETTINGS["SWAGGER_UI_SETTINGS"] = {"deepLinking": True, "validatorUrl": None}
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Strict would sign people out when they follow a link to Faro (an alert e-mail)
CSRF_COOKIE_SAMESITE = "Lax"
# Readable by scripts, as Django ships it: HttpOnly on the CSRF cookie protects nothing (a script that could read
# it can read the token in the page too), and upload.js falls back on reading it.
CSRF_COOKIE_HTTPONLY = False
# Argon2id for new and changed passwords; the others still verify older hashes, which Django rewrites with
# Argon2 at the user's next sign-in.
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.ScryptPasswordHasher",
]
# Sign-in lockout (apps/governance/lockout.py): FARO_LOGIN_MAX_FAILURES failed sign-ins for one account within
# FARO_LOGIN_LOCKOUT_SECONDS lock it for that long; FARO_LOGIN_IP_MAX_FAILURES (0: off) from one client address
# lock the address, which slows a password spray across accounts. The client address is REMOTE_ADDR, or behind
# FARO_TRUSTED_PROXY_COUNT proxies that each append to X-Forwarded-For, the entry that many from its end.
AUTHENTICATION_BACKENDS = [
    "apps.governance.lockout.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
FARO_LOGIN_MAX_FAILURES = env_int("FARO_LOGIN_MAX_FAILURES", 5, minimum=1)
FARO_LOGIN_IP_MAX_FAILURES = env_int("FARO_LOGIN_IP_MAX_FAILURES", 20, minimum=0)
FARO_LOGIN_LOCKOUT_SECONDS = env_int("FARO_LOGIN_LOCKOUT_SECONDS", 900, minimum=1)
FARO_TRUSTED_PROXY_COUNT = env_int("FARO_TRUSTED_PROXY_COUNT", 0, minimum=0)
# -- end of security baseline and sign-in lockout -------------------------------------------------------------

# -- Retention (apps.data, apps.predictions) ------------------------------------------------------------------
# Every FARO_RETENTION_INTERVAL_SECONDS beat purges what is past its retention (`manage.py retention_purge`):
# dataset versions older than their dataset's retention_days, and decisions (and scoring failures) older than
# FARO_DECISION_LOG_RETENTION_DAYS, except decisions whose review is open. 0 keeps the decision log forever.
# The default, two years, is finite by design (GDPR Art. 5(1)(e), 25(2)): longer than every window Faro reads
# the log for (drift, live quality, SLOs, the 30 days a review can be asked for online) and than a customer's
# usual time to complain; an operator under a longer duty to keep decisions sets it, and the README says so.
FARO_DECISION_LOG_RETENTION_DAYS = env_int("FARO_DECISION_LOG_RETENTION_DAYS", 730, minimum=0)
FARO_RETENTION_INTERVAL_SECONDS = env_float("FARO_RETENTION_INTERVAL_SECONDS", 86400.0, minimum=60.0)
CELERY_BEAT_SCHEDULE["predictions.retention_purge"] = beat_every(
    "predictions.retention_purge", FARO_RETENTION_INTERVAL_SECONDS
)
# -- end of retention -----------------------------------------------------------------------------------------
