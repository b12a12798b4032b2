"""Review decisions, once written, never change: the database refuses UPDATE
and DELETE on them (as on releases and the audit log), so a decision cannot be
rewritten or removed even by code that bypasses ``ReviewDecision.save``."""

from audit.db import immutable_statements

IMMUTABLE_TABLES = ("reviews_reviewdecision",)


def install_guards(connection) -> None:
    with connection.cursor() as cursor:
        for table in IMMUTABLE_TABLES:
            for statement in immutable_statements(connection.vendor, table)[0]:
                cursor.execute(statement)


def remove_guards(connection) -> None:
    with connection.cursor() as cursor:
        for table in IMMUTABLE_TABLES:
            for statement in immutable_statements(connection.vendor, table)[1]:
                cursor.execute(statement)
