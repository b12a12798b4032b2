"""``manage.py audit_verify`` on the real database: tampering done with SQL
behind the guards' back is named by its first broken sequence number.

Each test lifts the append-only guards with ``remove_guards`` to tamper, as
someone with the database owner's rights could, and puts them back after.
"""

import hashlib
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from audit.canonical import canonical_bytes
from audit.db import install_guards, remove_guards
from audit.models import AuditEvent
from audit.services import audit_record

BASE_DIR = Path(settings.BASE_DIR)


def _record_events(count: int) -> list[AuditEvent]:
    return [
        audit_record(
            action="run.started",
            object_type="run",
            object_id=number,
            payload={"n": number, "name": "Zoë", "score": number / 3},
            workspace_id=1,
            pipeline_id=None if number % 2 else number,
        )
        for number in range(count)
    ]


@pytest.fixture
def chain(db) -> list[AuditEvent]:
    """Five events on top of whatever the test database already holds."""
    return _record_events(5)


@pytest.fixture
def unguarded(db):
    remove_guards(connection)
    yield
    install_guards(connection)


def _sql(statement: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def _verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def _renumber(seqs_from: int, shift: int) -> None:
    """Move every event from ``seqs_from`` on by ``shift``, through negative
    numbers so that the primary key never collides half-way."""
    _sql("UPDATE audit_auditevent SET seq = -seq WHERE seq >= %s", [seqs_from])
    _sql("UPDATE audit_auditevent SET seq = -seq + %s WHERE seq < 0", [shift])


def test_an_untouched_chain_prints_its_count_and_head(chain):
    output = _verify()
    head = AuditEvent.objects.order_by("-seq").first()
    assert output.strip() == f"Audit chain intact: {AuditEvent.objects.count()} events, head {head.hash}"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("payload", '{"n":2,"name":"Zoë","score":0.6666666666666667,"extra":1}'),
        ("action", "run.forged"),
        ("actor_name", "mallory"),
        ("object_id", "99"),
        ("workspace_id", 2),
        ("pipeline_id", 7),
        ("payload_sha256", "0" * 64),
        ("prev_hash", "f" * 64),
        ("hash", "e" * 64),
    ],
)
def test_a_changed_column_is_named_by_its_seq(chain, unguarded, column, value):
    target = chain[2].seq
    _sql(f"UPDATE audit_auditevent SET {column} = %s WHERE seq = %s", [value, target])
    with pytest.raises(CommandError, match=rf"broken at #{target}:"):
        _verify()


def test_a_changed_timestamp_is_named_by_its_seq(chain, unguarded):
    target = chain[1].seq
    AuditEvent.objects.filter(seq=target).update(ts=chain[1].ts.replace(microsecond=chain[1].ts.microsecond ^ 1))
    with pytest.raises(CommandError, match=rf"broken at #{target}:"):
        _verify()


def test_a_deleted_event_is_named_by_its_seq(chain, unguarded):
    target = chain[2].seq
    _sql("DELETE FROM audit_auditevent WHERE seq = %s", [target])
    with pytest.raises(CommandError, match=rf"broken at #{target}: expected #{target}, found #{target + 1}"):
        _verify()


def test_an_inserted_event_is_found_at_the_event_after_it(chain, unguarded):
    """The forged event is correctly numbered, linked and hashed; the event it
    pushed along no longer links to the one before it."""
    target = chain[2].seq
    _renumber(target, 1)
    prev = chain[1].hash
    payload = '{"forged":true}'
    forged = AuditEvent(
        seq=target,
        ts=chain[1].ts,
        actor_name="mallory",
        action="run.started",
        object_type="run",
        object_id="1",
        payload=payload,
        payload_sha256=hashlib.sha256(payload.encode()).hexdigest(),
        prev_hash=prev,
    )
    envelope = {
        "seq": forged.seq,
        "ts": forged.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": {"id": None, "name": "mallory"},
        "action": forged.action,
        "object_type": forged.object_type,
        "object_id": forged.object_id,
        "workspace_id": None,
        "pipeline_id": None,
        "payload_sha256": forged.payload_sha256,
        "prev_hash": prev,
    }
    forged.hash = hashlib.sha256(canonical_bytes(envelope)).hexdigest()
    forged.save(force_insert=True)

    with pytest.raises(CommandError, match=rf"broken at #{target + 1}: previous hash"):
        _verify()


def test_two_swapped_events_are_named_by_the_first(chain, unguarded):
    first, second = chain[1].seq, chain[3].seq
    _sql("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [first])
    _sql("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [first, second])
    _sql("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [second])
    with pytest.raises(CommandError, match=rf"broken at #{first}:"):
        _verify()


def _subprocess_env() -> dict[str, str]:
    """The environment that points manage.py at this test database."""
    env = dict(os.environ)
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        user, host, port = db["USER"] or "postgres", db["HOST"] or "127.0.0.1", db["PORT"] or 5432
        password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
        env["DATABASE_URL"] = f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    return env


def _manage_verify() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "audit_verify"],
        cwd=BASE_DIR,
        env=_subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_manage_py_exits_non_zero_on_a_broken_chain(transactional_db):
    events = _record_events(3)

    intact = _manage_verify()
    assert intact.returncode == 0, intact.stderr
    assert f"head {events[-1].hash}" in intact.stdout

    remove_guards(connection)
    try:
        _sql("UPDATE audit_auditevent SET action = 'run.forged' WHERE seq = %s", [events[1].seq])
    finally:
        install_guards(connection)
    broken = _manage_verify()
    assert broken.returncode != 0
    assert f"broken at #{events[1].seq}:" in broken.stderr


# A long chain is verified in two processes, the newer half in a forked one
# (audit.selectors.SPLIT_FROM); here a short committed chain takes that path.
_SPLIT_CASES = {
    # name: statements, given the seam (the last seq of the older half) and the newest seq
    "untouched": lambda seam, last: [],
    "an older event changed": lambda seam, last: [f"UPDATE audit_auditevent SET action = 'x' WHERE seq = {seam - 1}"],
    "a newer event changed": lambda seam, last: [f"UPDATE audit_auditevent SET object_id = 'x' WHERE seq = {last - 1}"],
    "the event at the seam deleted": lambda seam, last: [f"DELETE FROM audit_auditevent WHERE seq = {seam}"],
    "the event after the seam deleted": lambda seam, last: [f"DELETE FROM audit_auditevent WHERE seq = {seam + 1}"],
    "the hash at the seam changed": lambda seam, last: [
        f"UPDATE audit_auditevent SET hash = '{'a' * 64}' WHERE seq = {seam}"
    ],
    "the newest event deleted": lambda seam, last: [f"DELETE FROM audit_auditevent WHERE seq = {last}"],
    "events swapped across the seam": lambda seam, last: [
        f"UPDATE audit_auditevent SET seq = -1 WHERE seq = {seam - 1}",
        f"UPDATE audit_auditevent SET seq = {seam - 1} WHERE seq = {seam + 2}",
        f"UPDATE audit_auditevent SET seq = {seam + 2} WHERE seq = -1",
    ],
}


@pytest.mark.parametrize("case", list(_SPLIT_CASES))
def test_a_split_walk_finds_what_one_walk_finds(transactional_db, monkeypatch, case):
    from audit import selectors

    last = _record_events(10)[-1].seq
    remove_guards(connection)
    try:
        for statement in _SPLIT_CASES[case](last // 2, last):
            _sql(statement)
    finally:
        install_guards(connection)
    splits = []
    real_split = selectors._verify_split
    monkeypatch.setattr(selectors, "SPLIT_FROM", 1)
    monkeypatch.setattr(selectors, "_verify_split", lambda *args: splits.append(args) or real_split(*args))

    split = selectors.audit_chain_verify()
    one_walk = selectors._verify_range(10_000)

    assert splits, "the chain was not verified in two processes"
    assert (split.count, split.head_hash, split.broken_seq, split.reason) == (
        one_walk.count,
        one_walk.head_hash,
        one_walk.broken_seq,
        one_walk.reason,
    )
    assert split.ok == (case in ("untouched", "the newest event deleted"))
