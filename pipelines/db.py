"""Tables whose rows, once written, never change: releases and their
transitions. Both databases refuse UPDATE and DELETE on them."""

from audit.db import immutable_statements

IMMUTABLE_TABLES = ("pipelines_release", "pipelines_releasetransition")


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
