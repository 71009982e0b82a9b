"""The security baseline: `check --deploy` clean in production, the Content Security Policy on every kind of
response, cookie and header settings, HTTPS behaviour in production, and Argon2 password hashing."""

import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher, identify_hasher

import config.settings.base as base_settings

ROOT = Path(__file__).resolve().parents[2]
POLICY = "default-src 'self'; base-uri 'none'; object-src 'none'; frame-ancestors 'none'; form-action 'self'"
DOCS_POLICY = f"{POLICY}; img-src 'self' data:"


def production(tmp_path, *args: str, env: dict[str, str] | None = None, code: str | None = None):
    """Run `manage.py <args>` (or `code` after django.setup()) with the production settings and only the
    environment they need: PostgreSQL and Redis are named, not reached."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("FARO_", "DJANGO_"))}
    clean.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "FARO_VAR_DIR": str(tmp_path),
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/test",
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "DJANGO_ALLOWED_HOSTS": "faro.example.org",
            **(env or {}),
        }
    )
    command = ["-c", "import django; django.setup()\n" + code] if code else ["manage.py", *args]
    return subprocess.run([sys.executable, *command], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120)


# -- production settings ---------------------------------------------------------------------------------------


def test_check_deploy_is_clean_in_production(tmp_path):
    result = production(tmp_path, "check", "--deploy", "--fail-level", "WARNING")
    assert (result.returncode, result.stdout, result.stderr) == (
        0,
        "System check identified no issues (1 silenced).\n",
        "",
    )


def test_turning_hsts_off_is_reported(tmp_path):
    result = production(
        tmp_path, "check", "--deploy", "--fail-level", "WARNING", env={"DJANGO_SECURE_HSTS_SECONDS": "0"}
    )
    assert result.returncode == 1
    assert "(security.W004) You have not set a value for the SECURE_HSTS_SECONDS setting." in result.stderr
    assert "System check identified 1 issue (0 silenced)." in result.stderr


PRINT_SETTINGS = """
import json
from django.conf import settings
names = [
    "DEBUG", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD", "SECURE_CONTENT_TYPE_NOSNIFF", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
    "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE", "CSRF_COOKIE_HTTPONLY", "CSRF_COOKIE_SAMESITE", "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY", "SECURE_CROSS_ORIGIN_OPENER_POLICY", "SILENCED_SYSTEM_CHECKS",
]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def test_production_cookie_and_header_settings(tmp_path):
    result = production(tmp_path, code=PRINT_SETTINGS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "DEBUG": False,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": False,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": False,
        "CSRF_COOKIE_SAMESITE": "Lax",
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_REFERRER_POLICY": "same-origin",
        "SECURE_CROSS_ORIGIN_OPENER_POLICY": "same-origin",
        "SILENCED_SYSTEM_CHECKS": ["security.W021"],
    }


def test_hsts_is_configurable(tmp_path):
    env = {
        "DJANGO_SECURE_HSTS_SECONDS": "3600",
        "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "false",
        "DJANGO_SECURE_HSTS_PRELOAD": "true",
    }
    code = "from django.conf import settings as s; print(s.SECURE_HSTS_SECONDS, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, " + (
        "s.SECURE_HSTS_PRELOAD)"
    )
    result = production(tmp_path, env=env, code=code)
    assert (result.returncode, result.stdout) == (0, "3600 False True\n"), result.stderr


# Requests through Django's test client under the production settings: /healthz touches no database.
PRODUCTION_REQUESTS = """
import json
from django.test import Client
client = Client(HTTP_HOST="faro.example.org")
plain = client.get("/api/docs/")  # redirected before any view runs: no database
probe = client.get("/healthz")  # probes and the scrape reach gunicorn over plain HTTP (SECURE_REDIRECT_EXEMPT)
proxied = client.get("/healthz", HTTP_X_FORWARDED_PROTO="https")
print(json.dumps({
    "plain": [plain.status_code, plain.get("Location")],
    "probe": [probe.status_code, probe.get("Strict-Transport-Security")],
    "proxied": [proxied.status_code, proxied.get("Strict-Transport-Security"), proxied.get("Content-Security-Policy")],
}))
"""


def test_production_redirects_to_https_and_sends_hsts_over_it(tmp_path):
    result = production(tmp_path, code=PRODUCTION_REQUESTS)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "plain": [301, "https://faro.example.org/api/docs/"],
        "probe": [200, None],
        "proxied": [200, "max-age=31536000; includeSubDomains", POLICY],
    }


# -- the Content Security Policy -------------------------------------------------------------------------------


def assert_headers(response, policy: str = POLICY) -> None:
    assert response["Content-Security-Policy"] == policy
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_policy_is_on_a_page(client, db):
    response = client.get("/")
    assert response.status_code == 200
    assert_headers(response)


def test_the_policy_is_on_api_responses(client, tokens):
    ok = client.get("/api/v1/models", headers={"Authorization": f"Bearer {tokens['read']}"})
    refused = client.get("/api/v1/models")
    assert (ok.status_code, refused.status_code) == (200, 401)
    assert_headers(ok)
    assert_headers(refused)


def test_the_policy_is_on_the_admin_login(client, db):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert_headers(response)


def test_the_api_docs_allow_data_images_only_in_addition(client, db):
    page = client.get("/api/docs/")
    script = client.get("/api/docs/?script=")
    assert (page.status_code, script.status_code, script["Content-Type"]) == (200, 200, "application/javascript")
    assert_headers(page, DOCS_POLICY)
    assert '"validatorUrl": null' in script.content.decode()  # no badge fetched from swagger.io


def test_no_template_has_inline_script_style_or_handler():
    """Scripts and styles are files under static/: the policy refuses inline ones (SVG presentation attributes
    such as fill="..." are not styles and stay)."""
    inline = re.compile(r"<script(?![^>]*\ssrc=)|<style|\sstyle=|\son[a-z]+=|javascript:", re.IGNORECASE)
    offenders = [
        f"{template.relative_to(ROOT)}: {match.group()}"
        for template in sorted((ROOT / "templates").rglob("*.html"))
        for match in inline.finditer(template.read_text())
    ]
    assert offenders == []


# -- passwords -------------------------------------------------------------------------------------------------


def test_argon2_is_the_first_hasher_of_the_base_settings():
    assert base_settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    assert "django.contrib.auth.hashers.PBKDF2PasswordHasher" in base_settings.PASSWORD_HASHERS[1:]


def test_the_test_settings_keep_their_fast_hasher():
    from django.conf import settings

    assert settings.PASSWORD_HASHERS == ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_with_the_base_hashers_passwords_get_argon2_and_older_hashes_upgrade(settings, db):
    settings.PASSWORD_HASHERS = base_settings.PASSWORD_HASHERS
    user = get_user_model().objects.create_user("hashed", password="correct horse")
    assert user.password.startswith("argon2$argon2id$")
    assert user.check_password("correct horse") and not user.check_password("wrong horse")

    # A hash from before Argon2 (PBKDF2) still verifies, and is rewritten with Argon2 at that sign-in.
    user.password = PBKDF2PasswordHasher().encode("old secret", PBKDF2PasswordHasher().salt())
    user.save(update_fields=["password"])
    assert user.check_password("old secret")
    user.refresh_from_db()
    assert identify_hasher(user.password).algorithm == "argon2"
