"""E-mail delivery to a real SMTP server on 127.0.0.1: rendered from the step's
prompt, sent once per recipient under a stable Message-ID, the server's reply
recorded, refusals and dropped connections retried or dead-lettered as
webhooks are, held while paused, and the recipients' addresses kept out of
every log line and audit event and erased with the person's data."""

import hashlib
import logging

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.delivery import email as channel
from pipelines.delivery.dead_letters import delivery_redeliver, delivery_send_held
from pipelines.models import DeadLetter, Delivery, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.releases.pause import pipeline_pause, pipeline_unpause
from pipelines.runs.engine import run_execute, run_start
from pipelines.runs.redaction import subject_erase
from pipelines.steps.base import StepError
from tests import factories
from tests.pipelines.smtp_server import QUEUED, SMTPServer
from tests.releasing import release_to_production

ANA, BOB = "Ana.Lima@example.com", "bob@example.org"
TICKET = {"name": "Ana", "subject": "Charged twice", "customer": {"email": ANA}}
BODY = "Dear {{ name }},\n\nyour ticket \u201c{{ subject }}\u201d is resolved.\n"


@pytest.fixture
def smtp(settings):
    with SMTPServer() as server:
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
        settings.DEFAULT_FROM_EMAIL = "support@keel.example"
        settings.KEEL_EMAIL_TIMEOUT_SECONDS = 5
        yield server


@pytest.fixture(autouse=True)
def _no_waiting(monkeypatch):
    monkeypatch.setattr(channel, "BACKOFF_BASE_SECONDS", 0.0)


def email_pipeline(superuser, **config):
    """validate → e-mail the customer, released to production."""
    with acting_as(superuser):
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(workspace=workspace, slug="resolved", body=BODY,
                                                 variables=["name", "subject"])  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        factories.StepFactory(pipeline=pipeline, position=1, name="check", kind="validate", config={})
        step_config = {"channel": "email", "to_field": "customer.email", "subject": "Re: {{ subject }}", **config}
        if "to" in config:
            del step_config["to_field"]
        factories.StepFactory(pipeline=pipeline, position=2, name="tell the customer", kind="deliver",
                              config=step_config, prompt=prompt)  # fmt: skip
        release_to_production(release_cut(pipeline=pipeline, actor=superuser), actor=superuser)
    return pipeline


@pytest.fixture
def pipeline(superuser, smtp):
    return email_pipeline(superuser)


def start(pipeline, capture, document=TICKET) -> Run:
    with capture(execute=False):
        run, _ = run_start(pipeline=pipeline, input=document, actor=None, trigger="cli")
    return run


def execute(pipeline, capture, document=TICKET) -> Run:
    run = start(pipeline, capture, document)
    run_execute(run.pk)
    run.refresh_from_db()
    return run


def run_events(run: Run) -> str:
    return " ".join(e.payload for e in AuditEvent.objects.filter(object_id=str(run.pk)).order_by("seq"))


def assert_no_address(text: str, *addresses) -> None:
    for address in addresses or (ANA, BOB):
        assert address.lower() not in text.lower()


def test_it_sends_the_rendered_email_under_its_message_id_and_records_the_reply(
    pipeline, smtp, django_capture_on_commit_callbacks
):
    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.COMPLETED, run.failure_reason
    delivery = Delivery.objects.get(run=run)
    [received] = smtp.messages
    message = received.message
    assert received.rcpt_tos == [ANA] and received.mail_from == "support@keel.example"
    assert message["Subject"] == "Re: Charged twice"
    assert message["Message-ID"] == delivery.message_id == f"<{delivery.delivery_id}@keel.example>"
    assert message["X-Keel-Delivery"] == str(delivery.delivery_id)
    assert (
        message.get_content().replace("\r\n", "\n")
        == "Dear Ana,\n\nyour ticket \u201cCharged twice\u201d is resolved.\n"
    )
    assert (delivery.channel, delivery.status, delivery.attempts) == ("email", "delivered", 1)
    assert delivery.recipients == [{"address": ANA, "status": "accepted", "reply": QUEUED}]
    assert delivery.receiver == f"smtp://127.0.0.1:{smtp.port}: {QUEUED}"
    decision = StepRun.objects.get(run=run, position=2).decision
    assert decision["delivered_to"] == "email" and decision["message_id"] == delivery.message_id
    assert decision["recipients"] == 1
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="delivery.", object_id=str(run.pk))] == [
        "delivery.created", "delivery.attempted", "delivery.delivered",
    ]  # fmt: skip
    assert_no_address(run_events(run) + str(decision))
    assert audit_chain_verify().ok


def test_a_fixed_list_of_recipients_each_gets_it(superuser, smtp, django_capture_on_commit_callbacks):
    pipeline = email_pipeline(superuser, to=[ANA, BOB])

    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.COMPLETED
    [received] = smtp.messages
    assert received.rcpt_tos == [ANA, BOB]
    assert [r["status"] for r in Delivery.objects.get(run=run).recipients] == ["accepted", "accepted"]


def test_a_pdf_step_attaches_the_run_s_report(superuser, smtp, django_capture_on_commit_callbacks):
    pipeline = email_pipeline(superuser, format="pdf", title="Ticket report")

    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.COMPLETED, run.failure_reason
    [received] = smtp.messages
    [attachment] = list(received.message.iter_attachments())
    pdf = attachment.get_content()
    assert attachment.get_content_type() == "application/pdf" and pdf.startswith(b"%PDF")
    assert attachment.get_filename() == f"{pipeline.slug}-run-{run.pk}.pdf"
    decision = StepRun.objects.get(run=run, position=2).decision
    assert hashlib.sha256(pdf).hexdigest() == decision["pdf_sha256"]


@pytest.mark.parametrize(
    ("customer", "words"),
    [
        ({"email": "ana at example.com"}, "item 1 of the output's field 'customer.email' (config.to_field)"),
        ({"email": [ANA, "not-an-address"]}, "item 2 of the output's field 'customer.email'"),
        ({"email": 42}, "holds no address"),
        ({"phone": "+44 20 7946 0958"}, "the output's field 'customer.email' (config.to_field) is missing"),
    ],
)
def test_a_bad_recipient_fails_the_step_naming_the_field_and_sends_nothing(
    pipeline, smtp, django_capture_on_commit_callbacks, customer, words
):
    run = execute(pipeline, django_capture_on_commit_callbacks, {**TICKET, "customer": customer})

    assert run.status == Run.Status.FAILED
    assert words in run.failure_reason
    assert "ana at example.com" not in run.failure_reason and "not-an-address" not in run.failure_reason
    assert not Delivery.objects.filter(run=run).exists()
    assert smtp.messages == []


def test_a_refused_recipient_is_a_dead_letter_named_by_number_never_by_address(
    pipeline, smtp, django_capture_on_commit_callbacks, caplog
):
    smtp.refuse = {ANA.lower()}
    caplog.set_level(logging.DEBUG)

    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.FAILED
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 550)
    assert delivery.last_error == (
        "the server refused 1 of 1 recipients: recipient 1: 550 5.1.1 <[recipient 1]>: Recipient address "
        "rejected: User unknown in virtual mailbox table"
    )
    assert delivery.recipients[0]["status"] == "refused"
    assert DeadLetter.objects.filter(pk=delivery.pk).exists()
    assert smtp.messages == []
    assert_no_address(run.failure_reason + run_events(run) + delivery.last_error + caplog.text)


def test_when_one_of_two_is_refused_the_resend_goes_only_to_the_one_still_waiting(
    superuser, smtp, django_capture_on_commit_callbacks
):
    pipeline = email_pipeline(superuser, to=[ANA, BOB])
    smtp.refuse = {BOB}

    run = execute(pipeline, django_capture_on_commit_callbacks)

    delivery = Delivery.objects.get(run=run)
    assert run.status == Run.Status.FAILED and delivery.status == "failed"
    assert [r["status"] for r in delivery.recipients] == ["accepted", "refused"]
    assert "recipient 2: 550" in delivery.last_error
    [first] = smtp.messages
    assert first.rcpt_tos == [ANA]

    smtp.refuse = set()  # the mailbox exists now; an operator resends the dead letter
    delivery = delivery_redeliver(delivery_pk=delivery.pk)

    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    second = smtp.messages[1]
    assert second.rcpt_tos == [BOB]  # Ana is not sent it twice
    assert second.message["Message-ID"] == first.message["Message-ID"] == delivery.message_id
    assert second.message["To"] == f"{ANA}, {BOB}"  # the addressees, as the first time
    assert second.content == first.content  # the same message, byte for byte, Date included


def test_a_connection_dropped_mid_message_is_retried_with_the_same_message_id(
    pipeline, smtp, django_capture_on_commit_callbacks
):
    smtp.drops = 1

    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.COMPLETED, run.failure_reason
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    [dropped], [delivered] = smtp.dropped, smtp.messages
    assert dropped.message["Message-ID"] == delivered.message["Message-ID"] == delivery.message_id
    attempts = AuditEvent.objects.filter(action="delivery.attempted", object_id=str(run.pk)).order_by("seq")
    first, second = [event.payload_data for event in attempts]
    assert first["error"].startswith("connection failed: SMTPServerDisconnected")
    assert second["error"] is None and second["accepted"] == 1


def test_a_deferred_recipient_is_asked_again_and_gives_up_as_transient(
    pipeline, smtp, django_capture_on_commit_callbacks
):
    smtp.defer = {ANA.lower()}

    run = start(pipeline, django_capture_on_commit_callbacks)
    with pytest.raises(StepError, match="gave up after 3 attempts") as caught:
        run_execute(run.pk)

    assert caught.value.transient
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED  # handed back for the task's own retry
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 3, 450)
    assert "recipient 1: 450 4.2.0" in delivery.last_error

    smtp.defer = set()
    delivery_redeliver(delivery_pk=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 4)
    assert len(smtp.messages) == 1


def test_an_unreachable_server_is_transient_and_logged_without_addresses(
    pipeline, settings, django_capture_on_commit_callbacks, caplog
):
    with SMTPServer() as gone:
        settings.EMAIL_PORT = gone.port
    caplog.set_level(logging.DEBUG)

    run = start(pipeline, django_capture_on_commit_callbacks)
    with pytest.raises(StepError, match="gave up after 3 attempts"):
        run_execute(run.pk)

    run.refresh_from_db()
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts) == ("pending", 3)
    assert delivery.last_error.startswith("connection failed: ConnectionRefusedError")
    assert [r["status"] for r in delivery.recipients] == ["pending"]
    assert "retrying" in caplog.text
    assert_no_address(caplog.text + run_events(run) + (run.failure_reason or ""))


def test_a_paused_pipeline_holds_the_email_and_resuming_sends_it(
    pipeline, smtp, superuser, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
    pipeline_pause(pipeline=pipeline, actor=superuser, reason="Checking the wording")

    run_execute(run.pk)

    delivery = Delivery.objects.get(run=run)
    assert delivery.status == "held" and smtp.messages == []
    with django_capture_on_commit_callbacks(execute=False):
        assert pipeline_unpause(pipeline=pipeline, actor=superuser) == 1
    delivery_send_held(delivery.pk)  # what the resume's task does
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    [received] = smtp.messages
    assert received.message["Message-ID"] == delivery.message_id


def test_the_erasure_finds_and_erases_the_recipients(pipeline, smtp, superuser, django_capture_on_commit_callbacks):
    run = execute(pipeline, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(run=run)
    assert delivery.recipients[0]["address"] == ANA

    result = subject_erase(identifier=ANA.lower(), reason="request 2026-118", actor=superuser)

    assert run.pk in result["runs"]
    delivery.refresh_from_db()
    assert delivery.recipients == {"redacted": True}
    assert delivery.message_id and delivery.status == "delivered"  # the delivery's facts stay
    assert audit_chain_verify().ok


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ({"channel": "email", "subject": "Hi"}, "config", "one of the two"),
        ({"channel": "email", "to": ["a@x.example"], "to_field": "e", "subject": "Hi"}, "config", "one of the two"),
        ({"channel": "email", "to": ["nobody"], "subject": "Hi"}, "config", "item 1 ('nobody') is not a valid"),
        ({"channel": "email", "to_field": "customer.email"}, "config", "config.subject: an e-mail step needs"),
        ({"channel": "email", "to_field": "e", "subject": "{{ oops"}, "config", "config.subject: Template syntax"),
        ({"channel": "email", "to_field": "e", "subject": "{{ total }}"}, "config", "does not declare: total"),
        ({"channel": "email", "to_field": "e", "subject": "Hi", "url": "https://x.example"}, "config", "config.url"),
        ({"channel": "stored", "to_field": "e"}, "config", "config.to_field: only an e-mail step"),
    ],
)
def test_a_bad_email_step_is_refused_naming_the_field(acme, superuser, config, field, words):
    with acting_as(superuser):
        prompt = factories.PromptTemplateFactory(workspace=acme, body=BODY, variables=["name", "subject"])
        pipeline = factories.PipelineFactory(workspace=acme)
    step = factories.StepFactory.build(pipeline=pipeline, position=1, name="mail", kind="deliver", config=config,
                                       prompt=prompt if config["channel"] == "email" else None)  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        step.full_clean()
    assert words in " ".join(caught.value.message_dict[field])


def test_an_email_step_needs_a_prompt_for_its_body(acme):
    pipeline = factories.PipelineFactory(workspace=acme)
    step = factories.StepFactory.build(pipeline=pipeline, position=1, name="mail", kind="deliver",
                                       config={"channel": "email", "to": [BOB], "subject": "Hi"})  # fmt: skip
    with pytest.raises(ValidationError) as caught:
        step.full_clean()
    assert caught.value.message_dict["prompt"] == ["An e-mail step needs a prompt template (its body)."]


def test_another_django_backend_delivers_without_a_server_reply(
    pipeline, smtp, settings, mailoutbox, django_capture_on_commit_callbacks
):
    settings.KEEL_EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    run = execute(pipeline, django_capture_on_commit_callbacks)

    assert run.status == Run.Status.COMPLETED, run.failure_reason
    [sent] = mailoutbox
    delivery = Delivery.objects.get(run=run)
    assert sent.extra_headers["Message-ID"] == delivery.message_id and sent.to == [ANA]
    assert (delivery.status, delivery.last_status_code) == ("delivered", None)
    assert delivery.recipients == [{"address": ANA, "status": "accepted", "reply": ""}]
    assert smtp.messages == []


def test_a_delivery_whose_recipients_were_erased_is_not_sent_again(
    pipeline, smtp, superuser, django_capture_on_commit_callbacks
):
    smtp.refuse = {ANA.lower()}
    run = execute(pipeline, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(run=run)
    subject_erase(identifier=ANA, reason="request 2026-119", actor=superuser)
    smtp.refuse = set()

    delivery = delivery_redeliver(delivery_pk=delivery.pk)

    assert delivery.status == "failed" and delivery.attempts == 1
    assert smtp.messages == []


def test_the_dead_letter_page_shows_no_recipient_address(pipeline, smtp, superuser, client,
                                                         django_capture_on_commit_callbacks):  # fmt: skip
    smtp.refuse = {ANA.lower()}
    run = execute(pipeline, django_capture_on_commit_callbacks)
    delivery = Delivery.objects.get(run=run)
    client.force_login(superuser)

    listing = client.get(reverse("admin:pipelines_deadletter_changelist"))
    page = client.get(reverse("admin:pipelines_deadletter_change", args=[delivery.pk]))

    assert listing.status_code == page.status_code == 200
    assert str(delivery.delivery_id) in page.content.decode()
    assert_no_address(listing.content.decode() + page.content.decode())
