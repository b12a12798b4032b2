"""The PDF report delivery: a deliver step with ``"format": "pdf"`` makes a
report of the output with its provenance, the same bytes on every rebuild."""

import hashlib
import hmac
import io
from datetime import UTC, datetime

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from pypdf import PdfReader

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.delivery import reports
from pipelines.delivery import webhooks as deliveries
from pipelines.delivery.reports import report_build
from pipelines.models import Delivery, Run, StepRun
from pipelines.runs.engine import run_execute
from pipelines.runs.replay import run_replay
from pipelines.steps import validate_step_config
from reviews.services import review_decide
from tests import factories
from tests.pipelines.webhook_server import WebhookServer
from tests.reviews.conftest import gated_pipeline, hold, task_of

SECRET_ENV = "TEST_REPORT_SECRET"
SECRET = "pdf-receiver-secret"
PDF_STORED = {"channel": "stored", "format": "pdf", "title": "Acme reply report"}


def _text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)


def _decide(task, user, decision, **kwargs):
    with acting_as(user):
        return review_decide(task=task, actor=user, decision=decision, **kwargs)


def _report_of(run: Run) -> tuple[StepRun, bytes]:
    step = StepRun.objects.get(run=run, position=2)
    report = report_build(run_id=run.pk, position=2, document=step.input, config=PDF_STORED)
    return step, report.pdf


@pytest.fixture
def reported(acme, superuser, author):
    return gated_pipeline(acme, superuser=superuser, author=author, slug="acme-reports", deliver=PDF_STORED)


@pytest.fixture
def edited_run(reported, reviewer) -> Run:
    run = hold(reported, draft="We guarantee a refund tomorrow.")
    _decide(task_of(run), reviewer, "edit", edited_output={**run.input, "draft": "We will check your refund."})
    return run_execute(run.pk)


def test_the_report_states_the_output_with_its_pipeline_release_fingerprint_and_approvals(edited_run):
    run = edited_run
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    step, pdf = _report_of(run)
    assert step.decision["format"] == "pdf" and step.decision["delivered_to"] == "stored"
    assert step.decision["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert step.decision["pdf_bytes"] == len(pdf) and pdf.startswith(b"%PDF-")

    text = _text(pdf)
    release = run.release
    assert "Acme reply report" in text
    assert "Pipeline: Acme Reports (acme-reports)" in text
    assert f"Run: {run.pk}" in text and f"Release: #{release.number}" in text
    assert release.fingerprint in text
    assert "reviewer (edited, then approved" in text
    assert "We will check your refund." in text and "We guarantee a refund" not in text  # the approved output

    approval = StepRun.objects.get(run=run, position=1).decision["review"]["approvals"][0]
    assert approval["reviewer"] == "reviewer" and approval["decision"] == "edit"
    assert approval["at"] in text
    # The date and the id come from the run: the approval's time, and a hash of the run.
    info = PdfReader(io.BytesIO(pdf)).metadata
    approved_at = datetime.fromisoformat(approval["at"]).astimezone(UTC)
    assert info["/CreationDate"] == approved_at.strftime("D:%Y%m%d%H%M%S+00'00'") == info["/ModDate"]
    expected_id = hashlib.sha256(
        f"keel-report:{run.pk}:2:{release.fingerprint}:{step.output_sha256}".encode()
    ).digest()[:16]
    assert PdfReader(io.BytesIO(pdf)).trailer["/ID"][0].original_bytes == expected_id
    assert step.decision["document_id"] == expected_id.hex()


def test_every_rebuild_and_the_replay_give_the_same_bytes(edited_run):
    step, first = _report_of(edited_run)
    _, second = _report_of(edited_run)
    assert first == second
    report = run_replay(edited_run)
    assert report.ok, report
    assert [s.match for s in report.steps] == [True, True]


def test_replay_notices_a_report_whose_bytes_would_differ(edited_run, monkeypatch):
    render = reports.report_render
    monkeypatch.setattr(reports, "report_render", lambda facts, doc, **kw: render(facts, doc, **kw) + b"\n%changed")
    report = run_replay(edited_run)
    assert not report.ok
    assert "decision differs from the chain" in report.steps[1].reason


def test_an_output_the_policy_passed_says_no_person_reviewed_it(acme, superuser, author):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-passed", deliver=PDF_STORED,
                              review_mode="never")  # fmt: skip
    run = hold(pipeline)
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    step, pdf = _report_of(run)
    assert step.decision["pdf_sha256"] == hashlib.sha256(pdf).hexdigest()
    assert "No person reviewed this output: the approval policy passed it." in _text(pdf)
    # Dated when the run started (its run.started event), since nobody approved it.
    started = AuditEvent.objects.get(action="run.started", object_id=str(run.pk)).ts
    assert PdfReader(io.BytesIO(pdf)).metadata["/CreationDate"] == started.astimezone(UTC).strftime(
        "D:%Y%m%d%H%M%S+00'00'"
    )
    assert f"started {started.astimezone(UTC).isoformat()}" in _text(pdf)
    assert run_replay(run).ok


def test_a_pdf_webhook_delivery_sends_the_report_signed_over_its_bytes(acme, superuser, author, reviewer, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)
    with WebhookServer() as receiver:
        config = {
            "channel": "webhook",
            "url": receiver.url,
            "credential": factories.credential_in(acme, SECRET_ENV),
            "format": "pdf",
        }
        pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-pdf-hook", deliver=config)
        run = hold(pipeline)
        _decide(task_of(run), reviewer, "approve")
        run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    [request] = receiver.requests
    headers, raw = request["headers"], request["raw"]
    assert headers["content-type"] == "application/pdf" and raw.startswith(b"%PDF-")
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-keel-signature"], f"sha256={expected}")
    delivery = Delivery.objects.get(run=run)
    step = StepRun.objects.get(run=run, position=2)
    assert headers["x-keel-delivery"] == str(delivery.delivery_id) == step.decision["delivery_id"]
    assert hashlib.sha256(raw).hexdigest() == delivery.payload_sha256 == step.decision["pdf_sha256"]
    assert "reviewer (approved" in _text(raw) and run.release.fingerprint in _text(raw)
    assert run_replay(run).ok  # rebuilt without sending anything again
    assert len(receiver.requests) == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"channel": "stored", "format": "docx"}, "config.format: 'docx' is not one of ['json', 'pdf']"),
        ({"channel": "stored", "title": "Report"}, "config.title: a title is for PDF reports"),
        ({"channel": "stored", "format": "pdf", "title": ""}, "config.title: '' should be non-empty"),
    ],
)
def test_a_bad_report_config_is_refused_naming_the_field(config, message):
    with pytest.raises(ValidationError) as error:
        validate_step_config("deliver", config)
    assert any(message in m for m in error.value.messages), error.value.messages


def _download(client, user, run):
    client.force_login(user)
    return client.get(reverse("admin:pipelines_run_report", args=[run.pk, 2]))


@pytest.mark.parametrize("persona", ["lead", "auditor", "operator", "superuser"])
def test_who_may_see_the_run_downloads_the_very_bytes_recorded(edited_run, client, persona, request):
    user = request.getfixturevalue(persona)
    client.force_login(user)
    page = client.get(reverse("admin:pipelines_run_change", args=[edited_run.pk]))
    assert page.status_code == 200 and reverse("admin:pipelines_run_report", args=[edited_run.pk, 2]) in page.text
    response = _download(client, user, edited_run)
    assert response.status_code == 200 and response["Content-Type"] == "application/pdf"
    assert "attachment" in response["Content-Disposition"]
    step = StepRun.objects.get(run=edited_run, position=2)
    assert hashlib.sha256(response.content).hexdigest() == step.decision["pdf_sha256"]
    [event] = AuditEvent.objects.filter(action="run.report_downloaded", object_id=str(edited_run.pk))
    assert event.actor_name == user.username and event.payload_data["pdf_sha256"] == step.decision["pdf_sha256"]


@pytest.mark.parametrize("persona", ["outsider", "reviewer"])
def test_nobody_else_downloads_it(edited_run, client, persona, request):
    response = _download(client, request.getfixturevalue(persona), edited_run)
    assert response.status_code in (302, 403, 404) and not response.content.startswith(b"%PDF")
    assert not AuditEvent.objects.filter(action="run.report_downloaded").exists()


def test_a_report_that_no_longer_rebuilds_to_the_recorded_bytes_is_not_served(edited_run, client, lead):
    tampered = {**StepRun.objects.get(run=edited_run, position=2).input, "draft": "Something else entirely."}
    StepRun.objects.filter(run=edited_run, position=2).update(input=tampered)
    response = _download(client, lead, edited_run)
    assert response.status_code == 302 and response["Location"].endswith(f"/run/{edited_run.pk}/change/")
    message = [str(m) for m in get_messages(response.wsgi_request)]
    assert any("does not match the SHA-256 recorded" in m for m in message), message
    assert not AuditEvent.objects.filter(action="run.report_downloaded").exists()


def test_a_step_without_a_report_has_nothing_to_download(acme, superuser, author, client, lead):
    run = hold(gated_pipeline(acme, superuser=superuser, author=author, slug="acme-plain", review_mode="never"))
    response = _download(client, lead, run)
    assert response.status_code == 302
    assert any("made no PDF report" in str(m) for m in get_messages(response.wsgi_request))


def test_an_evaluation_in_the_sandbox_passes_the_output_through_without_a_report(acme, superuser, author):
    from pipelines.evaluation.services import sandbox_execute

    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-eval", deliver=PDF_STORED,
                              review_mode="never")  # fmt: skip
    outcome = sandbox_execute(pipeline.releases.get(), {"subject": "s", "draft": "d"})
    assert outcome.error == "" and outcome.output == {"subject": "s", "draft": "d"}
