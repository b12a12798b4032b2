"""Run inputs are canonicalised once on arrival (pipelines/runs/inputs.py): a
number no JSON reader holds exactly, or text that is not Unicode, is refused
naming its path; anything accepted is stored so that it hashes to the hash
recorded for it, on PostgreSQL (whose jsonb rewrites numbers) and SQLite."""

import hashlib
import json

import pytest
from django.core.exceptions import ValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.canonical import canonical_bytes
from audit.models import AuditEvent
from pipelines.models import Run
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_start
from pipelines.runs.inputs import input_canonical
from tests.releasing import classifier_pipeline, release_to_production

SAFE = 2**53 - 1


@pytest.fixture
def pipeline(acme, superuser):
    pipeline = classifier_pipeline(acme, actor=superuser)
    release_to_production(release_cut(pipeline=pipeline, actor=superuser))
    return pipeline


def start(pipeline, data) -> Run:
    run, _ = run_start(pipeline=pipeline, input={"subject": "a parcel", "data": data}, actor=None, trigger="cli")
    return run


def sha256(value) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (SAFE + 1, "beyond ±9007199254740991"),
        (-(SAFE + 1), "beyond ±9007199254740991"),
        (2**64, "beyond ±9007199254740991"),
        (1e21, "beyond ±9007199254740991"),
        (1.5e300, "beyond ±9007199254740991"),
        (json.loads("1e400"), "not a finite number"),
        (float("nan"), "not a finite number"),
        (float("-inf"), "not a finite number"),
        ("a \ud800 lone surrogate", "lone surrogate"),
        ("a NUL \x00 character", "NUL character"),
    ],
)
def test_it_refuses_a_value_it_cannot_store_and_hash_alike_naming_its_path(value, problem):
    with pytest.raises(ValidationError) as caught:
        input_canonical({"order": {"lines": [{"amount": value}]}})
    (message,) = caught.value.message_dict["input"]
    assert message.startswith("input.order.lines.0.amount: ")
    assert problem in message


def test_it_refuses_a_key_that_is_not_unicode_text():
    with pytest.raises(ValidationError, match=r"input.order: a key contains a lone surrogate"):
        input_canonical({"order": {"\udc00": 1}})


def test_it_keeps_the_safe_integers_at_both_ends_and_writes_numbers_canonically():
    value = {"max": SAFE, "min": -SAFE, "whole": 1.0, "big": 1e15, "small": 1.5e-7, "neg": -0.0}
    assert input_canonical(value) == {"max": SAFE, "min": -SAFE, "whole": 1, "big": 10**15, "small": 1.5e-7, "neg": 0}
    assert type(input_canonical(value)["whole"]) is int


def test_run_start_refuses_the_amount_the_issue_found_naming_the_field(pipeline):
    with pytest.raises(ValidationError) as caught:
        start(pipeline, {"amount": 1e21})
    assert caught.value.message_dict["input"][0].startswith("input.data.amount: is the whole number 1e+21,")
    assert not Run.objects.exists()


def test_an_accepted_input_is_stored_as_it_was_hashed(pipeline):
    run = start(pipeline, {"amount": 1e15, "rate": 0.1, "tiny": 5e-324, "count": 3.0, "exp": 1.5e-7})
    stored = Run.objects.get(pk=run.pk).input
    assert sha256(stored) == run.input_sha256
    started = AuditEvent.objects.get(action="run.started", object_id=str(run.pk))
    assert started.payload_data["input_sha256"] == run.input_sha256
    assert stored["data"] == {"amount": 10**15, "rate": 0.1, "tiny": 5e-324, "count": 3, "exp": 1.5e-7}


# Any JSON an HTTP client can send: integers and floats of every size (the
# unsafe ones are refused), text with the occasional lone surrogate or NUL.
texts = st.text(max_size=12) | st.sampled_from(["\ud83d", "x\x00y", "Zoë", "李雷"])
numbers = (
    st.integers(min_value=-(2**70), max_value=2**70)
    | st.integers(min_value=-SAFE - 2, max_value=-SAFE + 2)
    | st.integers(min_value=SAFE - 2, max_value=SAFE + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e21, 1e20, 1e16, 123456789012345680.0, 5e-324, 1e-7, 0.1, -0.0, 2.5])
)
json_values = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=json_values)
def test_what_is_stored_hashes_to_the_recorded_hash_or_is_refused_by_path(pipeline, data):
    try:
        run = start(pipeline, data)
    except ValidationError as error:
        assert all(message.startswith("input.data") for message in error.message_dict["input"])
        return
    stored = Run.objects.get(pk=run.pk).input
    assert sha256(stored) == run.input_sha256
    started = AuditEvent.objects.get(action="run.started", object_id=str(run.pk))
    assert started.payload_data["input_sha256"] == run.input_sha256
