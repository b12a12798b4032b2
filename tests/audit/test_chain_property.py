"""Any single tampering with a chain is found by ``verify_rows``; an untouched
chain never raises a false alarm.

The chains here are built from the rule in DESIGN.md with ``canonical_bytes``
of the envelope dict and hashlib, not with the verifier's own hand-written
encoder, so a drift between the two would show.

What a chain alone cannot show: deleting the newest events (the tail) leaves a
shorter chain that is still valid, and appending a well-formed event at the end
is what an append is. Signed checkpoints of the head, published outside the
database, are what will catch a cut tail; they come later.
"""

import hashlib
from datetime import UTC

from hypothesis import given
from hypothesis import strategies as st

from audit.canonical import canonical_bytes, canonical_text
from audit.chain import GENESIS_HASH, REDACTED_PAYLOAD, format_ts, verify_rows

# Positions in a row as verify_rows reads it.
FIELDS = (
    "seq",
    "ts",
    "actor_id",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "workspace_id",
    "pipeline_id",
    "payload",
    "payload_sha256",
    "prev_hash",
    "hash",
    "redacted",
)
PAYLOAD, PREV_HASH, HASH = FIELDS.index("payload"), FIELDS.index("prev_hash"), FIELDS.index("hash")

SAFE_INT = 2**53 - 1
optional_ids = st.none() | st.integers(min_value=0, max_value=2**53 - 1)  # I-JSON, as every integer
names = st.sampled_from(["system", "system:worker", "Zoë Ångström", "李雷", "Łukasz", "ada"]) | st.text(max_size=30)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE_INT, max_value=SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=8,
)
# The redacted flag is not hashed: on a row whose real payload were the tombstone
# text, setting the flag would change nothing a reader sees. Keep that case out.
payloads = st.dictionaries(st.text(max_size=10), json_values, max_size=4).filter(
    lambda payload: canonical_text(payload) != REDACTED_PAYLOAD
)
timestamps = st.datetimes(timezones=st.just(UTC)).map(format_ts)
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)

events = st.fixed_dictionaries(
    {
        "ts": timestamps,
        "actor_id": optional_ids,
        "actor_name": names,
        "action": st.sampled_from(["run.started", "release.cut", "review.decided"]) | st.text(max_size=20),
        "object_type": st.sampled_from(["run", "release", "prompt"]) | st.text(max_size=20),
        "object_id": st.integers(min_value=1).map(str) | st.text(max_size=20),
        "workspace_id": optional_ids,
        "pipeline_id": optional_ids,
        "payload": payloads,
        "redacted": st.sampled_from([False, False, False, True]),
    }
)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _envelope_hash(seq: int, event: dict, payload_hash: str, prev_hash: str) -> str:
    envelope = {
        "seq": seq,
        "ts": event["ts"],
        "actor": {"id": event["actor_id"], "name": event["actor_name"]},
        "action": event["action"],
        "object_type": event["object_type"],
        "object_id": event["object_id"],
        "workspace_id": event["workspace_id"],
        "pipeline_id": event["pipeline_id"],
        "payload_sha256": payload_hash,
        "prev_hash": prev_hash,
    }
    return _sha256(canonical_bytes(envelope))


def row_of(seq: int, event: dict, prev_hash: str) -> tuple:
    """One row as the database hands it to verify_rows, linked to prev_hash."""
    payload_text = canonical_text(event["payload"])
    payload_hash = _sha256(payload_text.encode())
    return (
        seq,
        event["ts"],
        event["actor_id"],
        event["actor_name"],
        event["action"],
        event["object_type"],
        event["object_id"],
        event["workspace_id"],
        event["pipeline_id"],
        # A redacted row keeps every hash; only its stored payload is the tombstone.
        REDACTED_PAYLOAD if event["redacted"] else payload_text,
        payload_hash,
        prev_hash,
        _envelope_hash(seq, event, payload_hash, prev_hash),
        event["redacted"],
    )


def chain_of(drawn: list[dict]) -> list[tuple]:
    rows: list[tuple] = []
    for seq, event in enumerate(drawn, start=1):
        rows.append(row_of(seq, event, rows[-1][HASH] if rows else GENESIS_HASH))
    return rows


chains = st.lists(events, min_size=1, max_size=8).map(chain_of)
long_chains = st.lists(events, min_size=2, max_size=8).map(chain_of)

# For each field, values to put in its place (filtered to differ from the original).
replacements = {
    "seq": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "ts": timestamps | st.text(max_size=30),
    "actor_id": optional_ids,
    "actor_name": names,
    "action": st.text(max_size=20),
    "object_type": st.text(max_size=20),
    "object_id": st.text(max_size=20),
    "workspace_id": optional_ids,
    "pipeline_id": optional_ids,
    "payload": payloads.map(canonical_text) | st.text(max_size=40),
    "payload_sha256": hex64,
    "prev_hash": hex64,
    "hash": hex64,
    "redacted": st.booleans(),
}


@given(chains)
def test_an_untouched_chain_verifies(rows):
    result = verify_rows(iter(rows))
    assert result.ok, result.reason
    assert result.count == len(rows)
    assert result.head_hash == rows[-1][HASH]


def test_an_empty_chain_verifies():
    result = verify_rows(iter([]))
    assert (result.ok, result.count, result.head_hash) == (True, 0, GENESIS_HASH)


@given(chains, st.data())
def test_changing_any_field_of_any_row_is_found_at_that_row(rows, data):
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 1), label="row")
    field = data.draw(st.sampled_from(FIELDS), label="field")
    position = FIELDS.index(field)
    original = rows[index][position]
    value = data.draw(replacements[field].filter(lambda new: new != original), label="new value")
    tampered = list(rows)
    row = list(rows[index])
    row[position] = value
    tampered[index] = tuple(row)

    result = verify_rows(iter(tampered))

    assert result.broken_seq == index + 1, f"{field} of #{index + 1} changed to {value!r}: {result.reason}"
    assert result.count == index


@given(long_chains, st.data())
def test_deleting_a_row_before_the_newest_is_found(rows, data):
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 2), label="deleted row")
    tampered = rows[:index] + rows[index + 1 :]
    assert verify_rows(iter(tampered)).broken_seq == index + 1


@given(chains, events, st.data())
def test_inserting_a_row_anywhere_but_the_end_is_found(rows, event, data):
    """The forged row is as good as a forger can make it: the next seq, linked
    to the row before it and correctly hashed. The row after it gives it away."""
    index = data.draw(st.integers(min_value=0, max_value=len(rows) - 1), label="insert before")
    forged = row_of(index + 1, event, rows[index - 1][HASH] if index else GENESIS_HASH)
    tampered = [*rows[:index], forged, *rows[index:]]
    assert verify_rows(iter(tampered)).broken_seq == index + 2


@given(long_chains, st.data())
def test_swapping_two_rows_is_found(rows, data):
    first = data.draw(st.integers(min_value=0, max_value=len(rows) - 2), label="first")
    second = data.draw(st.integers(min_value=first + 1, max_value=len(rows) - 1), label="second")
    tampered = list(rows)
    tampered[first], tampered[second] = tampered[second], tampered[first]
    assert verify_rows(iter(tampered)).broken_seq == first + 1
