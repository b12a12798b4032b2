"""A rejected run ends with no delivery, and the consumer its webhook step would
have delivered to gets a signed ``run.rejected`` notice: a real receiver on
127.0.0.1, the delivery machinery's id, signature, retries and dead letters."""

import hashlib
import hmac
import json

import pytest

from audit.canonical import canonical_bytes
from audit.context import acting_as
from audit.models import AuditEvent
from pipelines import broker
from pipelines.delivery import webhooks as deliveries
from pipelines.delivery.dead_letters import dead_letter_resend, dead_letters_for_user, delivery_redeliver
from pipelines.delivery.notices import notice_send_by_pk
from pipelines.models import DeadLetter, Delivery, Run
from pipelines.steps.base import StepError
from pipelines.tasks import delivery as tasks
from pipelines.tasks.delivery import notice_send_task
from reviews.services import review_decide
from tests import factories
from tests.pipelines.webhook_server import Answer, WebhookServer
from tests.reviews.conftest import gated_pipeline, hold, task_of

SECRET_ENV = "TEST_NOTICE_SECRET"
SECRET = "notice-receiver-secret"
DRAFT = "We guarantee a full refund by Friday."


@pytest.fixture
def receiver():
    with WebhookServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _secret_and_no_waiting(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)
    # The task runs here, eagerly, inside the test's transaction: the worker's
    # connection hygiene would close the connection holding it.
    monkeypatch.setattr(tasks, "close_old_connections", lambda: None)


@pytest.fixture
def hooked(acme, superuser, author, receiver):
    config = {"channel": "webhook", "url": receiver.url, "credential": factories.credential_in(acme, SECRET_ENV)}
    return gated_pipeline(acme, superuser=superuser, author=author, slug="acme-hooked", deliver=config)


def _reject(run, reviewer, capture, reason="Promises a refund we cannot give."):
    with capture(execute=False) as callbacks, acting_as(reviewer):
        review_decide(task=task_of(run), actor=reviewer, decision="reject", reason=reason)
    return callbacks


def _actions(run) -> list[str]:
    return list(AuditEvent.objects.filter(object_id=str(run.pk), object_type="run").values_list("action", flat=True))


def test_a_rejection_sends_a_signed_run_rejected_notice_and_no_output(
    hooked, reviewer, receiver, django_capture_on_commit_callbacks
):
    run = hold(hooked, draft=DRAFT)
    callbacks = _reject(run, reviewer, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED and run.output is None
    notice = Delivery.objects.get(run=run)
    assert (notice.event, notice.status, notice.position, notice.url) == ("run.rejected", "pending", 1, receiver.url)
    assert not DeadLetter.objects.filter(pk=notice.pk).exists()  # waiting for its task, not dead
    assert receiver.requests == []  # nothing is sent before the rejection commits
    [queued] = [c for c in callbacks if getattr(c, "func", None) is broker.enqueue]
    assert queued.args == ("pipelines.send_notice", notice.pk)  # its task is enqueued by name on commit

    assert notice_send_task.apply(args=(notice.pk,)).get() == "delivered"
    [request] = receiver.requests
    headers, raw = request["headers"], request["raw"]
    expected = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-keel-signature"], f"sha256={expected}")
    assert headers["x-keel-event"] == "run.rejected" and headers["content-type"] == "application/json"
    assert headers["x-keel-delivery"] == str(notice.delivery_id)
    body = json.loads(raw)
    assert raw == canonical_bytes(body) and hashlib.sha256(raw).hexdigest() == notice.payload_sha256
    release = run.release
    assert body == {
        "delivery_id": str(notice.delivery_id),
        "event": "run.rejected",
        "run_id": run.pk,
        "pipeline": "acme-hooked",
        "release": {"number": release.number, "fingerprint": release.fingerprint},
        "position": 1,
        "reason": "Promises a refund we cannot give.",
        "reviewer": "reviewer",
        "rejected_at": run.finished_at.isoformat(),
    }
    assert DRAFT.encode() not in raw and b"output" not in raw  # never the rejected output

    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("delivered", 1)
    actions = _actions(run)
    # The notice's row is on the record in the rejection's own append, before anything is sent.
    assert actions[-4:] == ["run.rejected", "delivery.created", "delivery.attempted", "delivery.delivered"]
    assert notice_send_task.apply(args=(notice.pk,)).get() is None  # sent once: a repeat does nothing
    assert len(receiver.requests) == 1


def test_no_notice_is_made_when_the_release_has_no_webhook(
    acme, superuser, author, reviewer, django_capture_on_commit_callbacks
):
    run = hold(gated_pipeline(acme, superuser=superuser, author=author))  # gate → stored delivery
    _reject(run, reviewer, django_capture_on_commit_callbacks)
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED
    assert not Delivery.objects.filter(run=run).exists()
    assert "delivery.created" not in _actions(run)


def test_a_staging_run_sends_no_notice(hooked, superuser, reviewer, receiver, django_capture_on_commit_callbacks):
    from pipelines.releases.deploy import deployment_set
    from pipelines.runs.engine import run_execute, run_start

    with acting_as(superuser):
        deployment_set(release=hooked.releases.get(), environment="staging", actor=superuser)
    run, _ = run_start(pipeline=hooked, input={"subject": "s", "draft": DRAFT}, actor=None, trigger="cli",
                       environment="staging", enqueue=False)  # fmt: skip
    run = run_execute(run.pk)
    _reject(run, reviewer, django_capture_on_commit_callbacks)
    assert not Delivery.objects.filter(run=run).exists() and receiver.requests == []


def test_a_notice_that_keeps_failing_becomes_a_dead_letter_and_is_resent_under_its_id(
    hooked, reviewer, operator, receiver, django_capture_on_commit_callbacks
):
    run = hold(hooked)
    _reject(run, reviewer, django_capture_on_commit_callbacks)
    notice = Delivery.objects.get(run=run)
    receiver.script = [Answer(status=503)] * 100
    # A run of the task that fails for now leaves it pending for the task's retry: not yet a dead letter.
    with pytest.raises(StepError) as error:
        notice_send_by_pk(notice.pk)
    assert error.value.transient
    notice.refresh_from_db()
    assert (notice.status, notice.attempts) == ("pending", 3) and not dead_letters_for_user(user=operator).exists()
    # The task's last retry gives up: a dead letter.
    assert notice_send_task.apply(args=(notice.pk,), retries=notice_send_task.max_retries).get() == "failed"
    notice.refresh_from_db()
    assert notice.status == "failed" and notice.attempts == 6 and "HTTP 503" in notice.last_error
    assert list(dead_letters_for_user(user=operator)) == [notice]
    assert "delivery.failed" in _actions(run)

    receiver.script = []
    with django_capture_on_commit_callbacks(execute=False):
        dead_letter_resend(delivery=notice, actor=operator)
    assert delivery_redeliver(delivery_pk=notice.pk).status == "delivered"
    ids = {r["headers"]["x-keel-delivery"] for r in receiver.requests}
    assert ids == {str(notice.delivery_id)}
    assert len({r["raw"] for r in receiver.requests}) == 1  # the same body every time


def test_a_notice_without_its_signing_secret_is_a_dead_letter_at_once(
    hooked, reviewer, operator, receiver, monkeypatch, django_capture_on_commit_callbacks
):
    run = hold(hooked)
    _reject(run, reviewer, django_capture_on_commit_callbacks)
    monkeypatch.delenv(SECRET_ENV)
    notice = Delivery.objects.get(run=run)
    assert notice_send_task.apply(args=(notice.pk,)).get() == "failed"
    notice.refresh_from_db()
    assert notice.status == "failed" and SECRET_ENV in notice.last_error and receiver.requests == []
    assert list(dead_letters_for_user(user=operator)) == [notice]


def test_a_notice_is_held_while_the_pipeline_is_paused_and_sent_on_resume(
    hooked, reviewer, operator, receiver, django_capture_on_commit_callbacks
):
    from pipelines.delivery.dead_letters import delivery_send_held as resend_held
    from pipelines.releases.pause import pipeline_pause, pipeline_unpause

    run = hold(hooked)
    _reject(run, reviewer, django_capture_on_commit_callbacks)
    pipeline_pause(pipeline=hooked, actor=operator, reason="incident")
    notice = Delivery.objects.get(run=run)
    assert notice_send_task.apply(args=(notice.pk,)).get() == "held" and receiver.requests == []
    with django_capture_on_commit_callbacks(execute=False):
        assert pipeline_unpause(pipeline=hooked, actor=operator, reason="fixed") == 1
    assert resend_held(notice.pk)["status"] == "delivered"  # what the resume's task does
    [request] = receiver.requests
    assert request["headers"]["x-keel-event"] == "run.rejected"
    assert request["headers"]["x-keel-delivery"] == str(notice.delivery_id)


@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_sends_the_notice_once_the_rejection_commits(hooked, reviewer, receiver, tmp_path):
    from django.conf import settings

    from tests.workers import celery_worker, wait_for

    run = hold(hooked)
    broker = settings.CELERY_BROKER_URL
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                       log_path=tmp_path / "worker.log", extra_env={SECRET_ENV: SECRET}):  # fmt: skip
        with acting_as(reviewer):
            review_decide(task=task_of(run), actor=reviewer, decision="reject", reason="Not our policy.")
        assert wait_for(lambda: Delivery.objects.get(run=run).status == "delivered", timeout=90)
    [request] = receiver.requests
    raw = request["raw"]
    assert (
        request["headers"]["x-keel-signature"] == "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
    )
    assert json.loads(raw)["reason"] == "Not our policy." and json.loads(raw)["reviewer"] == "reviewer"
