"""What the release services share: the pipeline-row lock, the locked deployment row, and the audit event.

Every rule of release control is read from the pipeline's current change policy
(``governance.models.change_policy_for``), never from the candidate release. Each service
locks the pipeline row first: that row is the one point every transition of its releases
and deployments passes through, so two people deploying or approving at once are put in
order, and the second sees what the first did.
"""

from audit.services import audit_record
from pipelines.models import (
    Deployment,
    Pipeline,
    ReleaseTransition,
)

State = ReleaseTransition.State


PRODUCTION = Deployment.Environment.PRODUCTION


def user_or_none(actor):
    return actor if getattr(actor, "is_authenticated", False) else None


def pipeline_lock(pipeline: Pipeline) -> Pipeline:
    return Pipeline.objects.select_for_update().get(pk=pipeline.pk)


def event_record(pipeline: Pipeline, action: str, obj, payload: dict, actor) -> None:
    audit_record(
        action=action,
        object_type=obj.audit_noun if hasattr(obj, "audit_noun") else "release",
        object_id=obj.pk,
        payload=payload,
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )


def deployment_locked(pipeline: Pipeline, environment: str = PRODUCTION) -> Deployment:
    Deployment.objects.get_or_create(pipeline=pipeline, environment=environment)
    return Deployment.objects.select_for_update().get(pipeline=pipeline, environment=environment)


def deployment_save(deployment: Deployment, actor, reason: str) -> None:
    deployment._change_reason = reason
    deployment._history_user = user_or_none(actor)
    deployment.save()
