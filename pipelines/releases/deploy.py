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


def _environment_check(environment: str) -> None:
    if environment not in Deployment.Environment.values:
        raise ValidationError({"environment": f"Unknown environment {environment!r}."})


@transaction.atomic
def deployment_set(*, release: Release, environment: str, actor, reason: str = "") -> Deployment:
    """Make ``release`` the live release of its pipeline in ``environment``."""
    pipeline = release.pipeline
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Deploying needs the deploy right on the pipeline.")
    # Production takes only an approved release whose evaluation passes
    # (pipelines/releases/gate.py); the pipeline row orders concurrent deploys.
    _environment_check(environment)
    pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline, environment)
    deployment_guard(release, environment)
    if deployment.canary_release_id == release.pk:  # deploying the canary outright ends it
        deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
        deployment.canary_started_at = None
    if deployment.release_id == release.pk:
        raise ValidationError(f"Release #{release.number} is already live in {environment}.")
    previous = deployment.release
    deployment.release = release
    deployment_save(deployment, actor, reason or f"Deployed #{release.number}")
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
def deployment_rollback(
    *, pipeline: Pipeline, actor, reason: str = "", environment: str = PRODUCTION, to_number: int | None = None
) -> Deployment:
    """Put an earlier release live in ``environment`` at once; the one way to roll back.

    1. Refuse without the deploy right on the pipeline; lock the pipeline row.
    2. The target is release #``to_number``, earlier than the live one; without a
       number, the release that was live there before the current one.
    3. Production takes only a release that was approved and is not retired.
    4. Move the pointer; a canary stops. Runs already started finish on the release
       they started with. Record ``deployment.rolled_back`` with the reason.
    """
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Rolling back needs the deploy right on the pipeline.")
    _environment_check(environment)
    pipeline = pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline, environment)
    if deployment.release_id is None:
        raise ValidationError(f"Nothing is live in {environment} for {pipeline.slug} to roll back.")
    current = deployment.release
    if to_number is None:
        earlier = (
            deployment.history.exclude(release_id=deployment.release_id)
            .exclude(release_id=None)
            .order_by("-history_date", "-history_id")
            .first()
        )
        if earlier is None:
            raise ValidationError(f"No earlier release was live in {environment}.")
        target = Release.objects.get(pk=earlier.release_id)
    else:
        target = pipeline.releases.filter(number=to_number).first()
        if target is None:
            raise ValidationError({"to": f"{pipeline.slug} has no release #{to_number}."})
        if target.number >= current.number:
            raise ValidationError(
                {"to": f"Release #{to_number} is not earlier than the live release #{current.number}."}
            )
    if environment == PRODUCTION and not release_ever_approved(target):
        raise ValidationError(
            {"to": f"Release #{target.number} was never approved (or is retired); it cannot go live."}
        )
    reason = (reason or "").strip()
    deployment.release = target
    canary = deployment.canary_release
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
    deployment.canary_started_at = None
    deployment_save(deployment, actor, reason or f"Rolled back to #{target.number}")
    event_record(pipeline, "deployment.rolled_back", deployment, {
        "environment": environment, "from_release": current.number, "to_release": target.number,
        "fingerprint": target.fingerprint, "canary_stopped": canary.number if canary else None, "reason": reason,
    }, actor)  # fmt: skip
    return deployment
