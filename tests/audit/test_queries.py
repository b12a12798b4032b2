"""audit/queries.py, the audit app's hand-written SQL, on the database the
suite runs on (CI runs it on PostgreSQL and SQLite): insert_dicts sends rows as
one JSON parameter on PostgreSQL and as Model instances through insert_rows on
SQLite, the same rows either way; the chain's reads give what the ORM stores."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.chain import format_ts
from audit.models import REDACTED_PAYLOAD, AuditEvent
from audit.queries import (
    chain_head_lock,
    event_batches,
    event_rows,
    first_unnamed_redaction,
    insert_dicts,
    last_seq,
    stored_hash,
)
from audit.services import audit_record, audit_redact
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.engine import run_start


@pytest.fixture
def triage_run(db, django_capture_on_commit_callbacks):
    call_command("keel_demo", stdout=io.StringIO())
    ticket = {"subject": "Hello", "body": "Where is my parcel?", "customer_email": "ada@example.com"}
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(
            pipeline=Pipeline.objects.get(slug="support-triage"), input=ticket, actor=None, trigger="cli"
        )
    return run


def _row(run: Run, position: int, **fields) -> dict:
    return {
        "run_id": run.pk, "position": position, "name": f"step {position}", "kind": "transform", "status": "completed",
        "input": {"a": [1, 2.5, None, True], "é": "ü"}, "output": None, "output_sha256": "", "decision": None,
        "recordings": [], "input_tokens": 0, "output_tokens": 0, "cost": 0, "error": "", "attempts": 1,
        "started_at": None, "finished_at": None, **fields,
    }  # fmt: skip


def test_rows_inserted_as_dicts_read_back_as_the_orm_would_store_them(triage_run):
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    insert_dicts(StepRun, [
        _row(triage_run, 1),
        _row(triage_run, 2, output={"text": "x", "nested": {"n": 3}}, decision={"passed": False}, recordings=[{"k": 1}],
             cost=Decimal("0.000125"), input_tokens=7, started_at=at, finished_at=at),
        _row(triage_run, 3, output="a bare JSON string", cost=0.1 + 0.2),
    ])  # fmt: skip
    first, second, third = StepRun.objects.filter(run=triage_run).order_by("position")
    assert first.input == {"a": [1, 2.5, None, True], "é": "ü"}
    # None is SQL NULL in a JSON field, as Django stores it, not a JSON null.
    assert StepRun.objects.filter(run=triage_run, output__isnull=True).count() == 1
    assert first.output is None and first.decision is None
    assert second.output == {"text": "x", "nested": {"n": 3}}
    assert second.decision == {"passed": False} and second.recordings == [{"k": 1}]
    assert second.cost == Decimal("0.000125") and second.input_tokens == 7
    assert second.started_at == at and second.finished_at == at
    assert StepRun.objects.filter(run=triage_run, started_at__gte=at).count() == 1
    assert third.output == "a bare JSON string"
    assert third.cost == Decimal("0.300000")


def test_nothing_is_inserted_for_no_rows(triage_run):
    insert_dicts(StepRun, [])
    assert not StepRun.objects.filter(run=triage_run).exists()


# The chain's reads: plain tuples with the ts text the hash covers, the same on both databases.


@pytest.fixture
def chain(db):
    return [
        audit_record(action="test.event", object_type="thing", object_id=n, payload={"n": n, "é": "ü"}, actor="test")
        for n in range(5)
    ]


def test_streamed_rows_and_keyset_batches_read_every_event_as_stored(chain):
    streamed = list(event_rows(2, chain[0].seq, chain[-1].seq))
    batched = [row for batch in event_batches(chain[0].seq, chain[-1].seq, 2) for row in batch]
    assert streamed == batched
    assert [row[0] for row in streamed] == [event.seq for event in chain]
    for row, event in zip(streamed, chain, strict=True):
        stored = AuditEvent.objects.get(seq=event.seq)
        assert row[1] == format_ts(stored.ts)  # the text the hash covers, without a datetime per row
        assert row[2:] == (stored.actor_id, stored.actor_name, stored.action, stored.object_type, stored.object_id,
                           stored.workspace_id, stored.pipeline_id, stored.payload, stored.payload_sha256,
                           stored.prev_hash, stored.hash, False)  # fmt: skip
    assert [row[0] for row in event_rows(10, chain[1].seq, chain[2].seq)] == [chain[1].seq, chain[2].seq]
    assert [row[0] for row in event_rows(3)][-5:] == [event.seq for event in chain]  # the whole chain, to its head
    assert [len(batch) for batch in event_batches(chain[0].seq, chain[-1].seq, 2)] == [2, 2, 1]


def test_the_head_the_newest_seq_and_a_stored_hash(chain):
    assert chain_head_lock() == (chain[-1].seq, chain[-1].hash)
    assert last_seq() == chain[-1].seq
    assert stored_hash(chain[2].seq) == chain[2].hash
    assert stored_hash(chain[-1].seq + 1) is None


def test_a_redaction_is_named_by_its_record_and_one_made_by_hand_is_found(chain, superuser):
    assert first_unnamed_redaction() is None
    audit_redact(seq=chain[1].seq, reason="erasure request", actor=superuser)
    assert first_unnamed_redaction() is None  # audit.redacted names it
    # The one UPDATE the guards allow, made without its record.
    AuditEvent.objects.filter(seq=chain[3].seq).update(payload=REDACTED_PAYLOAD, redacted_at=timezone.now())
    assert first_unnamed_redaction() == chain[3].seq
