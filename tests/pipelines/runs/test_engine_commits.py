"""Where the engine commits: steps that stay inside the process are recorded
together, and everything before an outside call (a remote model, a webhook)
is on the record before the call is made."""

import io

import pytest
from django.core.management import call_command

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import ModelConfig, Pipeline, Run, StepRun
from pipelines.providers import ModelResponse, ProviderError, call_model
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_cancel, run_execute, run_start
from pipelines.steps.base import StepError
from tests import factories
from tests.releasing import release_to_production

TICKET = {"subject": "Card declined", "body": "My card was declined twice.", "customer_email": "ada@example.com"}
REPLY = {"choices": [{"message": {"content": "label: billing\nconfidence: 0.91"}}], "usage": {}}


@pytest.fixture
def remote_pipeline(superuser):
    """check → classify on a remote model → parse → store."""
    with acting_as(superuser):
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(workspace=workspace, body="Classify: {{ subject }}",
                                                 variables=["subject"])  # fmt: skip
        model = ModelConfig.objects.create(workspace=workspace, slug="remote", name="Remote", provider="openai",
                                           model_name="m", base_url="http://127.0.0.1:9/v1")  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        steps = [
            ("check", "validate", {}, None, None),
            ("classify", "model", {"output_field": "classification"}, prompt, model),
            ("parse", "parse", {"format": "label_confidence", "input_field": "classification"}, None, None),
            ("store", "deliver", {"channel": "stored"}, None, None),
        ]
        for position, (name, kind, config, step_prompt, step_model) in enumerate(steps, start=1):
            factories.StepFactory(pipeline=pipeline, position=position, name=name, kind=kind, config=config,
                                  prompt=step_prompt, model_config=step_model)  # fmt: skip
        release_to_production(release_cut(pipeline=pipeline, actor=superuser), actor=superuser)
    return pipeline


def _answer(request) -> ModelResponse:
    return ModelResponse(text="label: billing\nconfidence: 0.91", input_tokens=3, output_tokens=5, cost=0.0,
                         request_body={}, response_body=REPLY, attempts=())  # fmt: skip


def _start(pipeline) -> Run:
    run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli", enqueue=False)
    return run


def test_everything_before_a_remote_call_is_on_the_record_when_the_call_is_made(remote_pipeline):
    run = _start(remote_pipeline)
    seen = {}

    def call(request):
        # What a crash at this moment would leave: the check done, the call's start recorded.
        seen["steps"] = dict(StepRun.objects.filter(run=run).values_list("position", "status"))
        seen["events"] = list(
            AuditEvent.objects.filter(object_id=str(run.pk), object_type="run").values_list("action", flat=True)
        )
        seen["next_position"] = Run.objects.get(pk=run.pk).next_position
        return _answer(request)

    run = run_execute(run.pk, call=call)

    assert seen["steps"] == {1: StepRun.Status.COMPLETED, 2: StepRun.Status.RUNNING}
    assert seen["events"] == ["run.started", "step.started", "step.completed", "step.started"]
    assert seen["next_position"] == 2
    assert run.status == Run.Status.COMPLETED
    assert list(StepRun.objects.filter(run=run).values_list("status", "attempts")) == [("completed", 1)] * 4
    actions = list(AuditEvent.objects.filter(object_id=str(run.pk), object_type="run").values_list("action", flat=True))
    assert actions == ["run.started", *["step.started", "step.completed"] * 4, "run.completed"]
    assert audit_chain_verify().ok


def test_a_run_cancelled_during_a_remote_call_records_nothing_after_it(remote_pipeline, superuser):
    run = _start(remote_pipeline)

    def call(request):
        run_cancel(run=Run.objects.get(pk=run.pk), actor=superuser, reason="Wrong queue")
        return _answer(request)

    assert run_execute(run.pk, call=call) is None
    run.refresh_from_db()
    assert run.status == Run.Status.CANCELLED
    # The classify step stays as it was when the call began; parse and store never reached the database.
    assert dict(StepRun.objects.filter(run=run).values_list("position", "status")) == {
        1: StepRun.Status.COMPLETED,
        2: StepRun.Status.RUNNING,
    }
    assert not AuditEvent.objects.filter(object_id=str(run.pk), action__in=["run.completed"]).exists()
    assert audit_chain_verify().ok


def test_a_transient_failure_keeps_the_steps_before_it_and_counts_the_attempt(remote_pipeline):
    run = _start(remote_pipeline)

    def refuse(request):
        raise ProviderError("the server answered 503", transient=True)

    with pytest.raises(StepError):
        run_execute(run.pk, call=refuse)
    run.refresh_from_db()
    assert (run.status, run.next_position) == (Run.Status.QUEUED, 2)
    assert list(StepRun.objects.filter(run=run).values_list("position", "status", "attempts")) == [
        (1, "completed", 1),
        (2, "failed", 1),
    ]

    run = run_execute(run.pk, call=_answer)
    assert run.status == Run.Status.COMPLETED
    assert dict(StepRun.objects.filter(run=run).values_list("position", "attempts")) == {1: 1, 2: 2, 3: 1, 4: 1}
    started = AuditEvent.objects.filter(object_id=str(run.pk), action="step.started")
    assert [event.payload_data["position"] for event in started] == [1, 2, 2, 3, 4]
    assert audit_chain_verify().ok


def test_of_two_workers_racing_through_a_run_inside_the_process_one_records_it(
    superuser, django_capture_on_commit_callbacks
):
    call_command("keel_demo", stdout=io.StringIO())
    triage = Pipeline.objects.get(slug="support-triage")
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=triage, input=TICKET, actor=None, trigger="cli")
    other = {}

    def call(request):
        # The built-in model needs no commit first: a second worker takes and finishes the run meanwhile.
        if "run" not in other:
            other["run"] = run_execute(run.pk, owner="other-worker")
        return call_model(request)

    assert run_execute(run.pk, owner="first-worker", call=call) is None
    run.refresh_from_db()
    assert other["run"].status == run.status and run.status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW)
    assert run.attempts == 1
    positions = list(StepRun.objects.filter(run=run).values_list("position", "attempts"))
    assert positions == [(p, 1) for p in range(1, len(positions) + 1)]
    started = AuditEvent.objects.filter(object_id=str(run.pk), action="step.started").count()
    assert started == len(positions)
    assert audit_chain_verify().ok
