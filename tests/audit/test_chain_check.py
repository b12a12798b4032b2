"""What the chain alone cannot show, ``audit_verify`` and the nightly check
(``audit_chain_check``, the beat task) still find: a redaction made by hand
with the one UPDATE the guards allow, a chain cut short at the end or emptied
(compared with the newest signed checkpoint). Tampering is done with SQL, as
the database owner could."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audit.checkpoints import CheckpointError, audit_checkpoint_write
from audit.db import install_guards, install_truncate_guards, remove_guards, remove_truncate_guards
from audit.models import REDACTED_PAYLOAD, AuditEvent
from audit.selectors import UNNAMED_REDACTION_REASON, audit_chain_verify
from audit.services import audit_chain_check, audit_record, audit_redact
from audit.tasks import audit_verify_chain_task, audit_write_checkpoint_task

KEY = "test-checkpoint-key-not-a-real-secret"


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.KEEL_CHECKPOINT_KEY = KEY
    settings.KEEL_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.KEEL_CHECKPOINT_DIR


def record(count: int) -> list[AuditEvent]:
    return [
        audit_record(action="review.decided", object_type="review", object_id=n, payload={"note": f"by ada {n}"})
        for n in range(count)
    ]


def redact_by_hand(seqs: list[int]) -> None:
    """The one UPDATE the guards let through, without ``audit_redact``."""
    AuditEvent.objects.filter(seq__in=seqs).update(payload=REDACTED_PAYLOAD, redacted_at=timezone.now())


def verify() -> str:
    out = StringIO()
    call_command("audit_verify", stdout=out)
    return out.getvalue()


def empty_the_chain() -> None:
    """TRUNCATE on PostgreSQL (its guard dropped first, as only the owner
    can), a DELETE of every row on SQLite (its row guards dropped)."""
    if connection.vendor == "postgresql":
        remove_truncate_guards(connection)
        try:
            with connection.cursor() as cursor:
                cursor.execute("TRUNCATE audit_auditevent")
        finally:
            install_truncate_guards(connection)
    else:
        remove_guards(connection)
        try:
            with connection.cursor() as cursor:
                cursor.execute("DELETE FROM audit_auditevent")
        finally:
            install_guards(connection)


def test_a_redaction_by_hand_is_named_by_its_seq(db):
    events = record(4)
    redact_by_hand([events[1].seq, events[3].seq])

    result = audit_chain_verify()
    assert (result.ok, result.broken_seq, result.reason) == (False, events[1].seq, UNNAMED_REDACTION_REASON)
    assert result.count == events[1].seq - 1 and result.head_hash == events[0].hash
    with pytest.raises(CommandError, match=rf"broken at #{events[1].seq}: redacted, but no later audit.redacted"):
        verify()


def test_a_redaction_through_the_service_verifies(db):
    events = record(3)
    audit_redact(seq=events[1].seq, reason="erasure request 4")
    assert audit_chain_verify().ok
    assert "Audit chain intact" in verify()


def test_an_audit_redacted_event_older_than_the_redaction_does_not_name_it(db):
    """A tombstone needs a later record: an earlier event that happens to name
    the seq (here one written before the event even existed) does not count."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    audit_record(action="audit.redacted", object_type="audit_event", object_id=head + 2, payload={"seq": head + 2})
    events = record(1)
    assert events[0].seq == head + 2
    redact_by_hand([events[0].seq])
    assert audit_chain_verify().broken_seq == events[0].seq


def test_the_nightly_check_records_a_redaction_by_hand_as_broken(db):
    events = record(3)
    redact_by_hand([events[2].seq])
    summary = audit_verify_chain_task()
    assert summary == {"ok": False, "count": events[2].seq - 1, "broken_seq": events[2].seq}
    newest = AuditEvent.objects.order_by("-seq").first()
    assert newest.action == "audit.broken"
    assert newest.payload_data["broken_seq"] == events[2].seq
    assert newest.payload_data["reason"] == UNNAMED_REDACTION_REASON


def test_audit_verify_finds_events_cut_from_the_end_against_the_newest_checkpoint(db, checkpoints):
    events = record(5)
    audit_checkpoint_write()
    remove_guards(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [events[3].seq])
    finally:
        install_guards(connection)
    with pytest.raises(CommandError) as caught:
        verify()
    assert f"broken at #{events[3].seq}:" in str(caught.value)
    assert f"names #{events[-1].seq}: events are missing from the end" in str(caught.value)


def test_the_nightly_check_records_an_emptied_chain_as_broken_not_as_a_fresh_chain(db, checkpoints):
    events = record(3)
    audit_checkpoint_write()
    empty_the_chain()

    result = audit_chain_check(actor="worker")

    assert not result.ok and result.broken_seq == 1
    (only,) = AuditEvent.objects.all()
    assert (only.seq, only.action) == (1, "audit.broken")
    assert only.payload_data["broken_seq"] == 1
    assert f"names #{events[-1].seq}" in only.payload_data["reason"]
    # Nor does the next checkpoint launder the loss: none is written of the shorter chain.
    with pytest.raises(CheckpointError, match=rf"no longer holds event #{events[-1].seq}"):
        audit_checkpoint_write()
    assert audit_write_checkpoint_task() is None
    assert not audit_chain_check(actor="worker").ok


def test_audit_verify_reports_an_emptied_chain_against_the_newest_checkpoint(db, checkpoints):
    events = record(2)
    audit_checkpoint_write()
    empty_the_chain()
    assert audit_chain_verify().ok  # an empty chain is a valid chain: only the checkpoint shows the loss
    with pytest.raises(CommandError, match=rf"broken at #1: the chain ends at #0 .* names #{events[-1].seq}"):
        verify()


def test_the_nightly_check_finds_a_chain_rewritten_under_the_checkpoint(db, checkpoints):
    """The chain emptied and refilled with as many well-linked events: every
    link holds, but the checkpointed event's hash is not the one signed."""
    events = record(2)
    audit_checkpoint_write()
    length = AuditEvent.objects.count()
    empty_the_chain()
    record(length)
    result = audit_chain_check(actor="worker")
    assert (result.ok, result.broken_seq) == (False, events[-1].seq)
    assert "no longer has the hash checkpointed" in result.reason


def test_without_the_key_the_nightly_check_walks_the_chain_alone(db, settings):
    settings.KEEL_CHECKPOINT_KEY = ""
    record(2)
    assert audit_chain_check(actor="worker").ok
    assert AuditEvent.objects.order_by("-seq").first().action == "audit.verified"


def test_an_intact_chain_with_checkpoints_is_recorded_as_verified(db, checkpoints):
    record(2)
    audit_checkpoint_write()
    record(1)
    assert audit_verify_chain_task()["ok"]
    assert AuditEvent.objects.order_by("-seq").first().action == "audit.verified"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="TRUNCATE is PostgreSQL's statement")
def test_truncating_the_chain_is_refused_before_any_check_is_needed(db):
    record(2)
    refused = pytest.raises(DatabaseError, match="append-only: TRUNCATE refused")
    with refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("TRUNCATE audit_auditevent")
    assert audit_chain_verify().ok
