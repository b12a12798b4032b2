"""Tables whose rows, once written, never change: releases and their
transitions. Both databases refuse UPDATE and DELETE on them."""

from audit.db import immutable_install, immutable_remove

IMMUTABLE_TABLES = ("pipelines_release", "pipelines_releasetransition")


def install_guards(connection) -> None:
    immutable_install(connection, IMMUTABLE_TABLES)


def remove_guards(connection) -> None:
    immutable_remove(connection, IMMUTABLE_TABLES)
