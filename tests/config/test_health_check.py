"""PostgreSQL connections kept between requests and tasks are checked before
reuse (CONN_HEALTH_CHECKS, Django's stock backend): a live session is kept,
a session the server ended is replaced, never used."""

import psycopg
import pytest
from django.db import close_old_connections, connection, connections

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("the check is the PostgreSQL backend's")
    assert connection.settings_dict["CONN_HEALTH_CHECKS"]


@pytest.fixture
def asked(monkeypatch) -> list[bool]:
    """Every time the check asks the server (Django's is_usable), and its answer."""
    wrapper = type(connections["default"])
    ask, answers = wrapper.is_usable, []

    def counted(self):
        answers.append(ask(self))
        return answers[-1]

    monkeypatch.setattr(wrapper, "is_usable", counted)
    return answers


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _new_request() -> None:
    # What Django does when a request starts, and run_execute_task before a run.
    close_old_connections()


def test_a_live_connection_is_checked_and_reused(postgresql, asked):
    pid = _backend_pid()
    for _ in range(3):
        _new_request()
        assert _backend_pid() == pid
    assert asked == [True, True, True]  # once per request, before its first query


def test_a_session_the_server_ended_is_noticed_and_replaced(postgresql, asked):
    pid = _backend_pid()
    params = connection.get_connection_params()
    with psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True) as other:
        # With a timeout it returns once the session has ended (and said so).
        other.execute("SELECT pg_terminate_backend(%s, 10000)", [pid])
    _new_request()
    new_pid = _backend_pid()  # would raise on the dead session
    assert new_pid != pid
    assert asked == [False]  # asked, and the check failed: a new session


def test_a_connection_inside_a_transaction_is_asked_as_django_asks(postgresql, asked):
    _backend_pid()
    connections["default"].health_check_done = False
    connection.connection.execute("BEGIN")  # open on the server, unknown to Django's bookkeeping
    try:
        connections["default"].close_if_health_check_failed()
    finally:
        if connection.connection is not None:
            connection.connection.execute("ROLLBACK")
    assert asked == [True]
