"""Reads of the audit chain that matter: verification of the stored chain."""

from datetime import UTC, datetime

from django.db import connection, transaction

from audit.chain import ChainResult, format_ts, verify_rows

_COLUMNS = (
    "seq, ts, actor_id, actor_name, action, object_type, object_id, workspace_id, "
    "pipeline_id, payload, payload_sha256, prev_hash, hash, redacted_at IS NOT NULL"
)


def _ts_text(value) -> str:
    # PostgreSQL hands back aware datetimes; SQLite the stored UTC text.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return format_ts(value)


def _stored_rows(batch_size: int):
    """Every event in seq order as plain tuples, streamed in batches so memory
    stays flat over millions of rows (a server-side cursor on PostgreSQL)."""
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor(name="audit_verify") as cursor:
            cursor.itersize = batch_size
            cursor.execute(f"SELECT {_COLUMNS} FROM audit_auditevent ORDER BY seq")
            for row in cursor:
                yield (row[0], _ts_text(row[1]), *row[2:])
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {_COLUMNS} FROM audit_auditevent ORDER BY seq")
        while rows := cursor.fetchmany(batch_size):
            for row in rows:
                yield (row[0], _ts_text(row[1]), *row[2:])


def audit_chain_verify(*, batch_size: int = 10_000) -> ChainResult:
    """Recompute the whole stored chain; the first break wins."""
    if connection.vendor == "postgresql":
        # A named (server-side) cursor lives inside a transaction.
        with transaction.atomic():
            return verify_rows(_stored_rows(batch_size))
    return verify_rows(_stored_rows(batch_size))
