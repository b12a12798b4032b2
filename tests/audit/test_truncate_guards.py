"""Emptying an append-only table in one statement is refused: TRUNCATE on
PostgreSQL (a statement-level trigger: the row triggers never see it), and on
SQLite a DELETE without WHERE (the row triggers fire for it)."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.db import TABLE
from audit.models import AuditEvent
from audit.services import audit_record
from pipelines.db import IMMUTABLE_TABLES
from reviews.db import TABLE as DECISIONS

APPEND_ONLY = (TABLE, *IMMUTABLE_TABLES, DECISIONS)

postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's statement")
sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite empties a table with DELETE")


def _execute(sql: str) -> None:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql)


@postgresql_only
@pytest.mark.parametrize("table", APPEND_ONLY)
def test_it_refuses_truncate_on_every_append_only_table(db, table):
    audit_record(action="note.made", object_type="note", object_id=1)
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"):
        _execute(f"TRUNCATE {table} CASCADE")
    assert AuditEvent.objects.filter(action="note.made").exists()


@postgresql_only
def test_it_refuses_a_truncate_that_reaches_the_releases_by_cascade(transactional_db, acme_config, superuser):
    """Truncating the pipelines table cascades to its releases: refused too."""
    from pipelines.models import Release
    from pipelines.releases.cut import release_cut

    release_cut(pipeline=acme_config["pipeline"], actor=superuser)
    with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"):
        _execute("TRUNCATE pipelines_pipeline CASCADE")
    assert Release.objects.filter(pipeline=acme_config["pipeline"]).count() == 1


@postgresql_only
def test_the_guards_are_installed_by_migrations(db):
    with connection.cursor() as cursor:
        # tgtype bits: 2 BEFORE, 32 TRUNCATE; a statement trigger lacks bit 1 (ROW).
        cursor.execute("SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgtype & 35 = 34 AND NOT tgisinternal")
        guarded = {row[0] for row in cursor.fetchall()}
    assert set(APPEND_ONLY) <= guarded


@sqlite_only
@pytest.mark.parametrize("table", [TABLE, "pipelines_release"])
def test_it_refuses_emptying_an_append_only_table_with_one_delete(db, table, acme_config, superuser):
    # The row triggers fire for each row a DELETE without WHERE removes.
    from pipelines.releases.cut import release_cut

    release_cut(pipeline=acme_config["pipeline"], actor=superuser)
    with pytest.raises(DatabaseError, match="refused"):
        _execute(f"DELETE FROM {table}")


def test_the_flush_between_transactional_tests_lifts_the_guards_for_itself_only(transactional_db):
    from django.core.management import call_command

    audit_record(action="note.made", object_type="note", object_id=1)
    call_command("flush", interactive=False, verbosity=0)  # what pytest-django runs after such a test
    assert not AuditEvent.objects.filter(action="note.made").exists()
    audit_record(action="note.made", object_type="note", object_id=2)
    count = AuditEvent.objects.count()
    statement = f"TRUNCATE {TABLE}" if connection.vendor == "postgresql" else f"DELETE FROM {TABLE}"
    with pytest.raises(DatabaseError, match="refused"):
        _execute(statement)
    assert AuditEvent.objects.count() == count
