"""Dead letters: deliveries that exhausted their retries are listed in the
admin with their last error, and resent under the same delivery id."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.delivery import webhooks as deliveries
from pipelines.delivery.dead_letters import dead_letter_resend, dead_letters_for_user, delivery_redeliver
from pipelines.models import DeadLetter, Delivery, Pipeline, Run
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from tests import factories
from tests.pipelines.webhook_server import Answer, WebhookServer
from tests.releasing import release_to_production

SECRET_ENV = "TEST_DEAD_LETTER_SECRET"
TICKET = {"subject": "Where is my parcel?", "body": "Tracking has not moved.", "customer_email": "ada@example.com"}


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "dead-letter-secret")
    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)
    with WebhookServer() as server:
        yield server


@pytest.fixture
def users(db):
    call_command("keel_demo", stdout=io.StringIO())
    return {u.username: u for u in get_user_model().objects.all()}


@pytest.fixture
def dead(users, receiver, django_capture_on_commit_callbacks) -> Delivery:
    """A run whose webhook answered 400: refused, not retried, the run failed."""
    admin = users["admin"]
    pipeline = Pipeline.objects.get(slug="support-triage")
    last = pipeline.steps.order_by("position").last()
    last.config = {
        "channel": "webhook",
        "url": receiver.url,
        "credential": factories.credential_in(pipeline.workspace, SECRET_ENV),
    }
    last.full_clean()
    last.save()
    release_to_production(release_cut(pipeline=pipeline, actor=admin))
    receiver.script = [Answer(status=400, body=b"unknown order")]
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
    run = run_execute(run.pk)
    assert run.status == Run.Status.FAILED, run.failure_reason  # a routine ticket passes the gate
    return Delivery.objects.get(run=run)


def test_an_exhausted_delivery_is_a_dead_letter_with_its_last_error(dead, users, client):
    assert dead.status == Delivery.Status.FAILED and "HTTP 400: unknown order" in dead.last_error
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [dead.pk]
    client.force_login(users["operator"])
    page = client.get("/admin/pipelines/deadletter/")
    assert page.status_code == 200 and "HTTP 400: unknown order" in page.content.decode()


def test_a_resend_keeps_the_delivery_id_and_body_and_is_audited(
    dead, users, receiver, django_capture_on_commit_callbacks
):
    operator = users["operator"]
    with django_capture_on_commit_callbacks(execute=False) as queued:
        dead_letter_resend(delivery=dead, actor=operator)
    assert len(queued) == 1  # the send itself happens on a worker
    event = AuditEvent.objects.get(action="delivery.resend")
    assert event.actor_name == "operator" and event.payload_data["delivery_id"] == str(dead.delivery_id)
    resent = delivery_redeliver(delivery_pk=dead.pk)
    assert resent.status == Delivery.Status.DELIVERED and resent.delivery_id == dead.delivery_id
    first, second = receiver.requests
    assert first["headers"]["x-keel-delivery"] == second["headers"]["x-keel-delivery"] == str(dead.delivery_id)
    assert first["raw"] == second["raw"]
    assert not DeadLetter.objects.exists()
    assert audit_chain_verify().ok


def test_resending_many_from_the_admin_queues_each(dead, users, client, django_capture_on_commit_callbacks):
    client.force_login(users["operator"])
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = client.post(
            "/admin/pipelines/deadletter/", {"action": "resend_deliveries", "_selected_action": [dead.pk]}
        )
    assert response.status_code == 302 and len(queued) == 1
    assert AuditEvent.objects.filter(action="delivery.resend").count() == 1


def test_only_the_deploy_right_resends(dead, users):
    with pytest.raises(PermissionDenied):
        dead_letter_resend(delivery=dead, actor=users["auditor"])
    assert not AuditEvent.objects.filter(action="delivery.resend").exists()


def test_a_delivered_delivery_is_not_resent(dead, users, django_capture_on_commit_callbacks):
    from django.core.exceptions import ValidationError

    Delivery.objects.filter(pk=dead.pk).update(status=Delivery.Status.DELIVERED)
    with pytest.raises(ValidationError, match="not a dead letter"):
        dead_letter_resend(delivery=dead, actor=users["admin"])


def test_dead_letters_are_filtered_by_object_rights(dead, users, outsider):
    assert list(dead_letters_for_user(user=users["operator"])) == [dead]
    assert list(dead_letters_for_user(user=outsider)) == []
