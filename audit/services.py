"""The one entry point that writes to the audit chain, and its redaction path."""

import json
from dataclasses import dataclass
from functools import partial

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from audit.canonical import UnsafeNumber, canonical_text, json_safe
from audit.chain import ChainResult, event_hash, format_ts, payload_sha256
from audit.checkpoints import chain_against_checkpoint
from audit.context import Actor, current_actor, current_via
from audit.models import REDACTED_PAYLOAD, AuditEvent, RetentionPolicy
from audit.queries import chain_head_lock, insert_dicts
from audit.selectors import audit_chain_verify
from audit.signals import WATCHED_ACTIONS, events_committed


class AuditError(Exception):
    pass


def _payload_text(payload) -> str:
    try:
        return canonical_text(payload)
    except TypeError:
        # Dates, decimals and UUIDs become strings first, as Django would serialise them.
        return _payload_text(json.loads(json.dumps(payload, cls=DjangoJSONEncoder)))
    except UnsafeNumber:
        # Integers past ±(2**53 − 1) are recorded as their decimal strings
        # (I-JSON), so that every reader of the export sees the same value.
        return canonical_text(json_safe(payload))


def audit_record(
    *,
    action: str,
    object_type: str,
    object_id: object,
    payload: dict | None = None,
    workspace_id: int | None = None,
    pipeline_id: int | None = None,
    actor: object = None,
) -> AuditEvent:
    """Append one event to the chain inside the caller's transaction.

    1. Canonicalise and hash the payload before touching the database.
    2. Take the chain head (lock), stamp the time, link and hash the event.
    3. Insert it. The head stays held until the caller's transaction ends, so
       callers record their event as the last statement of the transaction.
    """
    (event,) = audit_record_many(
        [
            {
                "action": action,
                "object_type": object_type,
                "object_id": object_id,
                "payload": payload,
                "workspace_id": workspace_id,
                "pipeline_id": pipeline_id,
                "actor": actor,
            }
        ]
    )
    return event


def audit_record_many(events: list[dict]) -> list[AuditEvent]:
    """Append several events, in order, with one take of the chain head and one
    INSERT: what ``audit_record`` does for each, for a caller (the engine
    recording a batch of steps) that has many to write in one transaction.
    Each dict holds ``audit_record``'s keyword arguments."""
    # Model.from_db: instances of the stored rows, as a query would return them (a field
    # audit_append leaves out, redacted_at, is stored as its default, None).
    names = [f.attname for f in AuditEvent._meta.concrete_fields]
    return [
        AuditEvent.from_db(connection.alias, names, [fields.get(name) for name in names])
        for fields in audit_append(events)
    ]


def audit_append(events: list[dict], *, along: tuple[str, list] | None = None) -> list[dict]:
    """``audit_record_many`` less the model instances, for a caller that does
    not read the stored events back (the engine, on every run): returns their
    fields as stored.

    ``along``: the caller's INSERT of the row the events describe, as ``(sql,
    params)``, sent with the events' own (``insert_dicts``): one round trip
    fewer for a run start, whose run row and ``run.started`` go in together.

    An event may hold ``hints``: what its writer knows of the object in
    process (the engine, a run's creation time), handed to the receivers of
    ``events_committed`` with the event so they need not read it back; never
    stored, hashed or returned."""
    prepared, hints = [], {}
    default_actor = None
    # A request made with an API token: every event it records names the token and its creator.
    via = current_via()
    via_payload = via.as_payload() if via is not None else None
    for event in events:
        actor = event.get("actor")
        if actor is not None:
            who = Actor.of(actor)
        else:
            who = default_actor = default_actor or current_actor()
        payload = event.get("payload") or {}
        if via_payload is not None:
            payload = {**payload, "via_token": via_payload}
        payload_text = _payload_text(payload)
        if event.get("hints"):
            hints[len(prepared)] = event["hints"]
        prepared.append(
            {
                "actor_id": who.id,
                "actor_name": who.name,
                "action": event["action"],
                "object_type": event["object_type"],
                "object_id": str(event["object_id"]),
                "workspace_id": event.get("workspace_id"),
                "pipeline_id": event.get("pipeline_id"),
                "payload_sha256": payload_sha256(payload_text),
                "payload": payload_text,
            }
        )
    if not prepared:
        if along is not None:
            insert_dicts(AuditEvent, [], along=along)
        return []
    # Inside the caller's transaction a savepoint would only cost two round
    # trips: an append that fails must abort the caller's transaction anyway.
    with transaction.atomic(savepoint=False):
        seq, prev_hash = chain_head_lock()
        for fields in prepared:
            seq += 1
            ts = timezone.now()
            payload_text = fields.pop("payload")
            digest = event_hash(seq=seq, ts=format_ts(ts), prev_hash=prev_hash, **fields)
            fields.update(seq=seq, ts=ts, payload=payload_text, prev_hash=prev_hash, hash=digest)
            prev_hash = digest
        insert_dicts(AuditEvent, prepared, along=along)
        watched = [{**fields, "hints": hints[index]} if index in hints else fields
                   for index, fields in enumerate(prepared) if fields["action"] in WATCHED_ACTIONS]  # fmt: skip
        if watched:
            # robust: a receiver's error is logged and never reaches the writer.
            transaction.on_commit(partial(events_committed.send, sender=AuditEvent, events=watched), robust=True)
    return prepared


@dataclass(frozen=True)
class Redaction:
    seq: int
    already: bool


@transaction.atomic
def audit_redact(*, seq: int, reason: str, actor: object = None) -> Redaction:
    """The one path that may change a stored event: replace its payload with the
    tombstone. Every hash stays as it was, so the chain still verifies, and the
    redaction itself is recorded as a new event."""
    if not reason.strip():
        raise AuditError("A redaction needs a reason.")
    event = AuditEvent.objects.filter(seq=seq).first()
    if event is None:
        raise AuditError(f"There is no audit event #{seq}.")
    if event.is_redacted:
        return Redaction(seq=seq, already=True)
    AuditEvent.objects.filter(seq=seq).update(payload=REDACTED_PAYLOAD, redacted_at=timezone.now())
    audit_record(
        action="audit.redacted",
        object_type="audit_event",
        object_id=seq,
        payload={"seq": seq, "reason": reason},
        workspace_id=event.workspace_id,
        pipeline_id=event.pipeline_id,
        actor=actor,
    )
    return Redaction(seq=seq, already=False)


def audit_chain_check(*, actor: object = "audit") -> ChainResult:
    """Verify the stored chain and put the outcome on the record: the chain
    itself says when it was last found intact (or where it broke).

    The walk is compared with the newest signed checkpoint when the key is set
    (``chain_against_checkpoint``): a chain shorter than it, emptied or cut at
    the end, is recorded as ``audit.broken``, never as a fresh chain found
    intact."""
    result = chain_against_checkpoint(audit_chain_verify())
    with transaction.atomic():
        audit_record(
            action="audit.verified" if result.ok else "audit.broken",
            object_type="audit_chain",
            object_id="chain",
            payload={
                "count": result.count,
                "head_hash": result.head_hash,
                "broken_seq": result.broken_seq,
                "reason": result.reason,
            },
            actor=actor,
        )
    return result


@transaction.atomic
def retention_policy_set(*, workspace_id: int, run_data_days: int, actor: object = None):
    """Set how long a workspace keeps run inputs and outputs (at least a day)."""
    if not isinstance(run_data_days, int) or run_data_days < 1:
        raise ValidationError({"run_data_days": "Keep run data for at least one day."})
    policy, _ = RetentionPolicy.objects.update_or_create(
        workspace_id=workspace_id, defaults={"run_data_days": run_data_days}
    )
    audit_record(
        action="retention.set",
        object_type="workspace",
        object_id=workspace_id,
        payload={"run_data_days": run_data_days},
        workspace_id=workspace_id,
        actor=actor,
    )
    return policy
