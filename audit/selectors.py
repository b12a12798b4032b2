"""Reads of the audit chain that matter: verification of the stored chain."""

import json
import os
from collections.abc import Callable

from django.db import connection, transaction

from audit.chain import GENESIS_HASH, ChainResult, verify_rows
from audit.queries import event_rows, first_unnamed_redaction, last_seq, stored_hash

UNNAMED_REDACTION_REASON = "redacted, but no later audit.redacted event names it (a redaction made by hand)"

# Chains at least this long are verified in two processes (see audit_chain_verify).
SPLIT_FROM = 200_000


def _verify_range(batch_size: int, low: int | None = None, high: int | None = None, **start) -> ChainResult:
    if connection.vendor == "postgresql":
        # A named (server-side) cursor lives inside a transaction.
        with transaction.atomic():
            return verify_rows(event_rows(batch_size, low, high), **start)
    return verify_rows(event_rows(batch_size, low, high), **start)


def _verify_newer_half(batch_size: int, split: int, last: int) -> list | None:
    """In the forked process: walk split+1..last, linked to the stored hash of
    #split. None when there is no #split (the older half will find that)."""
    seam = stored_hash(split)
    if seam is None:
        return None
    result = _verify_range(batch_size, split + 1, last, first_seq=split + 1, first_prev=seam)
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
        last = last_seq()
        if last >= SPLIT_FROM:
            return _redactions_named(_verify_split(batch_size, last))
    return _redactions_named(_verify_range(batch_size))


def _redactions_named(result: ChainResult) -> ChainResult:
    """The walk's result, or an earlier break: a redacted event that no later
    ``audit.redacted`` event names. Every link still holds after such a
    redaction (the one UPDATE the guards allow keeps every hash), so only the
    missing record of it shows that it was made by hand."""
    seq = first_unnamed_redaction()
    if seq is None or (not result.ok and result.broken_seq <= seq):
        return result
    return ChainResult(seq - 1, stored_hash(seq - 1) or GENESIS_HASH, seq, UNNAMED_REDACTION_REASON)
