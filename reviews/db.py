"""Review decisions, once written, never change: the database refuses UPDATE
and DELETE on them (as on releases and the audit log), so a decision cannot be
rewritten or removed even by code that bypasses ``ReviewDecision.save``."""

from audit.db import immutable_install, immutable_remove, truncate_guard_install, truncate_guard_remove

IMMUTABLE_TABLES = ("reviews_reviewdecision",)


def install_guards(connection) -> None:
    immutable_install(connection, IMMUTABLE_TABLES)


def remove_guards(connection) -> None:
    immutable_remove(connection, IMMUTABLE_TABLES)


def install_truncate_guards(connection) -> None:
    """PostgreSQL refuses TRUNCATE on review decisions (row triggers do not see it)."""
    truncate_guard_install(connection, IMMUTABLE_TABLES)


def remove_truncate_guards(connection) -> None:
    truncate_guard_remove(connection, IMMUTABLE_TABLES)
