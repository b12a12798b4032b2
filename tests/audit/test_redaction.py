"""audit_redact, the one path that may change a stored event, and the database
guard that lets through that shape of UPDATE and nothing else."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import REDACTED_PAYLOAD, AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import AuditError, audit_record, audit_redact

_HASHED = ("seq", "ts", "actor_id", "actor_name", "action", "object_type", "object_id", "workspace_id",
           "pipeline_id", "payload_sha256", "prev_hash", "hash")  # fmt: skip


@pytest.fixture
def events(db) -> list[AuditEvent]:
    return [
        audit_record(action="run.started", object_type="run", object_id=1, payload={"email": "zoë@example.com"}),
        audit_record(action="run.completed", object_type="run", object_id=1, payload={"ok": True}, pipeline_id=4),
    ]


def _hashed_fields(event: AuditEvent) -> tuple:
    return tuple(getattr(event, name) for name in _HASHED)


def _refused(sql: str, params: list | None = None) -> None:
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def test_it_replaces_the_payload_with_the_tombstone_and_keeps_every_hash(events, superuser):
    before = _hashed_fields(events[0])

    redaction = audit_redact(seq=events[0].seq, reason="GDPR erasure request 17", actor=superuser)

    assert not redaction.already
    stored = AuditEvent.objects.get(seq=events[0].seq)
    assert stored.payload == REDACTED_PAYLOAD
    assert stored.is_redacted
    assert _hashed_fields(stored) == before
    assert AuditEvent.objects.get(seq=events[1].seq).payload == '{"ok":true}'


def test_it_records_the_redaction_as_an_event(events, superuser):
    audit_redact(seq=events[1].seq, reason="retention: 7 years", actor=superuser)

    newest = AuditEvent.objects.order_by("-seq").first()
    assert newest.action == "audit.redacted"
    assert (newest.object_type, newest.object_id) == ("audit_event", str(events[1].seq))
    assert newest.payload_data == {"seq": events[1].seq, "reason": "retention: 7 years"}
    assert (newest.actor_id, newest.actor_name) == (superuser.pk, "root")
    assert newest.pipeline_id == 4


def test_the_chain_still_verifies_after_a_redaction(events):
    audit_redact(seq=events[0].seq, reason="erasure")

    result = audit_chain_verify()

    assert result.ok, result.reason
    assert result.count == AuditEvent.objects.count()


def test_a_second_redaction_changes_nothing(events):
    audit_redact(seq=events[0].seq, reason="erasure")
    count = AuditEvent.objects.count()
    redacted_at = AuditEvent.objects.get(seq=events[0].seq).redacted_at

    again = audit_redact(seq=events[0].seq, reason="erasure, again")

    assert again.already
    assert AuditEvent.objects.count() == count
    assert AuditEvent.objects.get(seq=events[0].seq).redacted_at == redacted_at


def test_it_needs_a_reason(events):
    with pytest.raises(AuditError, match="reason"):
        audit_redact(seq=events[0].seq, reason="  ")
    assert not AuditEvent.objects.get(seq=events[0].seq).is_redacted


def test_it_names_a_missing_event(events):
    with pytest.raises(AuditError, match="#999"):
        audit_redact(seq=999, reason="erasure")


def test_the_database_refuses_a_redaction_that_changes_anything_else(events):
    _refused(
        "UPDATE audit_auditevent SET payload = %s, redacted_at = CURRENT_TIMESTAMP, action = 'forged' WHERE seq = %s",
        [REDACTED_PAYLOAD, events[0].seq],
    )
    assert AuditEvent.objects.get(seq=events[0].seq).action == "run.started"


def test_the_database_refuses_a_redaction_with_another_payload(events):
    _refused(
        "UPDATE audit_auditevent SET payload = '{}', redacted_at = CURRENT_TIMESTAMP WHERE seq = %s",
        [events[0].seq],
    )


def test_the_database_refuses_to_unredact(events):
    audit_redact(seq=events[0].seq, reason="erasure")

    _refused(
        "UPDATE audit_auditevent SET payload = %s, redacted_at = NULL WHERE seq = %s",
        [events[0].payload, events[0].seq],
    )
    _refused("UPDATE audit_auditevent SET redacted_at = NULL WHERE seq = %s", [events[0].seq])
    # Nor may a redaction be redone with a new date.
    _refused("UPDATE audit_auditevent SET redacted_at = CURRENT_TIMESTAMP WHERE seq = %s", [events[0].seq])
    assert AuditEvent.objects.get(seq=events[0].seq).payload == REDACTED_PAYLOAD
    assert audit_chain_verify().ok
