"""Safe change: maker-checker releases, guarded deployment, canaries, instant
and automatic rollback, emergency pause, and what was live at a moment.

Every rule is read from the pipeline's current change policy
(``governance.models.change_policy_for``), never from the candidate release.
Each service locks the pipeline row first: that row is the one point every
transition of its releases and deployments passes through, so two people
deploying or approving at once are put in order, and the second sees what the
first did.
"""

import hashlib
import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from audit.services import audit_record
from governance.models import ApprovalPolicy, ChangePolicy, change_policy_for
from governance.permissions import user_can
from pipelines.models import (
    Delivery,
    Deployment,
    Evaluation,
    ModelConfig,
    Pipeline,
    PromptTemplate,
    Release,
    ReleaseTransition,
    Run,
    Step,
)

logger = logging.getLogger(__name__)

State = ReleaseTransition.State
PRODUCTION = Deployment.Environment.PRODUCTION
BUCKETS = 10_000


def _user(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def _lock(pipeline: Pipeline) -> Pipeline:
    return Pipeline.objects.select_for_update().get(pk=pipeline.pk)


def _event(pipeline: Pipeline, action: str, obj, payload: dict, actor) -> None:
    audit_record(
        action=action,
        object_type=obj.audit_noun if hasattr(obj, "audit_noun") else "release",
        object_id=obj.pk,
        payload=payload,
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )


# Release states


def release_state(release: Release) -> str:
    """``draft`` (never submitted), ``submitted``, ``approved``, ``rejected`` or ``retired``."""
    last = release.transitions.exclude(state=State.APPROVAL).order_by("-pk").first()
    return last.state if last else "draft"


def release_approvers(release: Release) -> list:
    """The users who approved the release since it was last submitted, in order."""
    submitted = release.transitions.filter(state=State.SUBMITTED).order_by("-pk").first()
    if submitted is None:
        return []
    votes = release.transitions.filter(state=State.APPROVAL, pk__gt=submitted.pk).select_related("actor")
    return [t.actor for t in votes.order_by("pk")]


def release_editors(release: Release) -> set[int]:
    """Ids of the users who edited a configuration object of the release
    between the previous release and this one (its makers, with its author)."""
    snapshot = release.snapshot_data
    previous = release.pipeline.releases.filter(number__lt=release.number).order_by("-number").first()
    window = Q(history_date__lte=release.created_at)
    if previous is not None:
        window &= Q(history_date__gt=previous.created_at)
    steps = snapshot["steps"]
    sources = [
        Pipeline.history.filter(window, id=release.pipeline_id),
        Step.history.filter(window, pipeline_id=release.pipeline_id),
        PromptTemplate.history.filter(window, id__in=[s["prompt"]["id"] for s in steps if s["prompt"]]),
        ModelConfig.history.filter(window, id__in=[s["model"]["id"] for s in steps if s["model"]]),
    ]
    if snapshot.get("approval_policy"):
        sources.append(ApprovalPolicy.history.filter(window, id=snapshot["approval_policy"]["id"]))
    editors = {release.created_by_id} if release.created_by_id else set()
    for history in sources:
        editors.update(history.exclude(history_user=None).values_list("history_user_id", flat=True))
    return editors


def _transition(release: Release, state: str, actor, reason: str, payload: dict | None = None) -> ReleaseTransition:
    transition = ReleaseTransition.objects.create(release=release, state=state, actor=_user(actor), reason=reason)
    audit_record(
        action=f"release.{state}",
        object_type="release",
        object_id=release.pk,
        payload={"pipeline": release.pipeline.slug, "number": release.number, "transition": transition.pk,
                 "reason": reason, **(payload or {})},
        workspace_id=release.pipeline.workspace_id,
        pipeline_id=release.pipeline_id,
        actor=actor,
    )  # fmt: skip
    return transition


@transaction.atomic
def release_submit(*, release: Release, actor, notes: str) -> ReleaseTransition:
    """Ask for approval of a release; the notes say what changed and why."""
    if not user_can(actor, "change", release.pipeline):
        raise PermissionDenied("Submitting a release needs the change right on the pipeline.")
    notes = (notes or "").strip()
    if not notes:
        raise ValidationError({"notes": "Say what this release changes and why."})
    _lock(release.pipeline)
    state = release_state(release)
    if state != "draft":
        raise ValidationError(f"Release #{release.number} is {state}; only a new release can be submitted.")
    return _transition(release, State.SUBMITTED, actor, notes)


@transaction.atomic
def release_approve(*, release: Release, actor, note: str = "") -> ReleaseTransition:
    """One approver's approval; once the change policy's number of distinct
    approvers is reached the release is approved (a second row, ``approved``).

    Refused to anyone without ``approve_release`` on the pipeline or its
    workspace, to its author and to anyone who edited its configuration since
    the previous release, and to someone who already approved it."""
    pipeline = release.pipeline
    if not user_can(actor, "approve_release", pipeline):
        raise PermissionDenied("Approving a release needs the approve right on the pipeline.")
    _lock(pipeline)
    state = release_state(release)
    if state != State.SUBMITTED:
        raise ValidationError(f"Release #{release.number} is {state}, not waiting for approval.")
    if actor.pk == release.created_by_id:
        raise PermissionDenied("The author of a release cannot approve it.")
    if actor.pk in release_editors(release):
        raise PermissionDenied("You edited this release's configuration since the previous release; ask someone else.")
    approvers = release_approvers(release)
    if actor.pk in {u.pk for u in approvers}:
        raise ValidationError(f"You have already approved release #{release.number}.")
    required = change_policy_for(pipeline).approvals_required
    vote = _transition(release, State.APPROVAL, actor, note, {"approvals": len(approvers) + 1, "required": required})
    if len(approvers) + 1 >= required:
        names = [u.get_username() for u in [*approvers, actor]]
        return _transition(release, State.APPROVED, actor, note, {"approvers": names, "required": required})
    return vote


@transaction.atomic
def release_reject(*, release: Release, actor, reason: str) -> ReleaseTransition:
    if not user_can(actor, "approve_release", release.pipeline):
        raise PermissionDenied("Rejecting a release needs the approve right on the pipeline.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the release is rejected."})
    _lock(release.pipeline)
    state = release_state(release)
    if state != State.SUBMITTED:
        raise ValidationError(f"Release #{release.number} is {state}, not waiting for approval.")
    return _transition(release, State.REJECTED, actor, reason)


@transaction.atomic
def release_retire(*, release: Release, actor, reason: str) -> ReleaseTransition:
    """Take a release out of use for good; refused while it is live anywhere."""
    if not user_can(actor, "deploy_pipeline", release.pipeline):
        raise PermissionDenied("Retiring a release needs the deploy right on the pipeline.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the release is retired."})
    _lock(release.pipeline)
    if release_state(release) == State.RETIRED:
        raise ValidationError(f"Release #{release.number} is already retired.")
    live = Deployment.objects.filter(Q(release=release) | Q(canary_release=release, canary_share__gt=0))
    if live.exists():
        raise ValidationError(f"Release #{release.number} is live; deploy another release before retiring it.")
    return _transition(release, State.RETIRED, actor, reason)


# The production gate


def evaluation_latest(release: Release) -> Evaluation | None:
    return release.evaluations.filter(status=Evaluation.Status.DONE).order_by("-created_at", "-pk").first()


def release_gate_problems(release: Release, policy: ChangePolicy | None = None) -> list[str]:
    """Why ``release`` may not go to production now ([] when it may)."""
    policy = policy or change_policy_for(release.pipeline)
    problems = []
    state = release_state(release)
    if state != State.APPROVED:
        problems.append(f"release #{release.number} is {state}, not approved")
    evaluation = evaluation_latest(release)
    if evaluation is None:
        problems.append(f"release #{release.number} has not been evaluated")
        return problems
    if release.pipeline.evaluation_cases.count() != evaluation.cases:
        problems.append("the evaluation cases changed since the last evaluation; evaluate again")
    if evaluation.cases == 0 and policy.min_pass_rate > 0:
        problems.append("the pipeline has no evaluation cases")
    elif Decimal(evaluation.passed) < policy.min_pass_rate * evaluation.cases:
        problems.append(
            f"evaluation passed {evaluation.passed} of {evaluation.cases} cases, "
            f"below the policy's minimum pass rate {policy.min_pass_rate}"
        )
    if policy.block_regressions and evaluation.broken:
        problems.append(f"{evaluation.broken} cases the production release passes now fail (regressions block)")
    return problems


def deployment_guard(release: Release, environment: str) -> None:
    """Refuse a production deploy of a release that is not approved or whose
    evaluation fails; staging takes any release that is not retired or rejected."""
    if environment == PRODUCTION:
        problems = release_gate_problems(release)
        if problems:
            raise ValidationError(f"Release #{release.number} cannot go to production: " + "; ".join(problems) + ".")
    elif release_state(release) in (State.RETIRED, State.REJECTED):
        raise ValidationError(f"Release #{release.number} is {release_state(release)}.")


# Moving the pointer


def _deployment(pipeline: Pipeline, environment: str = PRODUCTION) -> Deployment:
    Deployment.objects.get_or_create(pipeline=pipeline, environment=environment)
    return Deployment.objects.select_for_update().get(pipeline=pipeline, environment=environment)


def _save(deployment: Deployment, actor, reason: str) -> None:
    deployment._change_reason = reason
    deployment._history_user = _user(actor)
    deployment.save()


def release_ever_approved(release: Release) -> bool:
    return release.transitions.filter(state=State.APPROVED).exists() and release_state(release) != State.RETIRED


@transaction.atomic
def deploy_rollback(*, pipeline: Pipeline, to_number: int, actor, reason: str = "") -> Deployment:
    """Put an earlier approved release live in production at once; any canary
    stops. Runs already started finish on the release they started with."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Rolling back needs the deploy right on the pipeline.")
    pipeline = _lock(pipeline)
    deployment = _deployment(pipeline)
    if deployment.release_id is None:
        raise ValidationError(f"Nothing is live in production for {pipeline.slug} to roll back.")
    current = deployment.release
    target = pipeline.releases.filter(number=to_number).first()
    if target is None:
        raise ValidationError({"to": f"{pipeline.slug} has no release #{to_number}."})
    if target.number >= current.number:
        raise ValidationError({"to": f"Release #{to_number} is not earlier than the live release #{current.number}."})
    if not release_ever_approved(target):
        raise ValidationError({"to": f"Release #{to_number} was never approved (or is retired); it cannot go live."})
    reason = (reason or "").strip() or f"Rolled back to #{to_number}"
    deployment.release = target
    canary = deployment.canary_release
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
    deployment.canary_started_at = None
    _save(deployment, actor, reason)
    _event(pipeline, "deployment.rolled_back", deployment, {
        "environment": PRODUCTION, "from_release": current.number, "to_release": target.number,
        "fingerprint": target.fingerprint, "canary_stopped": canary.number if canary else None, "reason": reason,
    }, actor)  # fmt: skip
    return deployment


def _share(value) -> Decimal:
    try:
        share = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError({"share": f"{value!r} is not a number."}) from None
    if not share.is_finite() or share < 0 or share > 100:
        raise ValidationError({"share": "The canary share is a percentage between 0 and 100."})
    return share.quantize(Decimal("0.01"))


@transaction.atomic
def canary_set(*, release: Release, share, actor, sources: list[str] | None = None) -> Deployment:
    """Send ``share`` percent of production traffic (and every run from
    ``sources``) to ``release``. The release must pass the production gate.
    Raising the share keeps earlier keys in the canary (the bucket rule)."""
    pipeline = release.pipeline
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Starting a canary needs the deploy right on the pipeline.")
    share = _share(share)
    sources = [s.strip() for s in (sources or []) if s and s.strip()]
    _lock(pipeline)
    deployment = _deployment(pipeline)
    if deployment.release_id is None:
        raise ValidationError("A canary needs a release already live in production; deploy one first.")
    if deployment.release_id == release.pk:
        raise ValidationError(f"Release #{release.number} is already live in production.")
    deployment_guard(release, PRODUCTION)
    # A new canary, or one started again after it was stopped (share 0, no
    # sources), is judged on a new window: the runs that stopped it must not
    # stop it again at once. Changing a running canary's share keeps its window.
    running = deployment.canary_share > 0 or bool(deployment.canary_sources)
    if deployment.canary_release_id != release.pk or not running:
        deployment.canary_started_at = timezone.now()
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = release, share, sources
    _save(deployment, actor, f"Canary #{release.number} at {share}%")
    _event(pipeline, "deployment.canary_set", deployment, {
        "release": release.number, "share": str(share), "sources": sources, "stable_release": deployment.release.number,
        "window_started_at": deployment.canary_started_at.isoformat(),
    }, actor)  # fmt: skip
    return deployment


@transaction.atomic
def canary_promote(*, pipeline: Pipeline, actor) -> Deployment:
    """The canary release becomes production's release for all traffic."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Promoting a canary needs the deploy right on the pipeline.")
    pipeline = _lock(pipeline)
    deployment = _deployment(pipeline)
    canary = deployment.canary_release
    if canary is None or (deployment.canary_share == 0 and not deployment.canary_sources):
        raise ValidationError(f"{pipeline.slug} has no running canary to promote.")
    deployment_guard(canary, PRODUCTION)  # the policy may have changed since the canary began
    previous = deployment.release
    deployment.release = canary
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
    deployment.canary_started_at = None
    _save(deployment, actor, f"Promoted canary #{canary.number}")
    _event(pipeline, "deployment.promoted", deployment,
           {"release": canary.number, "previous_release": previous.number}, actor)  # fmt: skip
    return deployment


@transaction.atomic
def canary_rollback(*, pipeline: Pipeline, actor, reason: str, figures: dict | None = None) -> Deployment:
    """Set the canary to 0% (its release stays named, for the record) and tell
    the owner, the escalation contact and the policy's notify list."""
    if not isinstance(actor, str) and not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Stopping a canary needs the deploy right on the pipeline.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the canary is stopped."})
    pipeline = _lock(pipeline)
    deployment = _deployment(pipeline)
    canary = deployment.canary_release
    if canary is None or (deployment.canary_share == 0 and not deployment.canary_sources):
        raise ValidationError(f"{pipeline.slug} has no running canary.")
    deployment.canary_share, deployment.canary_sources = Decimal("0"), []
    _save(deployment, actor, f"Canary #{canary.number} stopped: {reason}")
    policy = change_policy_for(pipeline)
    recipients = sorted({a for a in [pipeline.owner.email, pipeline.escalation_contact, *policy.notify] if a})
    _event(pipeline, "deployment.canary_rolled_back", deployment, {
        "release": canary.number, "reason": reason, "figures": figures or {}, "notified": recipients,
    }, actor)  # fmt: skip
    if recipients:
        subject = f"[Keel] {pipeline.slug}: canary #{canary.number} rolled back"
        body = f"The canary of release #{canary.number} was set to 0%.\n\nWhy: {reason}\n"
        transaction.on_commit(lambda: send_mail(subject, body, None, recipients, fail_silently=True))
    return deployment


def canary_figures(deployment: Deployment, *, now: datetime | None = None) -> dict:
    """Finished production runs of the canary and of the stable release since
    the canary began: counts and failure and rejection rates."""
    now = now or timezone.now()
    window = Run.objects.filter(
        pipeline_id=deployment.pipeline_id, environment=PRODUCTION, status__in=Run.FINISHED,
        created_at__gte=deployment.canary_started_at, created_at__lte=now,
    )  # fmt: skip
    figures = {}
    for name, release_id in (("canary", deployment.canary_release_id), ("stable", deployment.release_id)):
        counts = window.filter(release_id=release_id).aggregate(
            runs=Count("pk"),
            failed=Count("pk", filter=Q(status=Run.Status.FAILED)),
            rejected=Count("pk", filter=Q(status=Run.Status.REJECTED)),
        )
        runs = counts["runs"]
        figures[name] = {**counts, "failure_rate": counts["failed"] / runs if runs else 0.0,
                         "rejection_rate": counts["rejected"] / runs if runs else 0.0}  # fmt: skip
    return figures


def canary_verdict(figures: dict, policy: ChangePolicy) -> str | None:
    """Why the canary should roll back, or None while it may go on."""
    canary, stable = figures["canary"], figures["stable"]
    if canary["runs"] < policy.canary_min_runs:
        return None
    for rate, limit in (("failure_rate", policy.canary_max_failure_rate),
                        ("rejection_rate", policy.canary_max_rejection_rate)):  # fmt: skip
        name = rate.replace("_", " ")
        if canary[rate] > float(limit):
            return f"{name} {canary[rate]:.3f} over {canary['runs']} runs exceeds the limit {limit}"
        if canary[rate] - stable[rate] > float(limit):
            return (
                f"{name} {canary[rate]:.3f} is worse than the stable release's {stable[rate]:.3f} by more than {limit}"
            )
    return None


def canaries_watch(*, now: datetime | None = None) -> list[int]:
    """The beat task's work: roll back every production canary whose figures
    cross its pipeline's current limits. Returns the pipelines rolled back."""
    rolled = []
    live = Deployment.objects.filter(environment=PRODUCTION, canary_release__isnull=False).filter(
        Q(canary_share__gt=0) | ~Q(canary_sources=[])
    )
    for deployment in live.select_related("pipeline"):
        figures = canary_figures(deployment, now=now)
        reason = canary_verdict(figures, change_policy_for(deployment.pipeline))
        if reason is None:
            continue
        try:
            canary_rollback(pipeline=deployment.pipeline, actor="canary-watch", reason=reason, figures=figures)
        except ValidationError:
            continue  # stopped by someone else meanwhile
        rolled.append(deployment.pipeline_id)
    return rolled


def canary_bucket(pipeline_slug: str, key: str) -> int:
    """The bucket rule: SHA-256 of ``slug:key`` mod 10,000. A run is in the
    canary when its bucket is below share × 100, so a repeated key lands on
    the same release and raising the share keeps earlier keys in."""
    digest = hashlib.sha256(f"{pipeline_slug}:{key}".encode()).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def deployment_release_for(deployment: Deployment, *, pipeline_slug: str, key: str, source: str = "") -> Release:
    """The release a new run of this deployment executes: the canary's for an
    allow-listed source or a key in its band, else the live one."""
    if deployment.canary_release_id is not None:
        if source and source in (deployment.canary_sources or []):
            return deployment.canary_release
        if canary_bucket(pipeline_slug, key) < int(deployment.canary_share * 100):
            return deployment.canary_release
    return deployment.release


# Emergency pause


@transaction.atomic
def pipeline_pause(*, pipeline: Pipeline, actor, reason: str) -> None:
    """Stop new runs everywhere (run_start refuses with the reason) and hold
    deliveries until the pipeline is resumed."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Pausing a pipeline needs the deploy right on it.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the pipeline is paused."})
    pipeline = _lock(pipeline)
    deployments = [_deployment(pipeline, env) for env in Deployment.Environment.values]
    if all(d.paused for d in deployments):
        raise ValidationError(f"{pipeline.slug} is already paused.")
    for deployment in deployments:
        deployment.paused, deployment.pause_reason = True, reason
        _save(deployment, actor, f"Paused: {reason}")
    audit_record(action="pipeline.paused", object_type="pipeline", object_id=pipeline.pk, payload={"reason": reason},
                 workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor)  # fmt: skip


@transaction.atomic
def pipeline_resume(*, pipeline: Pipeline, actor, reason: str = "") -> int:
    """Let runs start again and send the deliveries held meanwhile; returns how many."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Resuming a pipeline needs the deploy right on it.")
    pipeline = _lock(pipeline)
    deployments = [_deployment(pipeline, env) for env in Deployment.Environment.values]
    if not any(d.paused for d in deployments):
        raise ValidationError(f"{pipeline.slug} is not paused.")
    for deployment in deployments:
        deployment.paused, deployment.pause_reason = False, ""
        _save(deployment, actor, f"Resumed: {reason}" if reason else "Resumed")
    held = list(
        Delivery.objects.filter(run__pipeline=pipeline, status=Delivery.Status.HELD).values_list("pk", flat=True)
    )
    Delivery.objects.filter(pk__in=held).update(status=Delivery.Status.PENDING)
    audit_record(action="pipeline.resumed", object_type="pipeline", object_id=pipeline.pk,
                 payload={"reason": reason, "held_deliveries": len(held)},
                 workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor)  # fmt: skip
    from pipelines.tasks import delivery_resend_task

    for delivery_id in held:
        delivery_resend_task.delay_on_commit(delivery_id)
    return len(held)


def run_release_withdrawn(run: Run) -> bool:
    """Whether the release a run executes is no longer live (nor the running
    canary) where the run started: a run held for review after a rollback is
    shown to its reviewer with this flag, and not delivered unless they decide so."""
    return run.pk in runs_release_withdrawn([run.pk])


def runs_release_withdrawn(run_ids: list[int]) -> set[int]:
    """``run_release_withdrawn`` for many runs (a page of a review queue) in two queries."""
    runs = list(Run.objects.filter(pk__in=run_ids).values_list("pk", "pipeline_id", "environment", "release_id"))
    deployments = {
        (d.pipeline_id, d.environment): d
        for d in Deployment.objects.filter(pipeline_id__in={pipeline_id for _, pipeline_id, _, _ in runs}).only(
            "pipeline_id", "environment", "release_id", "canary_release_id", "canary_share", "canary_sources"
        )
    }
    withdrawn = set()
    for pk, pipeline_id, environment, release_id in runs:
        deployment = deployments.get((pipeline_id, environment))
        canary_live = (
            deployment is not None
            and deployment.canary_release_id == release_id
            and (deployment.canary_share > 0 or bool(deployment.canary_sources))
        )
        if deployment is None or (deployment.release_id != release_id and not canary_live):
            withdrawn.add(pk)
    return withdrawn


# What was live at a moment


def _history_at(pipeline: Pipeline, environment: str, at: datetime):
    return (
        Deployment.history.filter(pipeline_id=pipeline.pk, environment=environment, history_date__lte=at)
        .order_by("-history_date", "-history_id")
        .first()
    )


def _deployed_by(pipeline: Pipeline, environment: str, record) -> dict:
    """The record that put ``record``'s release live: the earliest of the
    unbroken run of records naming it."""
    earlier = (
        Deployment.history.filter(
            pipeline_id=pipeline.pk, environment=environment, history_date__lte=record.history_date
        )
        .exclude(release_id=record.release_id)
        .order_by("-history_date", "-history_id")
        .first()
    )
    since = Deployment.history.filter(pipeline_id=pipeline.pk, environment=environment, release_id=record.release_id,
                                      history_date__lte=record.history_date)  # fmt: skip
    if earlier is not None:
        since = since.filter(history_date__gt=earlier.history_date)
    first = since.order_by("history_date", "history_id").select_related("history_user").first()
    return {
        "by": first.history_user.get_username() if first.history_user else None,
        "at": first.history_date.isoformat(),
        "reason": first.history_change_reason or "",
    }


def pipeline_as_of(*, pipeline: Pipeline, at: datetime) -> dict:
    """For each environment at ``at``: the live release, its canary and share,
    whether paused, who approved and deployed the release, and its whole
    configuration — read from the deployment history and the transitions."""
    answer = {"pipeline": pipeline.slug, "at": at.isoformat(), "environments": {}}
    for environment in Deployment.Environment.values:
        record = _history_at(pipeline, environment, at)
        if record is None or record.history_type == "-" or record.release_id is None:
            answer["environments"][environment] = None
            continue
        release = Release.objects.get(pk=record.release_id)
        votes = release.transitions.filter(state=State.APPROVAL, created_at__lte=at).select_related("actor")
        canary = None
        if record.canary_release_id and (record.canary_share > 0 or record.canary_sources):
            canary_release = Release.objects.get(pk=record.canary_release_id)
            canary = {"release": canary_release.number, "fingerprint": canary_release.fingerprint,
                      "share": str(record.canary_share), "sources": record.canary_sources}  # fmt: skip
        answer["environments"][environment] = {
            "release": release.number,
            "fingerprint": release.fingerprint,
            "author": release.created_by.get_username() if release.created_by else None,
            "approved_by": [t.actor.get_username() for t in votes.order_by("pk") if t.actor],
            "deployed": _deployed_by(pipeline, environment, record),
            "canary": canary,
            "paused": record.paused,
            "pause_reason": record.pause_reason,
            "configuration": release.snapshot_data,
        }
    return answer


def parse_moment(text: str) -> datetime:
    """An ISO 8601 moment; one without a zone is read as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError({"at": f"{text!r} is not an ISO 8601 moment such as 2026-11-03T14:00Z."}) from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment
