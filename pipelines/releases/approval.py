"""Maker-checker approval of releases: submit, approve (by as many distinct approvers as the
change policy asks, none of them an author or editor of the release), reject, retire.

A release's state is its newest transition row; transitions are never updated or deleted.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q

from audit.services import audit_record
from governance.models import ApprovalPolicy, change_policy_for
from governance.permissions import user_can
from pipelines.models import (
    Deployment,
    ModelConfig,
    Pipeline,
    PromptTemplate,
    Release,
    ReleaseTransition,
    Step,
)
from pipelines.releases.base import State, pipeline_lock, user_or_none


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
    transition = ReleaseTransition.objects.create(
        release=release, state=state, actor=user_or_none(actor), reason=reason
    )
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
    pipeline_lock(release.pipeline)
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
    pipeline_lock(pipeline)
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
    pipeline_lock(release.pipeline)
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
    pipeline_lock(release.pipeline)
    if release_state(release) == State.RETIRED:
        raise ValidationError(f"Release #{release.number} is already retired.")
    live = Deployment.objects.filter(Q(release=release) | Q(canary_release=release, canary_share__gt=0))
    if live.exists():
        raise ValidationError(f"Release #{release.number} is live; deploy another release before retiring it.")
    return _transition(release, State.RETIRED, actor, reason)


def release_ever_approved(release: Release) -> bool:
    return release.transitions.filter(state=State.APPROVED).exists() and release_state(release) != State.RETIRED
