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


# The canonical JSON of the hashed envelope, its keys already in order. Written
# out by hand because verification runs it a million times; a test holds it
# equal to ``canonical_text`` of the same dict.
_ENVELOPE = (
    '{"action":%s,"actor":{"id":%s,"name":%s},"object_id":%s,"object_type":%s,'
    '"payload_sha256":"%s","pipeline_id":%s,"prev_hash":"%s","seq":%d,"ts":"%s","workspace_id":%s}'
)


def _envelope(
    seq, ts, actor_id, actor_name, action, object_type, object_id, workspace_id, pipeline_id, payload_sha256, prev_hash
) -> str:
    # Positional, and with few helper calls: this is the verifier's inner loop.
    # The two hashes (hex) and ts (digits and separators) never need JSON
    # escaping; a tampered value that would is caught all the same, because
    # its text then differs from what was hashed.
    return _ENVELOPE % (
        _encode_string(action),
        "null" if actor_id is None else int(actor_id),
        _encode_string(actor_name),
        _encode_string(object_id),
        _encode_string(object_type),
        payload_sha256,
        "null" if pipeline_id is None else int(pipeline_id),
        prev_hash,
        seq,
        ts,
        "null" if workspace_id is None else int(workspace_id),
    )


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
    """The canonical JSON of the hashed envelope."""
    return _envelope(
        seq,
        ts,
        actor_id,
        actor_name,
        action,
        object_type,
        object_id,
        workspace_id,
        pipeline_id,
        payload_sha256,
        prev_hash,
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


def verify_rows(rows, *, first_seq: int = 1, first_prev: str = GENESIS_HASH) -> ChainResult:
    """Walk rows in seq order and recompute every link.

    Each row is (seq, ts, actor_id, actor_name, action, object_type, object_id,
    workspace_id, pipeline_id, payload, payload_sha256, prev_hash, hash,
    redacted), with ts already in the chain's text form. A redacted row's
    payload is the tombstone; its envelope is still checked.

    ``first_seq`` and ``first_prev`` start the walk part-way along the chain,
    after the event numbered ``first_seq - 1`` whose hash is ``first_prev``;
    the count is then of the events walked here.
    """
    sha256 = hashlib.sha256
    envelope = _envelope
    expected_seq = first_seq
    prev = first_prev
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
        text = envelope(
            seq, ts, actor_id, actor_name, action, object_type, object_id, workspace_id, pipeline_id, payload_hash, prev
        )
        if sha256(text.encode()).hexdigest() != stored_hash:
            return ChainResult(count, prev, seq, "event hash does not match its fields")
        prev = stored_hash
        expected_seq = seq + 1
        count += 1
    return ChainResult(count, prev, None, "")
