"""Tables whose rows, once written, never change: releases and their
transitions. Both databases refuse UPDATE and DELETE on them."""

from audit.db import immutable_install, immutable_remove, truncate_guard_install, truncate_guard_remove

IMMUTABLE_TABLES = ("pipelines_release", "pipelines_releasetransition")


def install_guards(connection) -> None:
    immutable_install(connection, IMMUTABLE_TABLES)


def remove_guards(connection) -> None:
    immutable_remove(connection, IMMUTABLE_TABLES)


def install_truncate_guards(connection) -> None:
    """PostgreSQL refuses TRUNCATE on releases and their transitions (row triggers do not see it)."""
    truncate_guard_install(connection, IMMUTABLE_TABLES)


def remove_truncate_guards(connection) -> None:
    truncate_guard_remove(connection, IMMUTABLE_TABLES)
