"""Signed checkpoints catch what the chain alone cannot: its newest events
deleted. Tampering is done with SQL behind the guards' back, as the
database owner could."""

import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from audit.checkpoints import audit_checkpoint_write
from audit.db import install_guards, remove_guards
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record
from audit.tasks import audit_write_checkpoint_task

KEY = "test-checkpoint-key-not-a-real-secret"


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.KEEL_CHECKPOINT_KEY = KEY
    settings.KEEL_CHECKPOINT_DIR = tmp_path / "checkpoints"
    return settings.KEEL_CHECKPOINT_DIR


def record(count: int) -> list[AuditEvent]:
    return [audit_record(action="note.made", object_type="note", object_id=n, workspace_id=1) for n in range(count)]


def verify_with_checkpoints() -> str:
    from io import StringIO

    out = StringIO()
    call_command("audit_verify", "--checkpoints", stdout=out)
    return out.getvalue()


def test_the_scheduled_task_writes_a_signed_checkpoint_of_the_head(db, checkpoints):
    events = record(3)
    path = audit_write_checkpoint_task()
    data = json.loads(Path(path).read_text())
    assert (data["seq"], data["hash"]) == (events[-1].seq, events[-1].hash)
    assert len(data["hmac_sha256"]) == 64
    assert "Checkpoints match: 1 checked" in verify_with_checkpoints()


def test_deleting_the_newest_events_is_caught_by_checkpoints_but_not_by_the_chain_alone(db, checkpoints, settings):
    events = record(5)
    audit_checkpoint_write()
    remove_guards(connection)
    try:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM audit_auditevent WHERE seq >= %s", [events[3].seq])
    finally:
        install_guards(connection)
    assert audit_chain_verify().ok  # the shorter chain is still a valid chain
    settings.KEEL_CHECKPOINT_KEY = ""
    call_command("audit_verify")  # and without the key nothing shows the loss
    settings.KEEL_CHECKPOINT_KEY = KEY
    with pytest.raises(CommandError) as caught:
        verify_with_checkpoints()
    assert f"names #{events[-1].seq}" in str(caught.value)
    assert "events are missing from the end" in str(caught.value)


def test_a_changed_checkpoint_or_the_wrong_key_is_refused(db, checkpoints, settings):
    record(2)
    path = audit_checkpoint_write()
    data = json.loads(path.read_text())
    data["seq"] -= 1
    path.write_text(json.dumps(data))
    with pytest.raises(CommandError, match="signature does not match"):
        verify_with_checkpoints()
    path.unlink()
    audit_checkpoint_write()
    settings.KEEL_CHECKPOINT_KEY = "another key"
    with pytest.raises(CommandError, match="signature does not match"):
        verify_with_checkpoints()


def test_without_a_key_or_any_checkpoint_verification_says_so(db, checkpoints, settings):
    record(1)
    with pytest.raises(CommandError, match="No checkpoints found"):
        verify_with_checkpoints()
    settings.KEEL_CHECKPOINT_KEY = None
    with pytest.raises(CommandError, match="KEEL_CHECKPOINT_KEY is not set"):
        verify_with_checkpoints()
    assert audit_write_checkpoint_task() is None  # logged, not raised, in the beat task
