import hashlib

import pytest

from audit.canonical import canonical_bytes
from pipelines.steps import execute_step
from pipelines.steps.base import StepError
from pipelines.steps.ingest import execute

from .helpers import make_ctx


def test_it_passes_the_payload_on_with_its_fingerprint_and_source():
    payload = {"subject": "Hi", "body": "Where is my parcel?"}
    result = execute(payload, make_ctx(source="api"))
    expected = hashlib.sha256(canonical_bytes(payload)).hexdigest()
    assert result.output == {**payload, "_ingest": {"sha256": expected, "source": "api"}}
    assert result.recordings == [] and result.decision is None


def test_it_names_an_unknown_source():
    assert execute({"body": "x"}, make_ctx()).output["_ingest"]["source"] == "unknown"


def test_the_fingerprint_ignores_key_order():
    first = execute({"a": 1, "b": "two"}, make_ctx()).output["_ingest"]["sha256"]
    second = execute({"b": "two", "a": 1}, make_ctx()).output["_ingest"]["sha256"]
    assert first == second


def test_it_does_not_change_its_input():
    payload = {"body": "x"}
    execute(payload, make_ctx())
    assert payload == {"body": "x"}


def test_it_accepts_a_text_field_that_is_present_text_even_nested():
    execute({"ticket": {"body": "x"}}, make_ctx(config={"text_field": "ticket.body"}))


def test_it_refuses_a_missing_text_field_by_name():
    with pytest.raises(StepError, match="text field 'body' is missing from the input"):
        execute({"subject": "x"}, make_ctx(config={"text_field": "body"}))


def test_it_refuses_a_text_field_that_is_not_text():
    with pytest.raises(StepError, match="text field 'body' must be a string, not int"):
        execute({"body": 3}, make_ctx(config={"text_field": "body"}))


def test_it_refuses_a_payload_that_is_not_plain_json():
    with pytest.raises(StepError, match="the input is not plain JSON"):
        execute({"score": float("nan")}, make_ctx())


def test_the_dispatcher_runs_a_kind_by_name_and_refuses_an_unknown_one():
    assert "_ingest" in execute_step("ingest", {"a": 1}, make_ctx()).output
    with pytest.raises(StepError, match="Unknown step kind 'teleport'"):
        execute_step("teleport", {}, make_ctx())
