"""Runs of the demo triage pipeline through the engine, in process and on a
real Celery worker."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.engine import RunRefused, run_execute, run_start
from reviews.models import ReviewTask
from tests.workers import celery_worker, wait_for

TICKET = {
    "subject": "Where is my parcel?",
    "body": "I ordered on Monday and the tracking has not moved. Call me on +44 20 7946 0958 or ada@example.com.",
    "customer_email": "ada@example.com",
}


@pytest.fixture
def triage(db):

    call_command("keel_demo", stdout=io.StringIO())  # sets up and deploys the demo pipeline
    return Pipeline.objects.get(slug="support-triage")


def _start(pipeline, ticket=TICKET, **kwargs):
    run, created = run_start(pipeline=pipeline, input=ticket, actor=None, trigger="cli", **kwargs)
    return run


def test_a_run_executes_every_step_and_records_it(triage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(triage, source="test")
    run = run_execute(run.pk)
    steps = list(StepRun.objects.filter(run=run).order_by("position"))
    assert [s.kind for s in steps][:4] == ["validate", "redact", "model", "parse"]
    redacted = steps[1].output["body"]
    assert "ada@example.com" not in redacted and "7946" not in redacted
    assert steps[3].output["label"] == "shipping"
    assert steps[2].recordings and steps[2].input_tokens > 0
    assert run.status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW)
    completed = AuditEvent.objects.filter(action="step.completed", object_id=str(run.pk))
    assert [e.payload_data["output_sha256"] for e in completed] == [s.output_sha256 for s in steps if s.output_sha256]
    assert audit_chain_verify().ok


def test_the_same_input_on_the_same_release_gives_byte_identical_steps(triage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first, second = _start(triage), _start(triage)
    run_execute(first.pk), run_execute(second.pk)
    assert first.seed == second.seed
    hashes = [list(StepRun.objects.filter(run=r).order_by("position").values_list("output_sha256", flat=True))
              for r in (first, second)]  # fmt: skip
    assert hashes[0] == hashes[1] and all(hashes[0][:-1])


def test_a_refund_request_is_held_for_review(triage, django_capture_on_commit_callbacks):
    ticket = {**TICKET, "subject": "Refund please", "body": "I want my money back, refund the order."}
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(triage, ticket)
    run = run_execute(run.pk)
    assert run.status == Run.Status.WAITING_REVIEW
    gate = StepRun.objects.get(run=run, kind="gate")
    assert gate.status == StepRun.Status.WAITING_REVIEW and not gate.decision["passed"]
    assert AuditEvent.objects.filter(action="run.waiting_review", object_id=str(run.pk)).exists()


def test_a_held_run_and_its_review_task_are_recorded_in_one_stretch_of_the_chain(
    triage, django_capture_on_commit_callbacks
):
    ticket = {**TICKET, "subject": "Refund please", "body": "I want my money back, refund the order."}
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(triage, ticket)
    run_execute(run.pk)
    task = ReviewTask.objects.get(run=run)
    assert task.pipeline_id == triage.pk
    held = AuditEvent.objects.get(action="run.waiting_review", object_id=str(run.pk))
    created = AuditEvent.objects.get(action="review.created", object_type="review_task", object_id=str(task.pk))
    # The engine appends the task's event with the run's, under one take of the chain head.
    assert created.seq == held.seq + 1 and created.prev_hash == held.hash
    assert audit_chain_verify().ok


def test_a_repeated_idempotency_key_returns_the_first_run(triage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        first, created = run_start(pipeline=triage, input=TICKET, actor=None, trigger="api", idempotency_key="k-1")
        again, created_again = run_start(
            pipeline=triage, input=TICKET, actor=None, trigger="api", idempotency_key="k-1"
        )
    assert (created, created_again, again.pk) == (True, False, first.pk)
    assert Run.objects.count() == 1


def test_input_failing_the_schema_is_refused_naming_the_field(triage):
    with pytest.raises(ValidationError) as caught:
        _start(triage, {"subject": "hi", "customer_email": "not-an-email"})
    messages = " ".join(caught.value.message_dict["input"])
    assert "'body' is a required property" in messages
    assert "input.customer_email" in messages
    assert not Run.objects.exists()


def test_a_pipeline_without_a_live_release_refuses_runs(acme_config):
    with pytest.raises(RunRefused, match="no live release"):
        run_start(pipeline=acme_config["pipeline"], input={"subject": "x"}, actor=None, trigger="cli")


def test_a_paused_pipeline_refuses_runs(triage):
    triage.deployments.filter(environment="production").update(paused=True)
    with pytest.raises(RunRefused, match="paused"):
        _start(triage)


def test_a_finished_run_is_not_executed_again(triage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run = _start(triage)
    run_execute(run.pk)
    before = AuditEvent.objects.count()
    assert run_execute(run.pk) is None
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_a_started_run(tmp_path, monkeypatch):
    from django.conf import settings

    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    broker = settings.CELERY_BROKER_URL
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=broker if broker != "filesystem://" else None,
                       log_path=tmp_path / "worker.log"):  # fmt: skip
        run = _start(pipeline)
        done = wait_for(lambda: Run.objects.get(pk=run.pk).status not in ("queued", "running"), timeout=90)
    assert done, (tmp_path / "worker.log").read_text()[-3000:]
    run.refresh_from_db()
    assert run.status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW), run.failure_reason


def test_runs_can_be_cancelled_and_failed_runs_retried_from_the_admin(
    client, triage, django_capture_on_commit_callbacks
):
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    operator = get_user_model().objects.get(username="operator")
    with django_capture_on_commit_callbacks(execute=False):
        queued = _start(triage)
        failed = _start(triage)
    Run.objects.filter(pk=failed.pk).update(status=Run.Status.FAILED, failure_reason="step 4: boom")
    client.force_login(operator)
    changelist = reverse("admin:pipelines_run_changelist")
    assert client.get(changelist).status_code == 200
    client.post(changelist, {"action": "cancel_runs", "_selected_action": [queued.pk], "apply": "1", "reason": "test"})
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        client.post(changelist, {"action": "retry_runs", "_selected_action": [failed.pk]})
    queued.refresh_from_db(), failed.refresh_from_db()
    assert (queued.status, failed.status) == (Run.Status.CANCELLED, Run.Status.QUEUED)
    assert len(enqueued) == 1
    assert AuditEvent.objects.filter(action="run.cancelled", actor_name="operator").exists()
    assert client.get(reverse("admin:pipelines_run_change", args=[queued.pk])).status_code == 200


def test_an_outsider_sees_no_runs_and_cannot_cancel(client, triage, outsider, django_capture_on_commit_callbacks):
    from django.core.exceptions import PermissionDenied
    from django.urls import reverse

    from pipelines.runs.engine import run_cancel

    with django_capture_on_commit_callbacks(execute=False):
        run = _start(triage)
    client.force_login(outsider)
    assert client.get(reverse("admin:pipelines_run_changelist")).status_code == 403
    with pytest.raises(PermissionDenied):
        run_cancel(run=run, actor=outsider, reason="no")
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED


def test_a_hundred_inputs_run_twice_give_byte_identical_step_outputs(triage, django_capture_on_commit_callbacks):
    import json

    from audit.canonical import canonical_bytes
    from pipelines.management.commands.keel_demo import TICKETS

    tickets = json.loads(TICKETS.read_text())
    inputs = tickets + [{**t, "subject": f"Re: {t['subject']}", "channel": "web"} for t in tickets]
    assert len(inputs) == 100

    def outputs(ticket) -> list[bytes]:
        run, _ = run_start(pipeline=triage, input=ticket, actor=None, trigger="cli", enqueue=False)
        run_execute(run.pk)
        return [canonical_bytes(s.output) for s in StepRun.objects.filter(run=run).order_by("position")]

    for ticket in inputs:
        first, second = outputs(ticket), outputs(ticket)
        assert first == second and len(first) >= 6
