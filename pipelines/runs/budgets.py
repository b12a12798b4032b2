"""Monthly budgets: spend per pipeline or workspace in tokens or money, the
soft limit's e-mail to the owner, and the hard limit's hold on new runs.

Spend is what the steps of the scope's runs recorded (tokens, and cost from
the model configs' prices) for steps finished since the first of the month,
UTC. ``budget_hold`` runs inside ``run_start``'s transaction, so a held run
is recorded as failed with its reason in the same commit that created it.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.core.exceptions import PermissionDenied
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from audit.services import audit_record
from governance.permissions import is_governance_lead, user_can
from pipelines.models import Budget, Deployment, Pipeline, Release, Run, StepRun

BUDGET_EXCEEDED = "budget_exceeded"


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _steps_in_scope(budget: Budget, since: datetime) -> QuerySet[StepRun]:
    steps = StepRun.objects.filter(finished_at__gte=since)
    if budget.pipeline_id:
        return steps.filter(run__pipeline_id=budget.pipeline_id)
    return steps.filter(run__pipeline__workspace_id=budget.workspace_id)


def budget_spend(*, budget: Budget, now: datetime | None = None) -> Decimal:
    """This month's spend in the budget's unit."""
    steps = _steps_in_scope(budget, month_start(now or timezone.now()))
    if budget.unit == Budget.Unit.TOKENS:
        total = steps.aggregate(total=Sum(F("input_tokens") + F("output_tokens")))["total"]
    else:
        total = steps.aggregate(total=Sum("cost"))["total"]
    return Decimal(total or 0)


def spend_by_pipeline_model_month(*, budget: Budget, since: datetime) -> list[dict]:
    """Rows of {month, pipeline, model, tokens, cost} for the admin, newest month first.
    The model is read from the release snapshot each step ran from."""
    rows: dict[tuple, dict] = defaultdict(lambda: {"tokens": 0, "cost": Decimal(0)})
    steps = (
        _steps_in_scope(budget, since)
        .filter(Q(input_tokens__gt=0) | Q(output_tokens__gt=0) | Q(cost__gt=0))
        .values_list("finished_at", "position", "input_tokens", "output_tokens", "cost", "run__pipeline__slug",
                     "run__release_id")
    )  # fmt: skip
    models_of: dict[int, dict[int, str]] = {}
    for finished_at, position, tokens_in, tokens_out, cost, slug, release_id in steps:
        if release_id not in models_of:
            snapshot = Release.objects.get(pk=release_id).snapshot_data
            models_of[release_id] = {s["position"]: (s["model"] or {}).get("slug", "—") for s in snapshot["steps"]}
        key = (f"{finished_at:%Y-%m}", slug, models_of[release_id].get(position, "—"))
        rows[key]["tokens"] += tokens_in + tokens_out
        rows[key]["cost"] += cost
    return [
        {"month": m, "pipeline": p, "model": mo, **v}
        for (m, p, mo), v in sorted(rows.items(), key=lambda item: (item[0][0], item[0][1], item[0][2]), reverse=True)
    ]


def _event(budget: Budget, action: str, payload: dict, actor=None, object_type="budget", object_id=None) -> None:
    audit_record(
        action=action,
        object_type=object_type,
        object_id=object_id if object_id is not None else budget.pk,
        payload=payload,
        workspace_id=budget.audit_workspace_id,
        pipeline_id=budget.pipeline_id,
        actor=actor,
    )


def _pipelines_of(budget: Budget) -> QuerySet[Pipeline]:
    if budget.pipeline_id:
        return Pipeline.objects.filter(pk=budget.pipeline_id)
    return Pipeline.objects.filter(workspace_id=budget.workspace_id)


@dataclass(frozen=True)
class BudgetAssessment:
    """What the budgets over a pipeline say about a new run: the first budget at
    its hard limit (with its spend), and those past their soft limit."""

    now: datetime
    over: tuple[Budget, Decimal] | None
    soft: list[tuple[Budget, Decimal]]


def budgets_over(pipeline: Pipeline) -> QuerySet[Budget]:
    """The budgets a run of ``pipeline`` counts against: its own and its workspace's."""
    return Budget.objects.filter(Q(pipeline_id=pipeline.pk) | Q(workspace_id=pipeline.workspace_id))


def budget_assess(*, pipeline: Pipeline) -> BudgetAssessment | None:
    """Read the budgets over ``pipeline`` and their spend; None when there are none.

    Only reads: ``run_start`` calls it before it records ``run.started``, so
    that these queries run before the audit-chain lock is taken rather than
    while every other audited write waits on it.
    """
    budgets = list(budgets_over(pipeline))
    if not budgets:
        return None
    now = timezone.now()
    over, soft = None, []
    for budget in budgets:
        spend = budget_spend(budget=budget, now=now)
        if spend >= budget.hard_limit and over is None:
            over = (budget, spend)
        elif spend >= budget.soft_limit:
            soft.append((budget, spend))
    return BudgetAssessment(now=now, over=over, soft=soft)


_ASSESS = object()


def budget_hold(*, run: Run, assessment: BudgetAssessment | None | object = _ASSESS) -> Run:
    """Called by run_start inside its transaction, after ``run.started``: fail
    the new run when a budget over it has reached its hard limit; e-mail the
    owner (once a month) when one has crossed its soft limit. ``assessment`` is
    ``budget_assess``'s answer read earlier in the same transaction; without it
    the budgets are read here."""
    if assessment is _ASSESS:
        assessment = budget_assess(pipeline=run.pipeline)
    if assessment is None:
        return run
    now, over = assessment.now, assessment.over
    for budget, spend in assessment.soft:
        _notify_soft_limit(budget, spend, now)
    if over is None:
        return run
    budget, spend = over
    reason = f"{BUDGET_EXCEEDED}: {budget} has spent {spend} of its hard limit {budget.hard_limit} this month"
    Run.objects.filter(pk=run.pk).update(status=Run.Status.FAILED, failure_reason=reason, finished_at=now)
    _event(budget, "run.failed", {"reason": BUDGET_EXCEEDED, "budget": budget.pk, "unit": budget.unit,
                                  "spend": str(spend), "hard_limit": str(budget.hard_limit)},
           object_type="run", object_id=run.pk)  # fmt: skip
    if budget.on_hard_limit == Budget.OnHardLimit.PAUSE:
        _pause(budget, reason)
    run.refresh_from_db()
    return run


def _notify_soft_limit(budget: Budget, spend: Decimal, now: datetime) -> None:
    month = f"{now:%Y-%m}"
    # A conditional UPDATE: of concurrent starts, one sends the e-mail.
    if not Budget.objects.filter(pk=budget.pk).exclude(soft_notified_month=month).update(soft_notified_month=month):
        return
    owner = budget.scope.owner
    payload = {"month": month, "spend": str(spend), "soft_limit": str(budget.soft_limit), "notified": owner.email}
    _event(budget, "budget.soft_limit_crossed", payload)
    subject = f"Keel: {budget} has passed its soft limit"
    body = (
        f"{budget} has spent {spend} this month ({month}); its soft limit is {budget.soft_limit} and its hard "
        f"limit {budget.hard_limit}. At the hard limit new runs are held as failed ({BUDGET_EXCEEDED})."
    )
    if owner.email:
        # After the commit: no transaction waits on a mail server.
        transaction.on_commit(lambda: send_mail(subject, body, None, [owner.email], fail_silently=True))


def _pause(budget: Budget, reason: str) -> None:
    paused = []
    for deployment in Deployment.objects.filter(pipeline__in=_pipelines_of(budget), paused=False):
        deployment.paused = True
        deployment._change_reason = reason
        deployment.save()
        paused.append(deployment.pk)
    if paused:
        Budget.objects.filter(pk=budget.pk).update(paused_deployments=sorted({*budget.paused_deployments, *paused}))
        _event(budget, "budget.paused_pipelines", {"deployments": paused, "reason": reason})


def budget_can_manage(user, budget: Budget) -> bool:
    return is_governance_lead(user) and user_can(user, "change", budget.scope)


@transaction.atomic
def budget_save(*, budget: Budget, actor) -> Budget:
    """Create or change a budget (governance leads of its scope). Raised above
    this month's spend, it unpauses the deployments it paused."""
    if budget.scope is None or not budget_can_manage(actor, budget):
        raise PermissionDenied("Budgets are set by governance leads who may change their workspace or pipeline.")
    budget.full_clean()
    if budget.pk is None:
        budget.save()
    else:
        # Only what a person sets: the notification month and paused deployments are the service's own.
        budget.save(update_fields=["workspace", "pipeline", "unit", "soft_limit", "hard_limit", "on_hard_limit",
                                   "updated_at"])  # fmt: skip
        budget.refresh_from_db()
    spend = budget_spend(budget=budget)
    unpaused = []
    if budget.paused_deployments and spend < budget.hard_limit:
        for deployment in Deployment.objects.filter(pk__in=budget.paused_deployments, paused=True):
            deployment.paused = False
            deployment._change_reason = f"Budget raised to {budget.hard_limit}"
            deployment.save()
            unpaused.append(deployment.pk)
        Budget.objects.filter(pk=budget.pk).update(paused_deployments=[])
    _event(budget, "budget.saved", {"unit": budget.unit, "soft_limit": str(budget.soft_limit),
                                    "hard_limit": str(budget.hard_limit), "on_hard_limit": budget.on_hard_limit,
                                    "spend": str(spend), "unpaused": unpaused}, actor=actor)  # fmt: skip
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget, actor) -> None:
    """Remove a budget (governance leads of its scope); the pipelines it paused
    stay paused until someone resumes them."""
    if budget.scope is None or not budget_can_manage(actor, budget):
        raise PermissionDenied("Budgets are removed by governance leads who may change their workspace or pipeline.")
    pk, scope = budget.pk, str(budget.scope)
    workspace_id, pipeline_id = budget.audit_workspace_id, budget.pipeline_id
    budget.delete()
    audit_record(action="budget.deleted", object_type="budget", object_id=pk,
                 payload={"scope": scope, "unit": budget.unit, "paused_deployments": budget.paused_deployments},
                 workspace_id=workspace_id, pipeline_id=pipeline_id, actor=actor)  # fmt: skip
