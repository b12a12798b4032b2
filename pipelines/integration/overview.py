"""Reads behind Keel's home page: what needs a person's attention across the
pipelines a user may see. Each selector filters by object permission first
(``governance.permissions``: a right on the pipeline or its workspace), so a
user never reads another workspace's items; a user with no rights gets empty
results, never an error.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet
from django.utils import timezone

from governance.permissions import filter_for_user, workspaces_for_user
from pipelines.delivery.dead_letters import dead_letters_for_user
from pipelines.models import Budget, DeadLetter, Deployment, Pipeline, Release, ReleaseTransition, Run
from pipelines.releases.approval import release_approvers, release_editors, release_state
from pipelines.runs.budgets import budget_spend

# How far back the home page looks for failed runs.
FAILED_RUNS_DAYS = 7


def pipelines_visible_to(*, user) -> QuerySet[Pipeline]:
    return filter_for_user(user, "view", Pipeline.objects.all())


def runs_failed_for_user(*, user, since: datetime | None = None) -> QuerySet[Run]:
    """Runs that failed since ``since`` (default: the last FAILED_RUNS_DAYS days)
    on pipelines the user may view, newest first."""
    since = since or timezone.now() - timedelta(days=FAILED_RUNS_DAYS)
    return (
        Run.objects.filter(
            pipeline__in=pipelines_visible_to(user=user), status=Run.Status.FAILED, created_at__gte=since
        )
        .select_related("pipeline")
        .defer("input", "output")
        .order_by("-created_at", "-pk")
    )


def dead_letters_open_for_user(*, user) -> QuerySet[DeadLetter]:
    """Dead letters (deliveries that gave up) the user may see, newest first."""
    return dead_letters_for_user(user=user).defer("run__input", "run__output").order_by("-created_at", "-pk")


def deployments_live_for_user(*, user) -> QuerySet[Deployment]:
    """Every deployment of the pipelines the user may view: what is live, the
    canary and its share, and whether it is paused."""
    return (
        Deployment.objects.filter(pipeline__in=pipelines_visible_to(user=user))
        .select_related("pipeline", "pipeline__workspace", "release", "canary_release")
        .defer("release__snapshot", "canary_release__snapshot", "pipeline__input_schema", "pipeline__runbook")
        .order_by("pipeline__workspace__name", "pipeline__name", "environment")
    )


def releases_awaiting_approval_by(*, user) -> list[Release]:
    """Releases submitted for approval that ``user`` may approve now: a pipeline
    they hold ``approve_release`` on, not their own release or one whose
    configuration they edited, not already approved by them (the rules
    ``release_approve`` enforces)."""
    pipelines = filter_for_user(user, "approve_release", Pipeline.objects.all())
    candidates = (
        Release.objects.filter(pipeline__in=pipelines, transitions__state=ReleaseTransition.State.SUBMITTED)
        .exclude(created_by=user)
        .select_related("pipeline", "created_by")
        .defer("snapshot")
        .distinct()
        .order_by("created_at", "pk")
    )
    waiting = []
    for release in candidates:
        if release_state(release) != ReleaseTransition.State.SUBMITTED:
            continue
        if user.pk in release_editors(release):
            continue
        if user.pk in {approver.pk for approver in release_approvers(release)}:
            continue
        waiting.append(release)
    return waiting


@dataclass(frozen=True)
class BudgetUse:
    budget: Budget
    spend: Decimal

    @property
    def share_of_hard_limit(self) -> int:
        """Spend as a whole percentage of the hard limit (100 when the limit is 0)."""
        if not self.budget.hard_limit:
            return 100
        return int(self.spend * 100 / self.budget.hard_limit)

    @property
    def past_soft_limit(self) -> bool:
        return self.spend >= self.budget.soft_limit


def budgets_use_for_user(*, user) -> list[BudgetUse]:
    """This month's spend of every budget over a workspace or pipeline the user may view."""
    budgets = Budget.objects.filter(
        Q(workspace__in=workspaces_for_user(user, "view")) | Q(pipeline__in=pipelines_visible_to(user=user))
    ).select_related("workspace", "pipeline")
    now = timezone.now()
    return [BudgetUse(budget=budget, spend=budget_spend(budget=budget, now=now)) for budget in budgets]
