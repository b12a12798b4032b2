"""Bounded inputs and templates through the engine: a run whose input is too
large is refused at its start (tests/pipelines/integration/api/test_input_limits.py: a 400), and a step
that meets too large an input or a template past its limits is a recorded step
failure naming the limit, never a stuck worker."""

import pytest
from django.core.exceptions import ValidationError

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.models import Run, StepRun
from pipelines.runs.engine import run_execute, run_start
from tests import factories
from tests.pipelines.integration.api.conftest import deploy


@pytest.fixture
def growing(acme, superuser):
    """transform (the body four times over) → redact → gate: the run's input
    fits, the redact step's input does not once the transform has grown it."""
    with acting_as(superuser):
        pipeline = factories.PipelineFactory(workspace=acme, slug="growing", input_schema={"type": "object"})
        factories.StepFactory(pipeline=pipeline, position=1, name="grow", kind="transform",
                              config={"mapping": {"copy": "{{ body ~ body ~ body ~ body }}"}})  # fmt: skip
        factories.StepFactory(pipeline=pipeline, position=2, name="redact", kind="redact", config={})
        factories.StepFactory(pipeline=pipeline, position=3, name="gate", kind="gate")
    return deploy(pipeline, superuser)


@pytest.fixture
def loopy(acme, superuser):
    with acting_as(superuser):
        prompt = factories.PromptTemplateFactory(
            workspace=acme, slug="loopy", variables=["n"], body="{% for i in range(n) %}{{ i }}{% endfor %}"
        )
        model = factories.ModelConfigFactory(workspace=acme, slug="loopy-builtin")
        pipeline = factories.PipelineFactory(workspace=acme, slug="loopy", input_schema={"type": "object"})
        factories.StepFactory(pipeline=pipeline, position=1, name="draft", kind="model", prompt=prompt,
                              model_config=model)  # fmt: skip
        factories.StepFactory(pipeline=pipeline, position=2, name="gate", kind="gate")
    return deploy(pipeline, superuser)


def _run(pipeline, input, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=input, actor=None, trigger="cli")
    return run_execute(run.pk)


def test_a_run_input_over_the_step_input_limit_is_refused_at_its_start(growing, settings):
    settings.KEEL_STEP_INPUT_MAX_BYTES = 4096
    with pytest.raises(ValidationError) as caught:
        run_start(pipeline=growing, input={"body": "x" * 5000}, actor=None, trigger="cli")
    assert "over the limit of 4,096 bytes as JSON (KEEL_STEP_INPUT_MAX_BYTES)" in caught.value.message_dict["input"][0]
    assert not Run.objects.exists()


def test_a_step_whose_input_grew_past_the_limit_is_a_recorded_failure(
    growing, settings, django_capture_on_commit_callbacks
):
    settings.KEEL_STEP_INPUT_MAX_BYTES = 4096
    run = _run(growing, {"body": "x" * 1000}, django_capture_on_commit_callbacks)
    assert run.status == Run.Status.FAILED
    assert "step 2 (redact)" in run.failure_reason and "KEEL_STEP_INPUT_MAX_BYTES" in run.failure_reason
    failed = StepRun.objects.get(run=run, position=2)
    assert failed.status == StepRun.Status.FAILED and "over the limit of 4,096 bytes" in failed.error
    event = AuditEvent.objects.get(action="step.failed", object_id=str(run.pk))
    assert "KEEL_STEP_INPUT_MAX_BYTES" in event.payload_data["error"]


def test_a_prompt_past_its_loop_limit_is_a_recorded_failure_naming_the_prompt(
    loopy, django_capture_on_commit_callbacks
):
    run = _run(loopy, {"n": 10**9}, django_capture_on_commit_callbacks)
    assert run.status == Run.Status.FAILED
    step = StepRun.objects.get(run=run, position=1)
    assert step.status == StepRun.Status.FAILED
    assert "prompt 'loopy' failed to render" in step.error and "KEEL_TEMPLATE_MAX_ITERATIONS" in step.error
    assert step.recordings == []  # nothing reached the model
