"""Run creation under hostile input: every body that cannot be stored, hashed
or sent on as JSON is a 400 naming the field and the problem, and nothing is
written: no run, no document, no audit event."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from pipelines.models import Document, Run

DEEP = 10_000


def _deep_json(depth: int) -> str:
    return '{"subject": "x", "nested": ' + "[" * depth + "]" * depth + "}"


# (JSON body text, field, words of the reason). Bodies are raw text: json.dumps
# cannot write a lone surrogate as a client's escape sequence would.
JSON_CASES = {
    "surrogate-in-value": ('{"input": {"subject": "\\ud83d"}}', "input.subject", "lone surrogate (U+D83D)"),
    "surrogate-in-key": ('{"input": {"subject": "s", "\\ud83d": 1}}', "input", "a key here contains a lone"),
    "surrogate-deep-in-value": (
        '{"input": {"subject": "s", "a": [{"b": "ok \\udc00"}]}}',
        "input.a.0.b",
        "lone surrogate (U+DC00) at character 3",
    ),  # fmt: skip
    "nul-in-key": ('{"input": {"subject": "s", "a": {"b\\u0000": 1}}}', "input.a", "a key here contains a NUL"),
    "number-overflowing-to-infinity": ('{"input": {"subject": "s", "n": 1e400}}', "input.n", "out of range"),
    "integer-beyond-2-53": ('{"input": {"subject": "s", "n": 9007199254740993}}', "input.n", "2^53"),
    "nan": ('{"input": {"subject": "s", "n": NaN}}', "body", "NaN"),
    "nested-10000-deep": ('{"input": ' + _deep_json(DEEP) + "}", "body", "nested too deeply"),
    "nested-40-deep": ('{"input": ' + _deep_json(40) + "}", "input.nested" + ".0" * 32, "more than 32 levels"),
    "surrogate-in-idempotency-key": (
        '{"input": {"subject": "s"}, "idempotency_key": "k\\ud83d"}',
        "idempotency_key",
        "urrogate",
    ),  # fmt: skip
    "surrogate-in-source": ('{"input": {"subject": "s"}, "source": "\\udfff"}', "source", "urrogate"),
}

# (the multipart form's ``input`` field, field, words of the reason)
FORM_CASES = {
    "surrogate-in-value": ('{"client": "\\ud83d"}', "input.client", "lone surrogate (U+D83D)"),
    "surrogate-in-key": ('{"\\ud83d": "Acme"}', "input", "a key here contains a lone surrogate"),
    "nested-10000-deep": (_deep_json(DEEP), "input", "nested more than 32 levels"),
    "number-overflowing-to-infinity": ('{"client": "Acme", "n": -1e400}', "input.n", "out of range"),
    "nan": ('{"client": "Acme", "n": NaN}', "input", "NaN is not a JSON number"),
    "not-an-object": ("[1, 2]", "input", "JSON object"),
}


@pytest.fixture
def api(api_for, make_token, author, acme_pipeline):
    _, plain = make_token(author, workspace=acme_pipeline.workspace)
    return api_for(plain)


@pytest.fixture
def contracts(acme, superuser):
    from audit.context import acting_as
    from tests import factories
    from tests.pipelines.integration.api.conftest import deploy

    with acting_as(superuser):
        pipeline = factories.PipelineFactory(workspace=acme, slug="contracts", input_schema={"type": "object"})
        factories.StepFactory(pipeline=pipeline, position=1, name="gate", kind="gate")
    return deploy(pipeline, superuser)


def _nothing_written() -> bool:
    return not (Run.objects.exists() or Document.objects.exists() or AuditEvent.objects.filter(
        action__startswith="run.").exists())  # fmt: skip


@pytest.mark.parametrize(("body", "field", "reason"), JSON_CASES.values(), ids=JSON_CASES.keys())
def test_a_hostile_json_body_is_400_naming_the_field_and_writes_nothing(api, acme_pipeline, body, field, reason):
    response = api.client.post(f"/api/v1/pipelines/{acme_pipeline.slug}/runs", body,
                               content_type="application/json", headers=api.headers)  # fmt: skip
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors[0]["field"] == field and reason in errors[0]["reason"], errors
    assert _nothing_written()


@pytest.mark.parametrize(("form_input", "field", "reason"), FORM_CASES.values(), ids=FORM_CASES.keys())
@pytest.mark.parametrize("with_document", [False, True], ids=["input-only", "with-document"])
def test_a_hostile_multipart_input_is_400_naming_the_field_and_writes_nothing(
    api_for, make_token, author, contracts, form_input, field, reason, with_document
):
    _, plain = make_token(author, pipeline=contracts)
    api = api_for(plain)
    form = {"input": form_input}
    if with_document:
        form["document"] = SimpleUploadedFile("note.txt", b"a note", content_type="text/plain")
    response = api.client.post(f"/api/v1/pipelines/{contracts.slug}/runs", form, headers=api.headers)
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors[0]["field"] == field and reason in errors[0]["reason"], errors
    assert _nothing_written()


def test_an_uploads_file_name_is_kept_without_characters_that_cannot_be_stored(api_for, make_token, author, contracts):
    _, plain = make_token(author, pipeline=contracts)
    api = api_for(plain)
    upload = SimpleUploadedFile("note\x07.txt", b"a note", content_type="text/plain")
    response = api.client.post(f"/api/v1/pipelines/{contracts.slug}/runs", {"document": upload}, headers=api.headers)
    assert response.status_code == 201, response.content
    assert Document.objects.get().filename == "note.txt"
    assert json.loads(json.dumps(Run.objects.get().input))["document"]["filename"] == "note.txt"
