"""The hash rule of the audit chain (see "The audit chain" in DESIGN.md).

    payload_sha256 = SHA-256(canonical JSON of the payload)
    hash = SHA-256(canonical JSON of {action, actor: {id, name}, object_id,
                   object_type, payload_sha256, pipeline_id, prev_hash, seq,
                   ts, workspace_id})

``ts`` is UTC ISO 8601 with microseconds and a ``Z``; the first event's
``prev_hash`` is 64 zeros. Standard library only: the offline verifier uses it.
"""

import hashlib
from datetime import UTC, datetime

from audit.canonical import _encode_string, canonical_bytes

GENESIS_HASH = "0" * 64


def format_ts(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_sha256(payload_text: str) -> str:
    return hashlib.sha256(payload_text.encode("utf-8")).hexdigest()


def _int_or_null(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def envelope_text(
    *,
    seq: int,
    ts: str,
    actor_id: int | None,
    actor_name: str,
    action: str,
    object_type: str,
    object_id: str,
    workspace_id: int | None,
    pipeline_id: int | None,
    payload_sha256: str,
    prev_hash: str,
) -> str:
    """The canonical JSON of the hashed envelope, written out by hand because
    verification runs it a million times; a test holds it equal to
    ``canonical_text`` of the same dict."""
    return (
        '{"action":%s,"actor":{"id":%s,"name":%s},"object_id":%s,"object_type":%s,'  # noqa: UP031 (braces of JSON read better than doubled ones)
        '"payload_sha256":%s,"pipeline_id":%s,"prev_hash":%s,"seq":%d,"ts":%s,'
        '"workspace_id":%s}'
        % (
            _encode_string(action),
            _int_or_null(actor_id),
            _encode_string(actor_name),
            _encode_string(object_id),
            _encode_string(object_type),
            _encode_string(payload_sha256),
            _int_or_null(pipeline_id),
            _encode_string(prev_hash),
            seq,
            _encode_string(ts),
            _int_or_null(workspace_id),
        )
    )


def event_hash(**fields) -> str:
    return hashlib.sha256(envelope_text(**fields).encode("utf-8")).hexdigest()


__all__ = ["GENESIS_HASH", "canonical_bytes", "envelope_text", "event_hash", "format_ts"]


REDACTED_PAYLOAD = '{"redacted":true}'


class ChainResult:
    """What verification found: the count and head, or the first break."""

    __slots__ = ("count", "head_hash", "broken_seq", "reason")

    def __init__(self, count: int, head_hash: str, broken_seq: int | None, reason: str):
        self.count = count
        self.head_hash = head_hash
        self.broken_seq = broken_seq
        self.reason = reason

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def verify_rows(rows) -> ChainResult:
    """Walk rows in seq order and recompute every link.

    Each row is (seq, ts, actor_id, actor_name, action, object_type, object_id,
    workspace_id, pipeline_id, payload, payload_sha256, prev_hash, hash,
    redacted), with ts already in the chain's text form. A redacted row's
    payload is the tombstone; its envelope is still checked.
    """
    sha256 = hashlib.sha256
    expected_seq = 1
    prev = GENESIS_HASH
    count = 0
    for (
        seq, ts, actor_id, actor_name, action, object_type, object_id,
        workspace_id, pipeline_id, payload, payload_hash, prev_hash, stored_hash, redacted,
    ) in rows:  # fmt: skip
        if seq != expected_seq:
            return ChainResult(count, prev, expected_seq, f"expected #{expected_seq}, found #{seq}")
        if prev_hash != prev:
            return ChainResult(count, prev, seq, "previous hash does not match")
        if redacted:
            if payload != REDACTED_PAYLOAD:
                return ChainResult(count, prev, seq, "redacted payload is not the tombstone")
        elif sha256(payload.encode()).hexdigest() != payload_hash:
            return ChainResult(count, prev, seq, "payload does not match its hash")
        text = envelope_text(
            seq=seq,
            ts=ts,
            actor_id=actor_id,
            actor_name=actor_name,
            action=action,
            object_type=object_type,
            object_id=object_id,
            workspace_id=workspace_id,
            pipeline_id=pipeline_id,
            payload_sha256=payload_hash,
            prev_hash=prev_hash,
        )
        if sha256(text.encode()).hexdigest() != stored_hash:
            return ChainResult(count, prev, seq, "event hash does not match its fields")
        prev = stored_hash
        expected_seq = seq + 1
        count += 1
    return ChainResult(count, prev, None, "")
