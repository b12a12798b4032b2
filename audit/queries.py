"""The audit app's hand-written SQL, each statement one the ORM cannot express
or measurably slows on a path someone waits on; everything else in the app
goes through the ORM. Tested on PostgreSQL and SQLite (tests/audit/test_queries.py).

Writing:

- ``insert_dicts`` and ``insert_rows``: multi-row INSERTs for the chain's
  appends and the engine's step rows. ``bulk_create`` on PostgreSQL sends its
  rows as one array per column (``UNNEST``), and psycopg writes every text and
  JSON value into those arrays through a regular expression per quote
  character: for rows of JSON documents that escaping costs more CPU than the
  insert itself. ``insert_dicts`` sends every row in one JSON parameter on
  PostgreSQL, unpacked by the server (``json_populate_recordset``): one fixed
  statement per column set, the rows encoded by the C JSON encoder.
  ``insert_rows`` gives each value its own parameter in ``INSERT ... VALUES
  (...), (...)``, adapted exactly as ``bulk_create`` adapts it (``pre_save``
  then ``get_db_prep_save``), on every database; ``insert_dicts`` uses it on
  SQLite. Primary keys are not returned: callers that need them use ``bulk_create``.
- ``chain_head_lock``: the chain's head under its lock (an advisory lock and
  the read in one round trip on PostgreSQL).

Reading the chain (verification and exports), as plain tuples of ``COLUMNS``
with the ``ts`` text the hash covers, so that no model instance or datetime is
built per event: ``event_rows`` (a server-side cursor on PostgreSQL),
``event_batches`` (keyset batches), ``stored_hash``, ``last_seq`` and
``first_unnamed_redaction``.
"""

import functools
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connection
from django.db.models import AutoField, Model

from audit.chain import GENESIS_HASH, format_ts


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


# An arbitrary constant naming the chain head's advisory lock on PostgreSQL.
CHAIN_LOCK_KEY = 0x6B65656C


def chain_head_lock() -> tuple[int, str]:
    """Take the chain head for this transaction and return (last seq, last hash).

    PostgreSQL: a transaction-scoped advisory lock, then a fresh read of the
    newest row (READ COMMITTED gives each statement a new snapshot, so the read
    sees whatever the previous holder committed). SQLite: the immediate
    transaction already holds the database's write lock.
    """
    head = "SELECT seq, hash FROM audit_auditevent ORDER BY seq DESC LIMIT 1"
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Both in one round trip: without parameters psycopg sends the
            # simple query protocol, which runs each statement with a snapshot
            # of its own, so the read still follows the lock.
            cursor.execute(f"SELECT pg_advisory_xact_lock({CHAIN_LOCK_KEY:d}); {head}")
            cursor.nextset()
        else:
            cursor.execute(head)
        row = cursor.fetchone()
    return (row[0], row[1]) if row else (0, GENESIS_HASH)


# What verification and exports read of an event, in this order.
COLUMNS = (
    "seq, {ts}, actor_id, actor_name, action, object_type, object_id, workspace_id, "
    "pipeline_id, payload, payload_sha256, prev_hash, hash, redacted_at IS NOT NULL"
)
# PostgreSQL writes the chain's ts text itself (format_ts's "%Y-%m-%dT%H:%M:%S.%fZ"),
# so no datetime is built and formatted per row: the slowest part of a Python walk.
_POSTGRES_TS = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# SQLite: an expression has no declared type, so the ts text comes back as
# stored instead of through Django's datetime converter.
_SQLITE_TS = "ts || ''"


def _ts_text(value) -> str:
    # PostgreSQL hands back aware datetimes; SQLite the stored UTC text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_ts(value)


def _sqlite_ts_text(value: str) -> str:
    """Django keeps an aware datetime in SQLite as naive UTC text, with or
    without microseconds ("2026-01-01 10:00:00[.000137]"); rewrite that shape
    by slicing and leave any other to the general path."""
    if len(value) == 26 and value[10] == " ":
        return value[:10] + "T" + value[11:] + "Z"
    if len(value) == 19 and value[10] == " ":
        return value[:10] + "T" + value[11:] + ".000000Z"
    return _ts_text(value)


def event_rows(batch_size: int, low: int | None = None, high: int | None = None) -> Iterator[tuple]:
    """Events in seq order (those with low <= seq <= high, when given),
    streamed in batches so memory stays flat over millions of rows. On
    PostgreSQL through a server-side cursor, which lives inside a
    transaction: the caller holds one."""
    where = "WHERE seq BETWEEN %s AND %s" if low is not None else ""
    params = [low, high] if low is not None else []
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor(name="audit_verify") as cursor:
            cursor.execute(
                f"SELECT {COLUMNS.format(ts=_POSTGRES_TS)} FROM audit_auditevent {where} ORDER BY seq", params
            )
            # Whole batches: iterating the server-side cursor row by row costs
            # more than everything else per row.
            while rows := cursor.fetchmany(batch_size):
                yield from rows
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {COLUMNS.format(ts=_SQLITE_TS)} FROM audit_auditevent {where} ORDER BY seq", params)
        ts_text = _sqlite_ts_text
        while rows := cursor.fetchmany(batch_size):
            for row in rows:
                yield (row[0], ts_text(row[1]), *row[2:])


def event_batches(low: int, high: int, batch: int) -> Iterator[list[tuple]]:
    """Batches of events with low <= seq <= high, in seq order, read by keyset
    so that no query holds more than one batch and none uses OFFSET."""
    postgres = connection.vendor == "postgresql"
    columns = COLUMNS.format(ts=_POSTGRES_TS if postgres else _SQLITE_TS)
    sql = f"SELECT {columns} FROM audit_auditevent WHERE seq >= %s AND seq <= %s ORDER BY seq LIMIT %s"
    after = low
    while after <= high:
        with connection.cursor() as cursor:
            cursor.execute(sql, [after, high, batch])
            rows = cursor.fetchall()
        if not rows:
            return
        if not postgres:
            rows = [(row[0], _sqlite_ts_text(row[1]), *row[2:]) for row in rows]
        yield rows
        after = rows[-1][0] + 1


def stored_hash(seq: int) -> str | None:
    """The stored hash of event ``seq``; None when there is none."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT hash FROM audit_auditevent WHERE seq = %s", [seq])
        row = cursor.fetchone()
    return row[0] if row else None


def last_seq() -> int:
    """The newest event's seq; 0 for an empty chain."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(seq) FROM audit_auditevent")
        return cursor.fetchone()[0] or 0


def first_unnamed_redaction() -> int | None:
    """The seq of the first redacted event that no later ``audit.redacted``
    event names. ``audit_redact`` writes the tombstone and that event in one
    transaction, and object_id is hashed into the event, so a tombstone
    without one was written by hand with the one UPDATE the guards allow.
    Found on the object index."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT min(e.seq) FROM audit_auditevent e WHERE e.redacted_at IS NOT NULL AND NOT EXISTS ("
            "SELECT 1 FROM audit_auditevent r WHERE r.object_type = 'audit_event'"
            " AND r.object_id = CAST(e.seq AS TEXT) AND r.action = 'audit.redacted' AND r.seq > e.seq)"
        )
        return cursor.fetchone()[0]
