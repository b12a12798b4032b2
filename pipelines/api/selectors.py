"""What a service token reaches: its user's object rights, narrowed to its scope."""

from django.db.models import Prefetch, QuerySet

from governance.permissions import filter_for_user
from pipelines.models import Delivery, Pipeline, Run, ServiceToken, StepRun


def pipelines_for_token(*, token: ServiceToken, action: str = "view") -> QuerySet[Pipeline]:
    pipelines = filter_for_user(token.user, action, Pipeline.objects.all())
    if token.pipeline_id:
        return pipelines.filter(pk=token.pipeline_id)
    return pipelines.filter(workspace_id=token.workspace_id)


def runs_for_token(*, token: ServiceToken) -> QuerySet[Run]:
    return Run.objects.filter(pipeline__in=pipelines_for_token(token=token)).select_related("pipeline", "release")


def run_detail_for_token(*, token: ServiceToken, run_id: int) -> Run | None:
    return (
        runs_for_token(token=token)
        .prefetch_related(
            Prefetch("steps", queryset=StepRun.objects.order_by("position")),
            Prefetch("deliveries", queryset=Delivery.objects.order_by("position")),
        )
        .filter(pk=run_id)
        .first()
    )
