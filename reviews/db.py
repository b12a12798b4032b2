"""Review decisions, once written, never change: the database refuses UPDATE
and DELETE on them (as on releases and the audit log), so a decision cannot be
rewritten or removed even by code that bypasses ``ReviewDecision.save``."""

from audit.db import immutable_install, immutable_remove

IMMUTABLE_TABLES = ("reviews_reviewdecision",)


def install_guards(connection) -> None:
    immutable_install(connection, IMMUTABLE_TABLES)


def remove_guards(connection) -> None:
    immutable_remove(connection, IMMUTABLE_TABLES)
