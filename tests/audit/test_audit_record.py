import hashlib
import json

import pytest
from django.db import DatabaseError, connection, transaction

from audit.chain import GENESIS_HASH
from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record, audit_record_many


def test_it_links_each_event_to_the_previous(db):
    first = audit_record(action="test.one", object_type="thing", object_id=1, payload={"a": 1})
    second = audit_record(action="test.two", object_type="thing", object_id=2)
    assert second.seq == first.seq + 1
    assert second.prev_hash == first.hash
    assert audit_chain_verify().ok


def test_a_batch_is_appended_in_order_as_one_linked_stretch_of_the_chain(db):
    before = audit_record(action="test.before", object_type="thing", object_id=0)
    with acting_as("batcher"):
        batch = audit_record_many(
            [{"action": f"test.{n}", "object_type": "thing", "object_id": n, "payload": {"n": n}} for n in range(3)]
        )
    stored = list(AuditEvent.objects.filter(seq__gt=before.seq).order_by("seq"))
    assert [e.action for e in stored] == ["test.0", "test.1", "test.2"]
    assert [e.seq for e in stored] == [before.seq + 1, before.seq + 2, before.seq + 3]
    assert [e.prev_hash for e in stored] == [before.hash, stored[0].hash, stored[1].hash]
    assert [e.hash for e in batch] == [e.hash for e in stored]
    assert {e.actor_name for e in stored} == {"system:batcher"}
    assert audit_chain_verify().ok
    assert audit_record_many([]) == []


def test_the_hash_of_a_known_event_matches_the_spec(db):
    """Computed here from the rule in DESIGN.md with json and hashlib alone."""
    event = audit_record(
        action="prompt.changed",
        object_type="prompt",
        object_id=7,
        payload={"z": "é", "a": [1, 2.5, None, True]},
        workspace_id=3,
        pipeline_id=None,
        actor="worker",
    )
    payload_bytes = '{"a":[1,2.5,null,true],"z":"é"}'.encode()
    assert event.payload_sha256 == hashlib.sha256(payload_bytes).hexdigest()
    envelope = {
        "seq": event.seq,
        "ts": event.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": {"id": None, "name": "system:worker"},
        "action": "prompt.changed",
        "object_type": "prompt",
        "object_id": "7",
        "workspace_id": 3,
        "pipeline_id": None,
        "payload_sha256": event.payload_sha256,
        "prev_hash": event.prev_hash,
    }
    text = json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert event.hash == hashlib.sha256(text.encode()).hexdigest()


def test_the_first_event_links_to_64_zeros(transactional_db):
    AuditEvent.objects.all()  # the flush before this test emptied the chain
    first = AuditEvent.objects.order_by("seq").first()
    if first is None:
        first = audit_record(action="test.first", object_type="thing", object_id=1)
    assert first.seq == 1
    assert first.prev_hash == GENESIS_HASH


def test_it_names_the_acting_user(db, django_user_model):
    user = django_user_model.objects.create(username="ada")
    with acting_as(user):
        event = audit_record(action="test.act", object_type="thing", object_id=1)
    assert (event.actor_id, event.actor_name) == (user.pk, "ada")


def test_it_names_the_system_when_nobody_acts(db):
    event = audit_record(action="test.act", object_type="thing", object_id=1)
    assert (event.actor_id, event.actor_name) == (None, "system")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'forged'",
        "UPDATE audit_auditevent SET payload = '{\"redacted\":true}'",
        "DELETE FROM audit_auditevent",
    ],
)
def test_the_database_refuses_changes_to_events(db, statement):
    audit_record(action="test.keep", object_type="thing", object_id=1, payload={"keep": True})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    assert audit_chain_verify().ok


def test_a_rolled_back_change_leaves_no_event(db):
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(action="test.gone", object_type="thing", object_id=1)
        raise RuntimeError("roll back")
    assert AuditEvent.objects.count() == before
