"""A workspace with something for each role's home page, and another
workspace whose items no acme persona may ever see.

In acme: *Acme Replies* live in production with two runs held for review
(one overdue), a run failed by its budget, a dead-letter delivery, and
release #2 submitted for approval by the author; *Acme Paused* paused with
a reason. In globex: the same kinds of items, all named "Globex".
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.context import acting_as
from pipelines.models import Budget, Delivery, Run
from pipelines.releases.approval import release_submit
from pipelines.releases.cut import release_cut
from pipelines.releases.pause import pipeline_pause
from pipelines.runs.budgets import budget_save
from pipelines.runs.engine import run_start
from reviews.models import ReviewTask
from tests.reviews.conftest import gated_pipeline, hold, task_of


def _failed_by_budget(pipeline, *, actor) -> Run:
    """A run refused at its start by a hard budget limit of 0 tokens: failed, budget_exceeded."""
    with acting_as(actor):
        budget_save(budget=Budget(pipeline=pipeline, unit="tokens", soft_limit=0, hard_limit=0), actor=actor)
    run, _ = run_start(pipeline=pipeline, input={"subject": "Late", "draft": "Sorry."}, actor=None, trigger="cli",
                       enqueue=False)  # fmt: skip
    return Run.objects.get(pk=run.pk)


def _dead_letter(run: Run, error: str) -> Delivery:
    return Delivery.objects.create(run=run, position=2, channel="webhook", url="https://hooks.example.com/keel",
                                   status=Delivery.Status.FAILED, attempts=5, last_error=error)  # fmt: skip


def _world(workspace, *, prefix: str, superuser, author, lead) -> dict:
    slug = prefix.lower()
    live = gated_pipeline(workspace, superuser=superuser, author=author, slug=f"{slug}-replies")
    paused = gated_pipeline(workspace, superuser=superuser, author=author, slug=f"{slug}-paused")
    held = [hold(live, subject=f"{prefix} ticket {n}") for n in (1, 2)]
    overdue = task_of(held[0])
    ReviewTask.objects.filter(pk=overdue.pk).update(deadline_at=timezone.now() - timedelta(hours=1))
    dead = _dead_letter(held[1], f"HTTP 400: {prefix} receiver refused")
    with acting_as(superuser):
        pipeline_pause(pipeline=paused, actor=superuser, reason=f"{prefix} refund wording under review")
    editor = author or superuser
    with acting_as(editor):
        gate = live.steps.get(kind="gate")
        gate.name = "human review gate"
        gate.save()
        second = release_cut(pipeline=live, actor=editor)
        release_submit(release=second, actor=editor, notes=f"{prefix}: a clearer step name.")
    failed = _failed_by_budget(live, actor=lead or superuser)
    return {"live": live, "paused": paused, "held": held, "overdue": overdue, "dead": dead, "second": second,
            "failed": failed}  # fmt: skip


@pytest.fixture
def home_world(personas, acme, globex, superuser) -> dict:
    acme_items = _world(acme, prefix="Acme", superuser=superuser, author=personas["author"], lead=personas["lead"])
    globex_items = _world(globex, prefix="Globex", superuser=superuser, author=None, lead=None)
    return {"acme": acme_items, "globex": globex_items, "personas": personas}
