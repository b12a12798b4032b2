"""Deploying and rolling back: move an environment's pointer to a release, through the
production gate. Every move leaves a deployment history record with its actor and reason,
and an audit event."""

from decimal import Decimal

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit.services import audit_record
from governance.permissions import user_can
from pipelines.models import Deployment, Pipeline, Release
from pipelines.releases.approval import release_ever_approved
from pipelines.releases.base import PRODUCTION, deployment_locked, deployment_save, event_record, pipeline_lock
from pipelines.releases.gate import deployment_guard


def _move_pointer(*, deployment: Deployment, release: Release | None, actor, reason: str) -> Release | None:
    previous = deployment.release
    deployment.release = release
    deployment._change_reason = reason
    deployment._history_user = actor if getattr(actor, "is_authenticated", False) else None
    deployment.save()
    return previous


def _deployment_for_update(pipeline: Pipeline, environment: str) -> Deployment:
    if environment not in Deployment.Environment.values:
        raise ValidationError({"environment": f"Unknown environment {environment!r}."})
    Deployment.objects.get_or_create(pipeline=pipeline, environment=environment)
    return Deployment.objects.select_for_update().get(pipeline=pipeline, environment=environment)


@transaction.atomic
def deployment_set(*, release: Release, environment: str, actor, reason: str = "") -> Deployment:
    """Make ``release`` the live release of its pipeline in ``environment``."""
    pipeline = release.pipeline
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Deploying needs the deploy right on the pipeline.")
    # Production takes only an approved release whose evaluation passes
    # (pipelines/releases/gate.py); the pipeline row orders concurrent deploys.
    Pipeline.objects.select_for_update().get(pk=pipeline.pk)
    deployment = _deployment_for_update(pipeline, environment)
    deployment_guard(release, environment)
    if deployment.canary_release_id == release.pk:  # deploying the canary outright ends it
        deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
        deployment.canary_started_at = None
    if deployment.release_id == release.pk:
        raise ValidationError(f"Release #{release.number} is already live in {environment}.")
    previous = _move_pointer(
        deployment=deployment, release=release, actor=actor, reason=reason or f"Deployed #{release.number}"
    )
    audit_record(
        action="deployment.set",
        object_type="deployment",
        object_id=deployment.pk,
        payload={
            "environment": environment,
            "release": release.number,
            "fingerprint": release.fingerprint,
            "previous_release": previous.number if previous else None,
            "reason": reason,
        },
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return deployment


@transaction.atomic
def deployment_rollback(*, pipeline: Pipeline, environment: str, actor, reason: str) -> Deployment:
    """Put back the release that was live before the current one."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Rolling back needs the deploy right on the pipeline.")
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why you are rolling back."})
    deployment = _deployment_for_update(pipeline, environment)
    if deployment.release_id is None:
        raise ValidationError(f"Nothing is live in {environment} to roll back.")
    earlier = (
        deployment.history.exclude(release_id=deployment.release_id)
        .exclude(release_id=None)
        .order_by("-history_date", "-history_id")
        .first()
    )
    if earlier is None:
        raise ValidationError(f"No earlier release was live in {environment}.")
    target = Release.objects.get(pk=earlier.release_id)
    if environment == Deployment.Environment.PRODUCTION and not release_ever_approved(target):
        raise ValidationError(f"Release #{target.number} was never approved (or is retired); it cannot go live.")
    current = _move_pointer(deployment=deployment, release=target, actor=actor, reason=f"Rolled back: {reason}")
    audit_record(
        action="deployment.rolled_back",
        object_type="deployment",
        object_id=deployment.pk,
        payload={
            "environment": environment,
            "from_release": current.number,
            "to_release": target.number,
            "fingerprint": target.fingerprint,
            "reason": reason,
        },
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return deployment


@transaction.atomic
def deploy_rollback(*, pipeline: Pipeline, to_number: int, actor, reason: str = "") -> Deployment:
    """Put an earlier approved release live in production at once; any canary
    stops. Runs already started finish on the release they started with."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Rolling back needs the deploy right on the pipeline.")
    pipeline = pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline)
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
    deployment_save(deployment, actor, reason)
    event_record(pipeline, "deployment.rolled_back", deployment, {
        "environment": PRODUCTION, "from_release": current.number, "to_release": target.number,
        "fingerprint": target.fingerprint, "canary_stopped": canary.number if canary else None, "reason": reason,
    }, actor)  # fmt: skip
    return deployment
