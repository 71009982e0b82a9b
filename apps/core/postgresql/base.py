"""Django's PostgreSQL backend with a health check that costs no round trip when nothing is wrong.

Django checks a persistent connection before each request reuses it (CONN_HEALTH_CHECKS) with a
`SELECT 1`: on the prediction path that is a second round trip beside the decision log's INSERT. A
connection the server has closed (a restart, a terminated backend, an idle timeout) has something to read
on its socket: the server's error message, or the end of the stream. So a socket with nothing to read is
usable without asking; one with something to read is checked with `SELECT 1` as Django does.

Connections, queries, their duration and errors are counted by django-prometheus's wrapper (the
`django_db_*` metrics); the decision log's own statements (apps.predictions.decision_log) are not.
"""

import select

from django.db.backends.postgresql import base
from django_prometheus.db.backends.postgresql.base import DatabaseWrapper as CountedDatabaseWrapper


class DatabaseWrapper(CountedDatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.pgconn.socket], [], [], 0)
        except (OSError, ValueError, base.Database.Error):  # no socket any more
            return False
        return not readable or super().is_usable()
