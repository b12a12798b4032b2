"""Django's PostgreSQL backend, with a health check that costs no round trip
when it need not (settings.py sets this ENGINE for a ``postgres://`` URL).

With ``CONN_HEALTH_CHECKS`` Django checks a kept connection before the first
query of every request and every worker task with ``SELECT 1``: on the API's
run creation, one round trip in eight. A server that ends a session — a restart, ``pg_terminate_backend``, an
idle timeout — tells the client (an error message, then the end of the
stream), so an idle connection whose socket has nothing to read is one the
server still holds. Only when something is waiting there, or the connection
is not idle, does this check ask the server as Django does. A peer that
vanished without a word (a cut network) is noticed by neither check before
the next query; that query's error then closes the connection as before.
"""

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self):
        if (
            self.pool is None
            and self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and _quiet(self.connection)
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()


def _quiet(connection) -> bool:
    """Open, idle outside a transaction, and nothing from the server unasked."""
    if connection.closed or connection.info.transaction_status != TransactionStatus.IDLE:
        return False
    poller = select.poll()
    try:
        poller.register(connection.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
