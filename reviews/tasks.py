from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from audit.context import acting_as
from pipelines.models import Pipeline
from reviews.services import reviews_approvals_finalize, reviews_escalate, reviews_sample_draw


@shared_task(name="reviews.escalate_overdue")
def reviews_escalate_task() -> list[int]:
    with acting_as("reviews.escalate"):
        return reviews_escalate()


@shared_task(name="reviews.sample_periodic")
def reviews_sample_task(hours: int = 24) -> dict[str, int]:
    """Draw a fixed-size random QA sample of each pipeline's passed outputs of
    the last ``hours``; each draw's seed is in its audit event."""
    until = timezone.now()
    since = until - timedelta(hours=hours)
    size = getattr(settings, "KEEL_REVIEW_SAMPLE_SIZE", 5)
    drawn: dict[str, int] = {}
    if size < 1:
        return drawn
    with acting_as("reviews.sample"):
        for pipeline in Pipeline.objects.filter(approval_policy__isnull=False):
            _, tasks = reviews_sample_draw(pipeline=pipeline, since=since, until=until, size=size)
            drawn[pipeline.slug] = len(tasks)
    return drawn


@shared_task(name="reviews.finalize_approvals")
def reviews_finalize_approvals_task() -> list[int]:
    """Write the approvals whose undo window has closed (enqueued for each
    window's end by review_approval_hold; beat sweeps up any it missed)."""
    return reviews_approvals_finalize()
