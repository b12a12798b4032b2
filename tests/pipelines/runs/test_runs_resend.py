"""runs_resend: a queued run whose message the broker does not hold is sent
again within seconds (the recovery beat task, every 5 s), and a run sent
twice still executes once. On the configured broker (Redis in CI's first run,
kombu's filesystem transport in its second)."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from config.celery import app
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.engine import run_execute, run_lease_release, run_start, runs_resend

TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved.", "customer_email": "ada@example.com"}


@pytest.fixture
def queue():
    """The task queue on the configured broker, emptied before and after."""
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(app.conf.task_default_queue)
        simple.clear()
        yield simple
        simple.clear()
        simple.close()


@pytest.fixture
def pipeline(db):
    call_command("keel_demo", stdout=io.StringIO())
    return Pipeline.objects.get(slug="support-triage")


def _queued(pipeline, subject: str, *, age: float, unsent: bool = False) -> Run:
    """A queued run created ``age`` seconds ago whose message was never sent (and,
    with ``unsent``, whose send failed as long ago)."""
    run, _ = run_start(pipeline=pipeline, input={**TICKET, "subject": subject}, actor=None, trigger="cli",
                       enqueue=False)  # fmt: skip
    then = timezone.now() - timedelta(seconds=age)
    Run.objects.filter(pk=run.pk).update(created_at=then, send_failed_at=then if unsent else None)
    return run


def _sent(queue) -> list[int]:
    ids = []
    while True:
        try:
            message = queue.get(timeout=2)
        except queue.Empty:
            return sorted(ids)
        message.ack()
        assert message.headers["task"] == "pipelines.execute_run"
        ids.append(message.decode()[0][0])


def test_a_run_whose_send_failed_is_sent_again_once_it_is_old_enough_and_then_unmarked(pipeline, queue, settings):
    settings.KEEL_RUN_RESEND_AFTER_SECONDS = 10
    old = _queued(pipeline, "old", age=30, unsent=True)
    recent = _queued(pipeline, "recent", age=2, unsent=True)
    assert runs_resend() == [old.pk]
    assert _sent(queue) == [old.pk]
    assert Run.objects.get(pk=old.pk).send_failed_at is None
    assert Run.objects.get(pk=recent.pk).send_failed_at is not None  # its turn comes in a later round


def test_with_nothing_waiting_on_the_broker_an_unclaimed_old_run_is_sent_again(pipeline, queue, settings):
    """A broker restarted without persistence lost its message: nothing marks it, the empty queue tells."""
    settings.KEEL_RUN_RESEND_AFTER_SECONDS = 10
    lost = _queued(pipeline, "lost", age=30)
    _queued(pipeline, "young", age=1)
    assert runs_resend() == [lost.pk]
    assert _sent(queue) == [lost.pk]


def test_while_messages_wait_on_the_broker_a_run_that_is_not_marked_is_left_to_them(pipeline, queue, settings):
    """A backlog: the run's message is somewhere in the queue, and sending it again would only lengthen it."""
    settings.KEEL_RUN_RESEND_AFTER_SECONDS = 10
    waiting = _queued(pipeline, "waiting", age=30)
    unsent = _queued(pipeline, "unsent", age=30, unsent=True)
    queue.put({"a message": "another run's"})
    assert runs_resend() == [unsent.pk]
    assert Run.objects.get(pk=waiting.pk).status == Run.Status.QUEUED


def test_finished_and_claimed_runs_are_never_sent_again(pipeline, queue, settings):
    settings.KEEL_RUN_RESEND_AFTER_SECONDS = 10
    done = _queued(pipeline, "done", age=30, unsent=True)
    run_execute(done.pk)
    claimed = _queued(pipeline, "claimed", age=30, unsent=True)
    Run.objects.filter(pk=claimed.pk).update(status=Run.Status.RUNNING, lease_owner="w1",
                                             lease_expires_at=timezone.now() + timedelta(minutes=5))  # fmt: skip
    assert runs_resend() == []
    assert _sent(queue) == []


def test_a_run_sent_twice_executes_once(pipeline, queue):
    run = _queued(pipeline, "twice", age=30, unsent=True)
    first = run_execute(run.pk, owner="worker-a")
    second = run_execute(run.pk, owner="worker-b")  # the duplicate message finds the run taken
    assert first is not None and second is None
    run.refresh_from_db()
    assert run.attempts == 1
    assert (
        StepRun.objects.filter(run=run).values("position").distinct().count() == StepRun.objects.filter(run=run).count()
    )


def test_a_worker_that_lost_the_database_mid_run_hands_only_its_own_run_back(pipeline):
    run = _queued(pipeline, "held", age=1)
    Run.objects.filter(pk=run.pk).update(status=Run.Status.RUNNING, lease_owner="host:task-1",
                                         lease_expires_at=timezone.now() + timedelta(minutes=5))  # fmt: skip
    assert run_lease_release(run_id=run.pk, owner="host:task-2") is False
    assert Run.objects.get(pk=run.pk).status == Run.Status.RUNNING
    assert run_lease_release(run_id=run.pk, owner="host:task-1") is True
    run.refresh_from_db()
    assert (run.status, run.lease_owner, run.lease_expires_at) == (Run.Status.QUEUED, "", None)
    assert run_execute(run.pk, owner="host:task-1").status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW)
