"""Emergency pause: a paused pipeline starts no run and holds its deliveries until it is
unpaused; and whether a run's release has been withdrawn since it started.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from audit.services import audit_record
from governance.permissions import user_can
from pipelines.broker import enqueue_on_commit
from pipelines.models import (
    Delivery,
    Deployment,
    Pipeline,
    Run,
)
from pipelines.releases.base import deployment_locked, deployment_save, pipeline_lock


@transaction.atomic
def pipeline_pause(*, pipeline: Pipeline, actor, reason: str) -> None:
    """Stop new runs everywhere (run_start refuses with the reason) and hold
    deliveries until the pipeline is unpaused."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Pausing a pipeline needs the deploy right on it.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the pipeline is paused."})
    pipeline = pipeline_lock(pipeline)
    deployments = [deployment_locked(pipeline, env) for env in Deployment.Environment.values]
    if all(d.paused for d in deployments):
        raise ValidationError(f"{pipeline.slug} is already paused.")
    for deployment in deployments:
        deployment.paused, deployment.pause_reason = True, reason
        deployment_save(deployment, actor, f"Paused: {reason}")
    audit_record(action="pipeline.paused", object_type="pipeline", object_id=pipeline.pk, payload={"reason": reason},
                 workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor)  # fmt: skip


@transaction.atomic
def pipeline_unpause(*, pipeline: Pipeline, actor, reason: str = "") -> int:
    """Let runs start again and send the deliveries held meanwhile; returns how many."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Unpausing a pipeline needs the deploy right on it.")
    pipeline = pipeline_lock(pipeline)
    deployments = [deployment_locked(pipeline, env) for env in Deployment.Environment.values]
    if not any(d.paused for d in deployments):
        raise ValidationError(f"{pipeline.slug} is not paused.")
    for deployment in deployments:
        deployment.paused, deployment.pause_reason = False, ""
        deployment_save(deployment, actor, f"Unpaused: {reason}" if reason else "Unpaused")
    held = list(
        Delivery.objects.filter(run__pipeline=pipeline, status=Delivery.Status.HELD).values_list("pk", flat=True)
    )
    Delivery.objects.filter(pk__in=held).update(status=Delivery.Status.PENDING)
    # The action keeps its recorded name: the chain already holds events called pipeline.resumed.
    audit_record(action="pipeline.resumed", object_type="pipeline", object_id=pipeline.pk,
                 payload={"reason": reason, "held_deliveries": len(held)},
                 workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor)  # fmt: skip
    for delivery_id in held:
        enqueue_on_commit("pipelines.resend_delivery", delivery_id)
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
