"""A run is claimed a bounded number of times without moving on: an
unexpected exception in a step (not a StepError) or a worker that keeps dying
is recorded on each attempt, and at KEEL_RUN_MAX_ATTEMPTS the run fails with
the reason instead of being tried for ever. A step whose model answer is on
the record is not called again when the run is taken back."""

import datetime

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Run, StepRun
from pipelines.providers import ModelResponse
from pipelines.runs import engine
from pipelines.runs.engine import run_execute, run_start, runs_recover
from tests.pipelines.providers.test_bad_model_replies import remote_pipeline, server  # noqa: F401 - fixtures

MAX_ATTEMPTS = 3
REPLY = {"choices": [{"message": {"content": "label: billing\nconfidence: 0.91"}}], "usage": {}}


@pytest.fixture(autouse=True)
def _few_attempts(settings):
    settings.KEEL_RUN_MAX_ATTEMPTS = MAX_ATTEMPTS


def _answer(request) -> ModelResponse:
    return ModelResponse(text="label: billing\nconfidence: 0.91", input_tokens=3, output_tokens=5, cost=0.0,
                         request_body={}, response_body=REPLY, attempts=())  # fmt: skip


def _start(pipeline) -> Run:
    run, _ = run_start(pipeline=pipeline, input={"subject": "Card declined"}, actor=None, trigger="cli", enqueue=False)
    return run


class Boom(Exception):
    pass


def test_an_unexpected_error_in_a_remote_step_is_recorded_and_fails_the_run_at_the_attempt_limit(
    remote_pipeline,  # noqa: F811
):
    run = _start(remote_pipeline)
    calls = []

    def boom(request):
        calls.append(request)
        raise Boom("the provider library broke")

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(Boom):
            run_execute(run.pk, call=boom)
        run.refresh_from_db()
        # Each attempt is on the record, and the run is back on the queue for the next.
        assert (run.status, run.attempts, run.next_position) == (Run.Status.QUEUED, attempt, 2)
        step = StepRun.objects.get(run=run, position=2)
        assert (step.status, step.attempts) == (StepRun.Status.FAILED, attempt)
        assert step.error == "unexpected error: Boom: the provider library broke"

    run = run_execute(run.pk, call=boom)
    assert len(calls) == MAX_ATTEMPTS  # the attempt that gives up calls nothing
    assert (run.status, run.attempts) == (Run.Status.FAILED, MAX_ATTEMPTS)
    assert run.failure_reason == (
        f"gave up after {MAX_ATTEMPTS} attempts at step 2 (classify); "
        "the last error: unexpected error: Boom: the provider library broke"
    )
    assert run_execute(run.pk, call=boom) is None and runs_recover() == []
    failed = AuditEvent.objects.get(action="run.failed", object_id=str(run.pk)).payload_data
    assert (failed["attempts"], failed["position"]) == (MAX_ATTEMPTS, 2)
    step_failures = AuditEvent.objects.filter(action="step.failed", object_id=str(run.pk)).count()
    assert step_failures == MAX_ATTEMPTS
    assert audit_chain_verify().ok


def test_an_unexpected_error_in_a_step_inside_the_process_counts_its_attempt_too(acme_config, superuser):
    from tests.pipelines.integration.api.conftest import deploy

    pipeline = deploy(acme_config["pipeline"], superuser)  # classify on the built-in model → gate
    ticket = {"subject": "Refund please", "body": "Twice."}
    run, _ = run_start(pipeline=pipeline, input=ticket, actor=None, trigger="cli", enqueue=False)

    def boom(request):
        raise Boom("a bug in a step")

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(Boom):
            run_execute(run.pk, call=boom)
        run.refresh_from_db()
        assert (run.status, run.attempts) == (Run.Status.QUEUED, attempt)
    run = run_execute(run.pk, call=boom)
    assert run.status == Run.Status.FAILED and "the last error: unexpected error: Boom: a bug in a step" in (
        run.failure_reason
    )
    step = StepRun.objects.get(run=run, position=1)
    assert (step.status, step.attempts) == (StepRun.Status.FAILED, MAX_ATTEMPTS)
    assert audit_chain_verify().ok


def test_a_run_whose_worker_keeps_dying_fails_at_the_attempt_limit(remote_pipeline):  # noqa: F811
    run = _start(remote_pipeline)
    calls = []

    def dies(request):
        calls.append(request)
        # What a killed worker leaves: its claim and the step's start on the record, then nothing.
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
        raise SystemExit("killed")

    for attempt in range(1, MAX_ATTEMPTS + 1):
        with pytest.raises(SystemExit):
            run_execute(run.pk, call=dies)
        run.refresh_from_db()
        assert (run.status, run.attempts) == (Run.Status.RUNNING, attempt)
        assert runs_recover() == [run.pk]

    run = run_execute(run.pk, call=dies)
    assert len(calls) == MAX_ATTEMPTS
    assert run.status == Run.Status.FAILED
    assert run.failure_reason == (
        f"gave up after {MAX_ATTEMPTS} attempts at step 2 (classify); "
        "the worker stopped during the step (killed, or out of time or memory)"
    )
    step = StepRun.objects.get(run=run, position=2)
    assert (step.status, step.error) == (StepRun.Status.FAILED, run.failure_reason)
    assert audit_chain_verify().ok


def test_attempts_count_only_while_the_run_is_stuck(remote_pipeline):  # noqa: F811
    run = _start(remote_pipeline)

    def boom(request):
        raise Boom("not yet")

    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(Boom):
            run_execute(run.pk, call=boom)
    run.refresh_from_db()
    assert run.attempts == MAX_ATTEMPTS - 1

    run = run_execute(run.pk, call=_answer)  # the last attempt allowed: it moves on and completes
    assert run.status == Run.Status.COMPLETED and run.attempts == 1


class Crash(BaseException):
    """The worker process dying at a chosen point (nothing catches it)."""


def test_a_model_answer_on_the_record_is_not_asked_for_again_after_a_crash(remote_pipeline, monkeypatch):  # noqa: F811
    run = _start(remote_pipeline)
    calls = []

    def counted(request):
        calls.append(request)
        return _answer(request)

    def crash_at_parse(kind, document, ctx):
        if kind == "parse":
            raise Crash
        return real_execute_step(kind, document, ctx)

    real_execute_step = engine.execute_step
    monkeypatch.setattr(engine, "execute_step", crash_at_parse)
    with pytest.raises(Crash):
        run_execute(run.pk, call=counted)
    monkeypatch.setattr(engine, "execute_step", real_execute_step)

    # The answer was committed before the next step began.
    step = StepRun.objects.get(run=run, position=2)
    assert step.status == StepRun.Status.COMPLETED and step.recordings[0]["response_body"] == REPLY
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - datetime.timedelta(seconds=1))
    run = run_execute(run.pk, call=counted)
    assert run.status == Run.Status.COMPLETED and run.output["label"] == "billing"
    assert len(calls) == 1
    assert dict(StepRun.objects.filter(run=run).values_list("position", "attempts")) == {1: 1, 2: 1, 3: 1, 4: 1}
    assert audit_chain_verify().ok
