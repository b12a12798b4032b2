"""The audit chain: what appending through the one entry point costs, and how
fast the stored chain verifies.

- ``audit_append_ratio``: events/s through ``audit_record``, each in its own
  transaction, over events/s of a bare ``AuditEvent.objects.create`` of the
  same row (fields computed beforehand) in its own transaction. Both run on
  the same database in the same run, interleaved in rounds (alternating which
  goes first) so that machine noise falls on both alike. Target: at least 0.5.
- ``audit_verify_events_per_s``: ``audit_chain_verify()`` over 1,000,000
  events, seeded in bulk once and kept between runs. Target: at least 200,000.

The appended events are deleted again (guards lifted for that statement) so
that the seeded chain stays exactly 1,000,000 events long.
"""

import hashlib
import time
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from audit.canonical import canonical_text
from audit.chain import GENESIS_HASH, event_hash, format_ts
from audit.db import install_guards, remove_guards
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record

SEED_COUNT = 1_000_000
APPEND_ROUNDS = 6
APPEND_PER_ROUND = 500
VERIFY_RUNS = 3

_COLUMNS = (
    "seq", "ts", "actor_id", "actor_name", "action", "object_type", "object_id",
    "workspace_id", "pipeline_id", "payload", "payload_sha256", "prev_hash", "hash",
)  # fmt: skip
_ACTORS = [(None, "system"), (None, "system:worker"), (3, "Zoë Ångström"), (4, "李雷"), (5, "ada")]
_ACTIONS = ["run.started", "step.completed", "review.decided", "delivery.sent", "run.completed"]
_SEED_START = datetime(2026, 1, 1, tzinfo=UTC)


def run() -> dict[str, float]:
    _ensure_seeded()
    figures = _append_figures()
    figures.update(_verify_figures())
    return figures


# Seeding


def _object_id(number: int) -> str:
    """A synthetic run's object id: never a real run's (those are plain
    numbers), so replay and every per-run reading of the chain pass them by."""
    return f"bench-{number}"


def _seed_rows(count: int):
    """A valid chain of ``count`` events, as (chain ts text, stored ts, *columns)."""
    prev = GENESIS_HASH
    sha256 = hashlib.sha256
    for seq in range(1, count + 1):
        moment = _SEED_START + timedelta(microseconds=137 * seq)
        ts = format_ts(moment)
        actor_id, actor_name = _ACTORS[seq % len(_ACTORS)]
        action = _ACTIONS[seq % len(_ACTIONS)]
        workspace_id = seq % 7 or None
        pipeline_id = seq % 31 or None
        payload = canonical_text(
            {"run": seq // 5, "step": "classify", "score": (seq % 1000) / 997, "note": "é" * (seq % 3) or None}
        )
        payload_hash = sha256(payload.encode()).hexdigest()
        digest = event_hash(
            seq=seq,
            ts=ts,
            actor_id=actor_id,
            actor_name=actor_name,
            action=action,
            object_type="run",
            object_id=_object_id(seq // 5),
            workspace_id=workspace_id,
            pipeline_id=pipeline_id,
            payload_sha256=payload_hash,
            prev_hash=prev,
        )
        yield (moment, seq, ts, actor_id, actor_name, action, "run", _object_id(seq // 5),
               workspace_id, pipeline_id, payload, payload_hash, prev, digest)  # fmt: skip
        prev = digest


def _is_seeded() -> bool:
    """Exactly seqs 1..SEED_COUNT, and the newest one links to the one before
    it; verification itself then checks all the rest."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*), min(seq), max(seq) FROM audit_auditevent")
        if tuple(cursor.fetchone()) != (SEED_COUNT, 1, SEED_COUNT):
            return False
    last_two = list(AuditEvent.objects.filter(seq__gte=SEED_COUNT - 1).order_by("seq"))
    return len(last_two) == 2 and last_two[1].prev_hash == last_two[0].hash


def _empty_table() -> None:
    with transaction.atomic():
        remove_guards(connection)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent")
        install_guards(connection)


def _seed() -> None:
    print(f"seeding {SEED_COUNT:,} events (once; kept between runs)...", flush=True)
    started = time.perf_counter()
    _empty_table()
    rows = _seed_rows(SEED_COUNT)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.connection.cursor() as cursor:
                columns = ", ".join(_COLUMNS)
                with cursor.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row[1:])
        else:
            # SQLite keeps an aware datetime as naive UTC text, as Django writes it.
            placeholders = ", ".join("?" * len(_COLUMNS))
            sql = f"INSERT INTO audit_auditevent ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
            stored = ((row[1], str(row[0].replace(tzinfo=None)), *row[3:]) for row in rows)
            with connection.cursor() as cursor:
                cursor.executemany(sql, stored)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_auditevent")
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)


def _ensure_seeded() -> None:
    _drop_appended()
    if not _is_seeded():
        _seed()


def _drop_appended() -> None:
    """Remove what an append run added (or left behind when interrupted)."""
    if not AuditEvent.objects.filter(seq__gt=SEED_COUNT).exists():
        return
    with transaction.atomic():
        remove_guards(connection)
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE seq > %s", [SEED_COUNT])
        install_guards(connection)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE audit_auditevent")


# Appending


def _payload(number: int) -> dict:
    return {"run": number, "step": "classify", "tokens": {"in": 812, "out": 64}, "score": 0.87}


def _time_entry_point(count: int, first: int) -> float:
    started = time.perf_counter()
    for number in range(first, first + count):
        audit_record(action="step.completed", object_type="run", object_id=_object_id(number), payload=_payload(number))
    return time.perf_counter() - started


def _bare_rows(count: int, first: int) -> list[dict]:
    """The same rows the entry point would write next, computed beforehand."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, prev = head if head else (0, GENESIS_HASH)
    now = timezone.now()
    rows = []
    for offset, number in enumerate(range(first, first + count)):
        seq += 1
        ts = now + timedelta(microseconds=offset)
        payload = canonical_text(_payload(number))
        fields = {
            "actor_id": None,
            "actor_name": "system",
            "action": "step.completed",
            "object_type": "run",
            "object_id": _object_id(number),
            "workspace_id": None,
            "pipeline_id": None,
            "payload_sha256": hashlib.sha256(payload.encode()).hexdigest(),
        }
        digest = event_hash(seq=seq, ts=format_ts(ts), prev_hash=prev, **fields)
        rows.append({"seq": seq, "ts": ts, "payload": payload, "prev_hash": prev, "hash": digest, **fields})
        prev = digest
    return rows


def _time_bare_create(rows: list[dict]) -> float:
    started = time.perf_counter()
    for row in rows:
        with transaction.atomic():
            AuditEvent.objects.create(**row)
    return time.perf_counter() - started


def _append_figures() -> dict[str, float]:
    entry_seconds = bare_seconds = 0.0
    number = 0
    for round_ in range(APPEND_ROUNDS):
        # Alternate which goes first, so neither always meets a warmer cache.
        for kind in ("entry", "bare") if round_ % 2 == 0 else ("bare", "entry"):
            if kind == "entry":
                entry_seconds += _time_entry_point(APPEND_PER_ROUND, number)
            else:
                bare_seconds += _time_bare_create(_bare_rows(APPEND_PER_ROUND, number))
            number += APPEND_PER_ROUND
    # The appended events (both kinds) form a valid chain on top of the seed.
    result = audit_chain_verify()
    if not result.ok:
        raise RuntimeError(f"the append benchmark broke the chain at #{result.broken_seq}: {result.reason}")
    _drop_appended()
    count = APPEND_ROUNDS * APPEND_PER_ROUND
    entry_rate, bare_rate = count / entry_seconds, count / bare_seconds
    return {
        "audit_append_ratio": round(entry_rate / bare_rate, 3),
        "audit_append_events_per_s": round(entry_rate, 1),
        "audit_bare_insert_events_per_s": round(bare_rate, 1),
    }


# Verifying


def _verify_figures() -> dict[str, float]:
    best = None
    for _ in range(VERIFY_RUNS):
        started = time.perf_counter()
        result = audit_chain_verify()
        seconds = time.perf_counter() - started
        if not result.ok or result.count != SEED_COUNT:
            raise RuntimeError(f"the seeded chain does not verify: #{result.broken_seq} {result.reason}")
        best = seconds if best is None else min(best, seconds)
    return {
        "audit_verify_events_per_s": round(SEED_COUNT / best, 1),
        "audit_verify_seconds": round(best, 3),
    }
