"""Multi-row INSERTs for the hot paths (the chain's appends, the engine's step rows).

``bulk_create`` on PostgreSQL sends its rows as one array per column
(``UNNEST``), and psycopg writes every text and JSON value into those arrays
through a regular expression per quote character: for rows of JSON documents
that escaping costs more CPU than the insert itself. Two cheaper ways:

- ``insert_dicts``, on PostgreSQL: every row in one JSON parameter, unpacked by
  the server (``json_populate_recordset``). One fixed statement per column set,
  so neither psycopg nor the server parses a new query each time, and the rows
  are encoded by the C JSON encoder instead of one Django field at a time.
- ``insert_rows``: each value its own parameter in an ``INSERT ... VALUES
  (...), (...)``, adapted exactly as ``bulk_create`` adapts it (``pre_save``
  then ``get_db_prep_save``), on every database; ``insert_dicts`` uses it on SQLite.

Primary keys are not returned: callers that need them use ``bulk_create``.
"""

import functools
import json
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import AutoField, Model


def insert_rows(objs: list[Model]) -> None:
    if not objs:
        return
    model = type(objs[0])
    fields = [
        field
        for field in model._meta.concrete_fields
        if not getattr(field, "generated", False) and not (isinstance(field, AutoField) and objs[0].pk is None)
    ]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES {', '.join([row] * len(objs))}"
    )
    params = [field.get_db_prep_save(field.pre_save(obj, add=True), connection) for obj in objs for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def insert_dicts(model: type[Model], rows: list[dict], *, along: tuple[str, list] | None = None) -> None:
    """Insert rows given as dicts of field attnames (``run_id``, not ``run``);
    values are what the model's fields hold (datetimes, decimals, JSON
    documents). A field a row leaves out takes its default, as a new instance
    would; nothing else runs per field (no ``pre_save``).

    ``along``: another INSERT, ``(sql, params)``, to run with these rows: on
    PostgreSQL in the same statement (a data-modifying WITH), one round trip
    for both; elsewhere just before them."""
    if along is not None and (connection.vendor != "postgresql" or not rows):
        with connection.cursor() as cursor:
            cursor.execute(*along)
        along = None
    if not rows:
        return
    if connection.vendor != "postgresql":
        insert_rows([model(**row) for row in rows])
        return
    defaults = {
        field.attname: field.get_default()
        for field in model._meta.concrete_fields
        if not isinstance(field, AutoField) and not getattr(field, "generated", False)
    }
    rows = [{**defaults, **row} for row in rows]
    sql, params = _json_insert_sql(model, tuple(rows[0])), [json.dumps(rows, default=_json_default)]
    if along is not None:
        sql, params = f"WITH along AS ({along[0]}) {sql}", [*along[1], *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@functools.lru_cache(maxsize=64)
def _json_insert_sql(model: type[Model], attnames: tuple[str, ...]) -> str:
    meta = model._meta
    columns = ", ".join(
        connection.ops.quote_name(meta.get_field(name).column) for name in _field_names(model, attnames)
    )
    table = connection.ops.quote_name(meta.db_table)
    # A JSON null becomes SQL NULL, as Django stores a None in any field; a
    # JSON value for a json/jsonb column is kept as it is; strings are read by
    # each column type's input function (timestamps, numerics).
    return f"INSERT INTO {table} ({columns}) SELECT {columns} FROM json_populate_recordset(NULL::{table}, %s)"


def _field_names(model: type[Model], attnames: tuple[str, ...]) -> list[str]:
    by_attname = {field.attname: field for field in model._meta.concrete_fields}
    fields = [by_attname[name] for name in attnames]
    # The server matches the JSON keys to column names.
    if any(field.column != field.attname for field in fields):
        raise ValueError(f"insert_dicts needs {model.__name__}'s columns named as its fields")
    return [field.name for field in fields]


def _json_default(value):
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("insert_dicts takes timezone-aware datetimes only")
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
