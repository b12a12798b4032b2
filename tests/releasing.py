"""Putting a release through release control in tests that are about something
else (the engine, deliveries, replay): submitted, approved by a second person,
evaluated, then deployed — the same services production uses."""

from decimal import Decimal

from audit.context import acting_as
from governance.models import ChangePolicy
from pipelines.evaluation.services import evaluation_execute, release_evaluate
from pipelines.models import Deployment, Release
from pipelines.releases.approval import release_approve, release_submit
from pipelines.releases.deploy import deployment_set
from tests import factories


def evaluate_now(*, release: Release, actor):
    """Ask for an evaluation and run it here, as the worker's task would
    (tests that are about a worker start one: tests/pipelines/evaluation/test_evaluation_worker.py)."""
    evaluation = release_evaluate(release=release, actor=actor)
    return evaluation_execute(evaluation.pk)


def checker():
    """A second superuser: never the author or an editor of a test's configuration."""
    return factories.UserFactory(username="checker", is_superuser=True)


def release_approved(release: Release, *, approver=None) -> Release:
    """Submit, approve and evaluate ``release``. A pipeline without evaluation
    cases gets a workspace change policy that accepts an empty case set."""
    pipeline = release.pipeline
    approver = approver or checker()
    with acting_as(approver):
        if not pipeline.evaluation_cases.exists():
            ChangePolicy.objects.get_or_create(
                workspace=pipeline.workspace, pipeline=None, defaults={"min_pass_rate": Decimal("0")}
            )
        release_submit(release=release, actor=release.created_by or approver, notes="For the test.")
        release_approve(release=release, actor=approver)
        evaluate_now(release=release, actor=approver)
    return release


def release_to_production(release: Release, *, actor=None, approver=None) -> Deployment:
    release_approved(release, approver=approver)
    deployer = actor or approver or checker()
    with acting_as(deployer):
        return deployment_set(release=release, environment="production", actor=deployer)


LABELS = ["billing", "refund", "shipping", "technical", "account", "complaint", "other"]


def classifier_pipeline(workspace, *, actor, slug: str = "acme-classify", body: str = "{{ subject }}"):
    """classify (built-in keyword model) → parse → store: its output carries a
    ``label``, which changes with the prompt, so evaluation cases can pass or fail."""
    from pipelines.models import Pipeline, Step

    with acting_as(actor):
        prompt = factories.PromptTemplateFactory(workspace=workspace, slug=f"{slug}-prompt", body=body,
                                                 variables=["subject"], owner=actor)  # fmt: skip
        model = factories.ModelConfigFactory(workspace=workspace, slug=f"{slug}-model")
        pipeline = factories.PipelineFactory(workspace=workspace, slug=slug, owner=actor)
        steps = [
            ("classify", "model", {"output_field": "classification"}, prompt, model),
            ("parse", "parse", {"format": "label_confidence", "input_field": "classification", "labels": LABELS},
             None, None),
            ("store", "deliver", {"channel": "stored"}, None, None),
        ]  # fmt: skip
        for position, (name, kind, config, step_prompt, step_model) in enumerate(steps, start=1):
            step = Step(pipeline=pipeline, position=position, name=name, kind=kind, config=config,
                        prompt=step_prompt, model_config=step_model)  # fmt: skip
            step.full_clean()
            step.save()
    return Pipeline.objects.get(pk=pipeline.pk)


def prompt_edit(pipeline, *, actor, body: str) -> None:
    """Change the classify step's prompt body, as an editor would."""
    prompt = pipeline.steps.get(name="classify").prompt
    with acting_as(actor):
        prompt.body = body
        prompt.save()
