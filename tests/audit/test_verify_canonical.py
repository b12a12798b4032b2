"""The offline verifier's own canonical JSON (written apart from
audit/canonical.py on purpose) agrees with an independent RFC 8785
implementation and with the chain's hash rule."""

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from audit import verify
from audit.chain import envelope_text
from tests.audit.test_canonical import json_values


@given(json_values)
def test_the_verifier_writes_what_rfc8785_writes(value):
    assert verify.canonical(value).encode("utf-8") == rfc8785.dumps(value)


@given(
    seq=st.integers(min_value=1, max_value=2**53 - 1),
    actor_id=st.none() | st.integers(min_value=1, max_value=2**53 - 1),
    text=st.text(),
    workspace_id=st.none() | st.integers(min_value=1, max_value=2**40),
)
def test_the_verifier_builds_the_same_envelope_as_the_chain(seq, actor_id, text, workspace_id):
    fields = {
        "seq": seq,
        "ts": "2026-03-01T09:30:00.000137Z",
        "action": f"run.{text}",
        "object_type": "run",
        "object_id": text,
        "workspace_id": workspace_id,
        "pipeline_id": None,
        "payload_sha256": "a" * 64,
        "prev_hash": "b" * 64,
    }
    envelope = {**fields, "actor": {"id": actor_id, "name": text}}
    assert verify.canonical(envelope) == envelope_text(actor_id=actor_id, actor_name=text, **fields)


def test_the_verifiers_canonical_json_refuses_integers_past_i_jsons_range():
    for number in (2**53, -(2**53), 2**63):
        with pytest.raises(ValueError, match="outside I-JSON"):
            verify.canonical({"seed": number})
    assert verify.canonical(2**53 - 1) == "9007199254740991"


def test_an_audit_payload_integer_past_i_json_is_recorded_as_its_string(db):
    from audit.services import audit_record

    event = audit_record(action="note.made", object_type="note", object_id=1, payload={"seed": 2**63 - 1, "n": 3})
    assert event.payload == '{"n":3,"seed":"9223372036854775807"}'
