"""A step refuses an input larger than KEEL_STEP_INPUT_MAX_BYTES, naming the limit."""

import json

import pytest
from django.core.exceptions import ValidationError

from pipelines.steps import execute_step, json_size, run_input_check
from pipelines.steps.base import StepError

from .helpers import make_ctx


def test_the_size_follows_the_documents_json_size():
    document = {"text": "héllo" * 1000, "items": [1, 2.5, True, None, {"k": "v"}], "nested": {"a": ["b"]}}
    exact = len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())
    assert abs(json_size(document, 10**9) - exact) <= 0.02 * exact + 64


def test_the_size_is_counted_only_until_it_passes_the_limit():
    document = {"parts": ["x" * 100] * 10_000}  # about 1 MB
    assert json_size(document, 10**9) > 1_000_000
    assert 100 < json_size(document, 100) < 20_000


def test_a_deeply_nested_input_is_measured_without_recursion():
    document: object = "leaf"
    for _ in range(100_000):
        document = [document]
    assert json_size(document, 10**9) > 100_000


def test_a_step_refuses_an_input_over_the_limit_naming_it(settings):
    settings.KEEL_STEP_INPUT_MAX_BYTES = 1024
    with pytest.raises(StepError, match=r"over the limit of 1,024 bytes as JSON \(KEEL_STEP_INPUT_MAX_BYTES\)"):
        execute_step("ingest", {"body": "x" * 2000}, make_ctx(kind="ingest"))
    assert execute_step("ingest", {"body": "x" * 500}, make_ctx(kind="ingest")).output["body"] == "x" * 500


def test_a_run_input_over_the_limit_is_a_field_error(settings):
    settings.KEEL_STEP_INPUT_MAX_BYTES = 1024
    with pytest.raises(ValidationError) as caught:
        run_input_check({"body": "é" * 600})  # 1,200 bytes as UTF-8
    assert "KEEL_STEP_INPUT_MAX_BYTES" in caught.value.message_dict["input"][0]


def test_the_default_takes_a_document_at_the_upload_limit_and_a_copy_of_it(settings):
    text = "x" * settings.KEEL_DOCUMENT_MAX_BYTES
    run_input_check({"document": {"text": text}, "summary": text})
