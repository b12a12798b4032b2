"""Reads of the audit chain that matter: verification of the stored chain."""

import json
import os
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connection, transaction

from audit.chain import GENESIS_HASH, ChainResult, format_ts, verify_rows

_COLUMNS = (
    "seq, {ts}, actor_id, actor_name, action, object_type, object_id, workspace_id, "
    "pipeline_id, payload, payload_sha256, prev_hash, hash, redacted_at IS NOT NULL"
)
# The first redacted event that no later ``audit.redacted`` event names.
# ``audit_redact`` writes the tombstone and that event in one transaction, and
# object_id is hashed into the event, so a tombstone without one was written by
# hand with the one UPDATE the guards allow. Found on the object index.
_UNNAMED_REDACTION = (
    "SELECT min(e.seq) FROM audit_auditevent e WHERE e.redacted_at IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM audit_auditevent r WHERE r.object_type = 'audit_event' AND r.object_id = CAST(e.seq AS TEXT)"
    " AND r.action = 'audit.redacted' AND r.seq > e.seq)"
)
UNNAMED_REDACTION_REASON = "redacted, but no later audit.redacted event names it (a redaction made by hand)"

# Chains at least this long are verified in two processes (see audit_chain_verify).
SPLIT_FROM = 200_000

# PostgreSQL writes the chain's ts text itself (format_ts's "%Y-%m-%dT%H:%M:%S.%fZ"),
# so no datetime is built and formatted per row: the slowest part of a Python walk.
_POSTGRES_TS = "to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


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


def _stored_rows(batch_size: int, low: int | None = None, high: int | None = None):
    """Events in seq order (those with low <= seq <= high, when given) as plain
    tuples, streamed in batches so memory stays flat over millions of rows (a
    server-side cursor on PostgreSQL)."""
    where = "WHERE seq BETWEEN %s AND %s" if low is not None else ""
    params = [low, high] if low is not None else []
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        with connection.connection.cursor(name="audit_verify") as cursor:
            columns = _COLUMNS.format(ts=_POSTGRES_TS)
            cursor.execute(f"SELECT {columns} FROM audit_auditevent {where} ORDER BY seq", params)
            # Whole batches: iterating the server-side cursor row by row costs
            # more than everything else per row.
            while rows := cursor.fetchmany(batch_size):
                yield from rows
        return
    with connection.cursor() as cursor:
        # An expression has no declared type, so the ts text comes back as stored
        # instead of through Django's datetime converter.
        columns = _COLUMNS.format(ts="ts || ''")
        cursor.execute(f"SELECT {columns} FROM audit_auditevent {where} ORDER BY seq", params)
        ts_text = _sqlite_ts_text
        while rows := cursor.fetchmany(batch_size):
            for row in rows:
                yield (row[0], ts_text(row[1]), *row[2:])


def _verify_range(batch_size: int, low: int | None = None, high: int | None = None, **start) -> ChainResult:
    if connection.vendor == "postgresql":
        # A named (server-side) cursor lives inside a transaction.
        with transaction.atomic():
            return verify_rows(_stored_rows(batch_size, low, high), **start)
    return verify_rows(_stored_rows(batch_size, low, high), **start)


def _verify_newer_half(batch_size: int, split: int, last: int) -> list | None:
    """In the forked process: walk split+1..last, linked to the stored hash of
    #split. None when there is no #split (the older half will find that)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT hash FROM audit_auditevent WHERE seq = %s", [split])
        row = cursor.fetchone()
    if row is None:
        return None
    result = _verify_range(batch_size, split + 1, last, first_seq=split + 1, first_prev=row[0])
    return [result.count, result.head_hash, result.broken_seq, result.reason]


def _in_forked_process(function, *args) -> Callable[[], list | None]:
    """Start ``function(*args)`` in a forked copy of this process; return a
    callable that waits for its JSON-able result (or raises its error)."""
    # Neither process may share the other's database connection: close ours
    # (we are outside any transaction) so that both open their own.
    connection.close()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            os.close(reader)
            try:
                outcome = {"result": function(*args)}
            except BaseException as exc:  # everything goes back to the parent
                outcome = {"error": f"{type(exc).__name__}: {exc}"}
            connection.close()
            with os.fdopen(writer, "w") as pipe:
                json.dump(outcome, pipe)
        finally:
            # Never return into the caller's code, nor run its exit handlers.
            os._exit(0)
    os.close(writer)

    def wait() -> list | None:
        with os.fdopen(reader) as pipe:
            text = pipe.read()
        os.waitpid(pid, 0)
        outcome = json.loads(text) if text else {"error": "the verifying process died"}
        if "error" in outcome:
            raise RuntimeError(f"audit chain verification failed in a second process: {outcome['error']}")
        return outcome["result"]

    return wait


def _verify_split(batch_size: int, last: int) -> ChainResult:
    """Walk 1..split here and split+1..last in a forked process at the same
    time, then join the halves as one walk would have found them."""
    split = last // 2
    newer = _in_forked_process(_verify_newer_half, batch_size, split, last)
    older = _verify_range(batch_size, 1, split)
    newer_result = newer()
    if not older.ok:
        return older  # the first break wins, and it is in the older half
    if older.count != split or newer_result is None:
        # Events missing at the end of the older half: a break that only one
        # walk over the seam names exactly; rare, so walk it all again.
        return _verify_range(batch_size)
    count, head_hash, broken_seq, reason = newer_result
    return ChainResult(split + count, head_hash, broken_seq, reason)


def audit_chain_verify(*, batch_size: int = 10_000) -> ChainResult:
    """Recompute the whole stored chain; the first break wins.

    A long chain, verified outside any transaction on a machine with more than
    one core, is walked in two halves at once (a forked process takes the
    newer half, linked to the stored hash at the seam): the hashing is
    Python's and needs a second process to use a second core. The result is
    the one a single walk finds over the events that existed when it began.
    Inside a transaction (the tests, or a caller's) uncommitted events are
    visible to this connection only, so the walk stays in this process.
    """
    if not connection.in_atomic_block and (os.cpu_count() or 1) > 1 and hasattr(os, "fork"):
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(seq) FROM audit_auditevent")
            last = cursor.fetchone()[0] or 0
        if last >= SPLIT_FROM:
            return _redactions_named(_verify_split(batch_size, last))
    return _redactions_named(_verify_range(batch_size))


def _redactions_named(result: ChainResult) -> ChainResult:
    """The walk's result, or an earlier break: a redacted event that no later
    ``audit.redacted`` event names. Every link still holds after such a
    redaction (the one UPDATE the guards allow keeps every hash), so only the
    missing record of it shows that it was made by hand."""
    with connection.cursor() as cursor:
        cursor.execute(_UNNAMED_REDACTION)
        seq = cursor.fetchone()[0]
        if seq is None or (not result.ok and result.broken_seq <= seq):
            return result
        cursor.execute("SELECT hash FROM audit_auditevent WHERE seq = %s", [seq - 1])
        row = cursor.fetchone()
    return ChainResult(seq - 1, row[0] if row else GENESIS_HASH, seq, UNNAMED_REDACTION_REASON)
