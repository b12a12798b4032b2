"""A small gated pipeline in acme (gate, then a stored delivery), released by
the author and deployed, and helpers to hold runs at its gate."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.context import acting_as
from governance.roles import REVIEWERS
from pipelines.models import Run
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from reviews.models import ReviewTask
from reviews.services import reviews_approvals_finalize, undo_seconds
from tests import factories
from tests.conftest import _persona
from tests.releasing import release_to_production

REPLY_SCHEMA = {
    "type": "object",
    "properties": {
        "subject": {"type": "string"},
        "draft": {"type": "string"},
        "label": {"type": "string"},
        "confidence": {"type": "number"},
    },
    "required": ["subject", "draft"],
}


@pytest.fixture
def second_reviewer(acme, superuser):
    return _persona("reviewer2", REVIEWERS, acme, superuser, is_staff=False)


@pytest.fixture
def third_reviewer(acme, superuser):
    return _persona("reviewer3", REVIEWERS, acme, superuser, is_staff=False)


def gated_pipeline(workspace, *, superuser, author, slug="acme-replies", redact=False, deliver=None, **policy):
    """A pipeline gate → stored delivery (or the ``deliver`` config given), under a policy
    (``always`` unless told), released by ``author``."""
    with acting_as(superuser):
        policy = factories.ApprovalPolicyFactory(
            workspace=workspace,
            name=f"{slug} policy",
            **{"review_mode": "always", "sample_rate": "0", "required_approvals": 1, **policy},
        )
        pipeline = factories.PipelineFactory(
            workspace=workspace,
            slug=slug,
            name=slug.replace("-", " ").title(),
            approval_policy=policy,
            input_schema=REPLY_SCHEMA,
            escalation_contact=f"{slug}-leads@example.com",
        )
        kinds = [("review gate", "gate", {}), ("store", "deliver", deliver or {"channel": "stored"})]
        if redact:
            kinds.insert(0, ("redact PII", "redact", {"fields": ["draft"], "builtin": ["email", "phone"]}))
        for position, (name, kind, config) in enumerate(kinds, start=1):
            factories.StepFactory(pipeline=pipeline, position=position, name=name, kind=kind, config=config)
    with acting_as(author if author is not None else superuser):
        release = release_cut(pipeline=pipeline, actor=author if author is not None else superuser)
    release_to_production(release, actor=superuser)
    return pipeline


@pytest.fixture
def gated(acme, superuser, author):
    return gated_pipeline(acme, superuser=superuser, author=author)


def hold(pipeline, *, subject="Refund please", draft="We will look into it.", actor=None, **extra) -> Run:
    """Start a run and execute it here, where the gate holds it; the engine is not enqueued."""
    run, _ = run_start(
        pipeline=pipeline,
        input={"subject": subject, "draft": draft, **extra},
        actor=actor,
        trigger="cli",
        enqueue=False,
    )
    return run_execute(run.pk)


@pytest.fixture
def globex_gated(globex, superuser):
    return gated_pipeline(globex, superuser=superuser, author=None, slug="globex-replies")


def task_of(run: Run) -> ReviewTask:
    return ReviewTask.objects.get(run=run, kind__in=ReviewTask.BLOCKING)


def finalize_approvals() -> list[int]:
    """What the worker does when approvals' undo windows have closed (the test does not wait them out)."""
    return reviews_approvals_finalize(now=timezone.now() + timedelta(seconds=undo_seconds() + 1))
