"""Webhook delivery of the demo triage pipeline's output to a real receiver on
127.0.0.1: signed, retried, resumed after a crash under the same delivery id."""

import hashlib
import hmac
import io
import json
import socket
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.canonical import canonical_bytes
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.delivery import webhooks as deliveries
from pipelines.delivery.webhooks import delivery_send
from pipelines.models import Delivery, Pipeline, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from pipelines.steps.base import StepContext, StepError
from pipelines.steps.deliver import execute as deliver_execute
from tests import factories
from tests.pipelines.webhook_server import Answer, WebhookServer
from tests.releasing import release_to_production

SECRET_ENV = "TEST_WEBHOOK_SECRET"
SECRET = "s3cret-for-the-receiver"
TICKET = {
    "subject": "Where is my parcel?",
    "body": "I ordered on Monday and the tracking has not moved. Call me on +44 20 7946 0958 or ada@example.com.",
    "customer_email": "ada@example.com",
}


class WorkerKilled(Exception):
    """Stands in for a worker process dying at a chosen moment."""


@pytest.fixture
def receiver():
    with WebhookServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _secret_and_no_waiting(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)


def _release_with_last_step(config: dict) -> Pipeline:
    from django.contrib.auth import get_user_model

    call_command("keel_demo", stdout=io.StringIO())
    admin = get_user_model().objects.get(username="admin")
    pipeline = Pipeline.objects.get(slug="support-triage")
    last = pipeline.steps.order_by("position").last()
    factories.credential_in(pipeline.workspace, SECRET_ENV)
    last.name, last.config = "notify orders", config
    last.full_clean()
    last.save()
    release_to_production(release_cut(pipeline=pipeline, actor=admin), actor=admin)
    return pipeline


@pytest.fixture
def triage(db, receiver):
    return _release_with_last_step({"channel": "webhook", "url": receiver.url, "credential": "webhook"})


def _start(pipeline, capture) -> Run:
    with capture(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
    return run


def _last_position(run: Run) -> int:
    return run.release.snapshot_data["steps"][-1]["position"]


def _lease_lost(run: Run) -> None:
    # What the recovery beat sees after a worker died holding the run.
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))


def _events(run: Run, action: str) -> list[dict]:
    return [e.payload_data for e in AuditEvent.objects.filter(action=action, object_id=str(run.pk)).order_by("seq")]


def test_a_run_delivers_its_output_signed_under_its_delivery_id(triage, receiver, django_capture_on_commit_callbacks):
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    delivery = Delivery.objects.get(run=run)
    [request] = receiver.requests
    headers, raw = request["headers"], request["raw"]
    assert headers["content-type"] == "application/json"
    assert headers["x-keel-delivery"] == str(delivery.delivery_id)
    assert int(headers["x-keel-timestamp"]) > 0
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-keel-signature"], f"sha256={expected}")
    assert SECRET not in json.dumps(headers) and SECRET.encode() not in raw

    body = json.loads(raw)
    step = StepRun.objects.get(run=run, position=_last_position(run))
    assert raw == canonical_bytes(body)
    assert body == {"delivery_id": str(delivery.delivery_id), "run_id": run.pk, "pipeline": "support-triage",
                    "output": step.input}  # fmt: skip
    assert delivery.payload_sha256 == hashlib.sha256(raw).hexdigest()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)
    assert delivery.delivered_at is not None
    assert delivery.receiver.startswith("127.0.0.1:") and "X-Receiver: orders-service" in delivery.receiver

    assert step.decision["delivered_to"] == receiver.url
    assert step.decision["delivery_id"] == str(delivery.delivery_id)
    assert step.decision["receiver"] == delivery.receiver and step.output == step.input
    [attempted] = _events(run, "delivery.attempted")
    assert attempted["delivery_id"] == str(delivery.delivery_id)
    assert (attempted["attempt"], attempted["status_code"], attempted["receiver"]) == (1, 200, delivery.receiver)
    assert [e["delivery_id"] for e in _events(run, "delivery.delivered")] == [str(delivery.delivery_id)]
    assert audit_chain_verify().ok
    assert not AuditEvent.objects.filter(payload__contains=SECRET).exists()


def test_a_server_error_is_retried_under_the_same_delivery_id(triage, receiver, django_capture_on_commit_callbacks):
    receiver.script = [Answer(status=500), Answer()]
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    assert run.status == Run.Status.COMPLETED
    delivery = Delivery.objects.get(run=run)
    assert len(receiver.requests) == 2 and receiver.delivery_ids == {str(delivery.delivery_id)}
    assert receiver.requests[0]["raw"] == receiver.requests[1]["raw"]
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert [(e["attempt"], e["status_code"]) for e in _events(run, "delivery.attempted")] == [(1, 500), (2, 200)]


def test_a_rate_limit_is_retried(triage, receiver, django_capture_on_commit_callbacks):
    receiver.script = [Answer(status=429), Answer(status=503), Answer(status=202)]
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    assert run.status == Run.Status.COMPLETED
    assert Delivery.objects.get(run=run).attempts == 3 and len(receiver.delivery_ids) == 1


def test_a_client_error_fails_the_run_without_retrying(triage, receiver, django_capture_on_commit_callbacks):
    receiver.script = [Answer(status=400, body=b"unknown ticket schema")]
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    assert run.status == Run.Status.FAILED
    assert "was refused: HTTP 400: unknown ticket schema" in run.failure_reason
    assert len(receiver.requests) == 1
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 400)
    assert not _events(run, "delivery.delivered")
    assert _events(run, "step.failed")[-1]["transient"] is False


def test_an_unreachable_receiver_is_a_transient_error_after_retries(db, django_capture_on_commit_callbacks):
    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pipeline = _release_with_last_step(
        {"channel": "webhook", "url": f"http://127.0.0.1:{port}/hook", "credential": "webhook"}
    )
    run = _start(pipeline, django_capture_on_commit_callbacks)
    with pytest.raises(StepError, match="gave up after 3 attempts") as caught:
        run_execute(run.pk)
    assert caught.value.transient
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED  # handed back for the task's own retry
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("pending", 3, None)
    assert delivery.last_error.startswith("connection failed") and delivery.receiver == ""
    assert [e["receiver"] for e in _events(run, "delivery.attempted")] == [None, None, None]


def test_a_later_retry_of_the_step_reuses_the_delivery(triage, receiver, django_capture_on_commit_callbacks):
    receiver.script = [Answer(status=502)] * 3
    run = _start(triage, django_capture_on_commit_callbacks)
    with pytest.raises(StepError):
        run_execute(run.pk)
    run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED
    delivery = Delivery.objects.get(run=run)
    assert len(receiver.requests) == 4 and receiver.delivery_ids == {str(delivery.delivery_id)}
    assert (delivery.status, delivery.attempts) == ("delivered", 4)


def test_a_worker_dying_mid_send_resends_under_the_same_id(
    triage, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    record_attempt = deliveries._record_attempt
    calls = []

    def dies_after_sending(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise WorkerKilled  # the receiver has the request; the worker never records the answer
        return record_attempt(*args, **kwargs)

    monkeypatch.setattr(deliveries, "_record_attempt", dies_after_sending)
    run = _start(triage, django_capture_on_commit_callbacks)
    with pytest.raises(WorkerKilled):
        run_execute(run.pk)
    left = Delivery.objects.get(run=run)
    assert (left.status, left.attempts) == ("pending", 0)

    _lease_lost(run)
    run = run_execute(run.pk, owner="worker-after-recovery")
    assert run.status == Run.Status.COMPLETED
    assert len(receiver.requests) == 2 and receiver.delivery_ids == {str(left.delivery_id)}
    assert receiver.requests[0]["raw"] == receiver.requests[1]["raw"]
    assert Delivery.objects.get(pk=left.pk).status == "delivered" and Delivery.objects.count() == 1


def test_a_delivered_step_is_not_sent_again(triage, receiver, monkeypatch, django_capture_on_commit_callbacks):
    import pipelines.runs.engine

    calls = []

    def dies_after_delivering(config, document, **kwargs):
        record = delivery_send(config, document, **kwargs)
        calls.append(record)
        if len(calls) == 1:
            raise WorkerKilled  # delivered, but the step's completion is never recorded
        return record

    monkeypatch.setattr(pipelines.runs.engine, "delivery_send", dies_after_delivering)
    run = _start(triage, django_capture_on_commit_callbacks)
    with pytest.raises(WorkerKilled):
        run_execute(run.pk)
    _lease_lost(run)
    run = run_execute(run.pk, owner="worker-after-recovery")
    assert run.status == Run.Status.COMPLETED
    assert len(receiver.requests) == 1
    assert calls[1] == calls[0] and calls[1]["status"] == "delivered"
    step = StepRun.objects.get(run=run, position=_last_position(run))
    assert step.decision["delivery_id"] == receiver.requests[0]["headers"]["x-keel-delivery"]
    assert len(_events(run, "delivery.attempted")) == 1


def test_a_changed_output_for_an_existing_delivery_is_refused(triage, receiver, django_capture_on_commit_callbacks):
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    config = run.release.snapshot_data["steps"][-1]["config"]
    Delivery.objects.filter(run=run).update(status=Delivery.Status.PENDING)  # as if it were still to send
    with pytest.raises(StepError, match="made for a different output") as caught:
        delivery_send(config, {**TICKET, "subject": "something else"}, run_id=run.pk, position=_last_position(run))
    assert not caught.value.transient
    assert len(receiver.requests) == 1


def test_a_missing_secret_fails_the_run_naming_the_variable(
    triage, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.delenv(SECRET_ENV)
    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    assert run.status == Run.Status.FAILED
    assert SECRET_ENV in run.failure_reason
    assert not receiver.requests and not Delivery.objects.exists()


def test_webhook_delivery_outside_a_run_is_refused():
    step = {"kind": "deliver", "name": "notify", "config": {"channel": "webhook", "url": "http://x", "secret_env": "S"}}
    ctx = StepContext(run_id=0, pipeline_slug="p", step_position=1, seed=0, step=step, policy=None,
                      input_schema={}, call_model=None)  # fmt: skip
    with pytest.raises(StepError, match="unavailable outside a run"):
        deliver_execute({"a": 1}, ctx)


def test_the_run_page_shows_who_received_each_delivery(client, triage, receiver, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    run = run_execute(_start(triage, django_capture_on_commit_callbacks).pk)
    delivery = Delivery.objects.get(run=run)
    client.force_login(get_user_model().objects.get(username="operator"))
    page = client.get(reverse("admin:pipelines_run_change", args=[run.pk])).content.decode()
    assert str(delivery.delivery_id) in page and "orders-service" in page
