"""apps.core.postgresql: a connection the server has closed is found unusable (and replaced); a healthy one
is usable. Runs against this machine's PostgreSQL whichever database the rest of the suite uses."""

import os
import time

import psycopg
import pytest
from django.db.utils import ConnectionHandler

from apps.core.postgresql.base import DatabaseWrapper
from config.settings.env import database_config

URL = os.environ.get("FARO_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture(autouse=True)
def _own_connections(django_db_blocker):
    """These connections are the test's own, to a database of their own: not the suite's test database."""
    with django_db_blocker.unblock():
        yield


def wrapper() -> DatabaseWrapper:
    config = database_config(URL)
    assert config["ENGINE"] == "apps.core.postgresql"
    persistent = {**config, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True}
    settings_dict = ConnectionHandler({"default": persistent}).settings["default"]
    return DatabaseWrapper(settings_dict, alias="health")


def terminate(pid: int) -> None:
    config = database_config(URL)
    with psycopg.connect(
        host=config["HOST"], port=config["PORT"] or 5432, user=config["USER"], dbname=config["NAME"], autocommit=True
    ) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
        deadline = time.monotonic() + 10
        while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]:
            assert time.monotonic() < deadline, f"backend {pid} still running"
            time.sleep(0.05)


def test_a_healthy_connection_is_usable_and_a_terminated_one_is_replaced():
    db = wrapper()
    try:
        assert not db.is_usable()  # not connected yet
        db.ensure_connection()
        assert db.is_usable()
        assert db.is_usable()  # asking twice changes nothing
        first = db.connection.info.backend_pid
        terminate(first)
        assert not db.is_usable()
        db.close_if_unusable_or_obsolete()  # the end of a request: the next one checks the connection first
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (second,) = cursor.fetchone()
        assert second != first
        assert db.is_usable()
    finally:
        db.close()


def test_a_closed_connection_is_not_usable():
    db = wrapper()
    db.ensure_connection()
    db.connection.close()
    assert not db.is_usable()
    db.close()
