"""Production settings: PostgreSQL, Redis, secrets from the environment. Refuses to start without them."""

import os

from django.core.exceptions import ImproperlyConfigured

_REQUIRED = ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOWED_HOSTS")
_missing = [name for name in _REQUIRED if not os.environ.get(name)]
if _missing:
    raise ImproperlyConfigured("Production settings need these environment variables: " + ", ".join(_missing))
if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
    raise ImproperlyConfigured("DATABASE_URL must be a PostgreSQL URL (postgres://...) in production")
if not os.environ["REDIS_URL"].startswith(("redis://", "rediss://")):
    raise ImproperlyConfigured("REDIS_URL must be a Redis URL (redis://...) in production")
if len(os.environ["DJANGO_SECRET_KEY"]) < 32:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be at least 32 characters long")

from config.settings.base import *  # noqa: E402,F403
from config.settings.env import env_bool, env_int  # noqa: E402

DEBUG = False
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0, minimum=0)
SECURE_CONTENT_TYPE_NOSNIFF = True
