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
# TLS ends at a proxy in front of gunicorn, which says so in X-Forwarded-Proto (and must strip any such header
# a client sends). Production is HTTPS only: plain HTTP is redirected and the cookies are sent over TLS only.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# Probes and the scrape reach gunicorn directly over plain HTTP, without the proxy (the container's HEALTHCHECK,
# Prometheus on web:8000): a redirect to HTTPS would fail them. They carry no cookies and set none.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$"]
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# HSTS: browsers that once reached Faro over HTTPS refuse plain HTTP to it for this long (default one year).
# Safe as a default because this deployment is HTTPS only anyway (the redirect and the Secure cookies above:
# over plain HTTP nobody can sign in), and Django sends the header on HTTPS responses only, which browsers
# alone honour. It only closes the window of a first plain-HTTP request. includeSubDomains covers the names
# below Faro's own host (x.faro.example.org), not its siblings; turn it off when Faro is served from an apex
# domain whose other hosts are not all HTTPS. 0 turns HSTS off (check --deploy then warns).
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# security.W021 asks for the preload directive. Preloading is a request to the browsers' list for a whole
# registrable domain, made by its owner and slow to undo; a self-hosted Faro usually runs on one host of its
# organisation's domain (or an internal one that cannot be preloaded), so the directive stays opt-in above.
SILENCED_SYSTEM_CHECKS = ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
