"""Documents as run input over the API: text and PDF uploads kept as their
original bytes, and every refusal with its reason and nothing stored."""

import hashlib
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Document, Run, StepRun
from pipelines.runs.engine import run_execute
from pipelines.runs.replay import run_replay
from tests import factories
from tests.pipelines.integration.api.conftest import deploy
from tests.pipelines.integration.api.pdfs import pdf_bomb, pdf_with_lone_surrogate, pdf_with_pages, pdf_with_text


@pytest.fixture
def contracts(acme, superuser):
    """ingest (text from the document) → gate: a pipeline that reads documents."""
    with acting_as(superuser):
        pipeline = factories.PipelineFactory(
            workspace=acme, slug="contracts",
            input_schema={"type": "object", "properties": {"client": {"type": "string"}}, "required": ["document"]},
        )  # fmt: skip
        factories.StepFactory(pipeline=pipeline, position=1, name="ingest", kind="ingest",
                              config={"text_field": "document.text"})  # fmt: skip
        factories.StepFactory(pipeline=pipeline, position=2, name="gate", kind="gate")
    return deploy(pipeline, superuser)


@pytest.fixture
def upload(api_for, make_token, author, contracts):
    _, plain = make_token(author, pipeline=contracts)
    api = api_for(plain)

    def send(content: bytes, content_type: str, name: str = "contract.txt", **fields):
        form = {"document": SimpleUploadedFile(name, content, content_type=content_type), **fields}
        return api.client.post(f"/api/v1/pipelines/{contracts.slug}/runs", form, headers=api.headers)

    return send


def test_a_text_document_becomes_the_runs_input_and_is_kept(upload, contracts, author):
    content = "Clause 1. The supplier delivers on Mondays — in full.\n".encode()
    response = upload(content, "text/plain", input=json.dumps({"client": "Acme"}), source="dms-4711")
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    stored = Document.objects.get(run=run)
    assert bytes(stored.content) == content and stored.sha256 == hashlib.sha256(content).hexdigest()
    assert (stored.size, stored.content_type, stored.source, stored.created_by) == (
        len(content), "text/plain", "dms-4711", author,
    )  # fmt: skip
    assert run.input["client"] == "Acme" and run.input["document"]["text"] == content.decode()
    assert AuditEvent.objects.get(action="run.document_stored").payload_data["sha256"] == stored.sha256
    run_execute(run.pk)
    ingest = StepRun.objects.get(run=run, kind="ingest")
    assert ingest.output["document"]["text"] == content.decode()


def test_a_pdfs_text_is_extracted_on_the_worker_before_the_first_step(upload):
    pdf = pdf_with_text("Invoice 2026-11", "Total due 420 EUR")
    response = upload(pdf, "application/pdf", name="invoice.pdf")
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["id"])
    # The request only kept the bytes: the run waits in the queue with its document.
    assert run.status == Run.Status.QUEUED and "text" not in run.input["document"]
    assert bytes(Document.objects.get().content) == pdf and Document.objects.get().text is None

    run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    document = StepRun.objects.get(run=run, position=1).input["document"]
    assert "Invoice 2026-11" in document["text"] and "Total due 420 EUR" in document["text"]
    assert document["pages"] == 1 and Document.objects.get().text == document["text"]
    read = AuditEvent.objects.get(action="run.document_read", object_id=str(run.pk)).payload_data
    assert read["text_sha256"] == hashlib.sha256(document["text"].encode()).hexdigest() and read["pages"] == 1
    assert audit_chain_verify().ok
    report = run_replay(run)
    assert report.ok, report.problems


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"%PDF-1.4\nthis is no pdf at all", "cannot be read"),
        (pdf_with_text(), "No text could be extracted"),
        (pdf_with_lone_surrogate(), "lone surrogate (U+D83D)"),
        (pdf_bomb(), "bytes of content streams"),
        (pdf_with_pages(1001), "1001 pages; the limit is 1000"),
    ],
    ids=["broken", "no-text", "lone-surrogate", "shared-stream-bomb", "too-many-pages"],
)
def test_a_pdf_the_worker_cannot_read_fails_its_run_with_the_reason(upload, content, reason):
    response = upload(content, "application/pdf", name="upload.pdf")
    assert response.status_code == 201, response.content
    run = run_execute(response.json()["id"])
    assert run.status == Run.Status.FAILED and run.failure_reason.startswith("document: ")
    assert reason in run.failure_reason
    assert not StepRun.objects.filter(run=run).exists() and Document.objects.get().text is None
    failed = AuditEvent.objects.get(action="run.failed", object_id=str(run.pk)).payload_data
    assert failed["error"] == run.failure_reason
    assert audit_chain_verify().ok


def test_the_same_document_under_the_same_key_is_the_same_run(upload):
    first = upload(b"same text", "text/plain", idempotency_key="doc-1")
    again = upload(b"same text", "text/plain", idempotency_key="doc-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert Document.objects.count() == 1


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b"", "text/plain", "empty"),
        (b"just words", "application/pdf", "labelled application/pdf but is not a PDF"),
        (pdf_with_text("hello"), "text/plain", "labelled text/plain but is a PDF"),
        (b"\xff\xfe\x00broken", "text/plain", "not UTF-8"),
        ("a lone \ud83d surrogate".encode("utf-8", "surrogatepass"), "text/plain", "not UTF-8"),
        (b"<html></html>", "text/html", "must be text/plain or application/pdf"),
        (b"   \n\t ", "text/plain", "holds no text"),
    ],
)
def test_a_bad_document_is_refused_with_its_reason(upload, content, content_type, reason):
    response = upload(content, content_type)
    assert response.status_code == 400, response.content
    error = response.json()["errors"][0]
    assert error["field"] == "document" and reason in error["reason"]
    assert not Run.objects.exists() and not Document.objects.exists()


def test_an_oversized_document_is_refused(upload, settings):
    settings.KEEL_DOCUMENT_MAX_BYTES = 100
    response = upload(b"x" * 101, "text/plain")
    assert response.status_code == 400
    assert "the limit is 100" in response.json()["errors"][0]["reason"]
    assert not Run.objects.exists()


def test_a_document_against_the_input_schema_stores_nothing(upload):
    response = upload(b"text", "text/plain", input=json.dumps({"client": 7}))
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "input.client"
    assert not Document.objects.exists() and not Run.objects.exists()


def test_input_in_a_multipart_form_must_be_json(upload):
    response = upload(b"text", "text/plain", input="{not json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "input"


def test_documents_are_listed_read_only_for_those_who_see_the_runs(upload, client, auditor, outsider):
    upload(b"a contract", "text/plain", source="dms-1")
    document = Document.objects.get()
    client.force_login(auditor)
    assert "dms-1" in client.get("/admin/pipelines/document/").content.decode()
    assert client.get(f"/admin/pipelines/document/{document.pk}/change/").status_code == 200
    client.force_login(outsider)
    assert client.get("/admin/pipelines/document/").status_code == 403


def test_an_oversized_form_field_is_413_json(upload, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = upload(b"text", "text/plain", input=json.dumps({"client": "x" * 2000}))
    assert response.status_code == 413 and response.json()["status"] == 413
    assert not Run.objects.exists()
