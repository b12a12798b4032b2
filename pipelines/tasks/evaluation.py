"""The task that runs a queued evaluation of a release."""

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections

from pipelines.evaluation.services import evaluation_execute


@shared_task(
    name="pipelines.evaluate_release",
    time_limit=settings.KEEL_EVALUATION_TIME_LIMIT,
    soft_time_limit=settings.KEEL_EVALUATION_TIME_LIMIT - 5,
)
def evaluation_execute_task(evaluation_pk: int) -> str | None:
    """Run a queued evaluation; past its soft time limit it is marked failed
    (evaluation_execute records why) and the task ends."""
    close_old_connections()
    try:
        evaluation = evaluation_execute(evaluation_pk)
    except SoftTimeLimitExceeded:
        return "failed"
    finally:
        close_old_connections()
    return evaluation.status if evaluation else None
