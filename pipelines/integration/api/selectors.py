"""What a service token reaches: its user's object rights, narrowed to its scope."""

from django.db.models import Prefetch, QuerySet

from governance.permissions import filter_for_user, user_can, user_can_prefetch
from pipelines.models import Delivery, Pipeline, Run, ServiceToken, StepRun


def pipelines_for_token(*, token: ServiceToken, action: str = "view") -> QuerySet[Pipeline]:
    pipelines = filter_for_user(token.user, action, Pipeline.objects.all())
    if token.pipeline_id:
        return pipelines.filter(pk=token.pipeline_id)
    return pipelines.filter(workspace_id=token.workspace_id)


def pipeline_for_token(*, token: ServiceToken, slug: str, also: tuple[str, ...] = ()) -> Pipeline | None:
    """The pipeline ``slug`` if the token reaches it, else None.

    The token's scope names the pipeline (a pipeline token arrives with it
    loaded: the authentication reads it in the same query) or narrows the slug
    to its workspace; the user's view right on that one object then decides,
    with ``user_can``: the rule ``filter_for_user`` applies to a queryset,
    without compiling the object-permission filter for one row. ``also``:
    rights the caller checks on the pipeline next, asked with the view right
    in one query (inside a ``permission_cache`` block, which the API's views
    open).
    """
    pipeline = getattr(token, "authenticated_pipeline", None)
    if token.pipeline_id and pipeline is not None:
        if pipeline.slug != slug:
            return None
    elif token.pipeline_id:
        pipeline = Pipeline.objects.filter(pk=token.pipeline_id, slug=slug).first()
    else:
        pipeline = Pipeline.objects.filter(workspace_id=token.workspace_id, slug=slug).first()
    if pipeline is None:
        return None
    user_can_prefetch(token.user, ("view", *also), pipeline)
    return pipeline if user_can(token.user, "view", pipeline) else None


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
