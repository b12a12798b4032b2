"""The engine's signals, turned into review tasks (connected in ReviewsConfig.ready)."""

from django.dispatch import receiver

from pipelines.signals import run_held, run_sampled
from reviews.models import ReviewTask
from reviews.services import review_task_create


@receiver(run_held, dispatch_uid="reviews.run_held")
def _on_run_held(sender, *, run, position, decision, events=None, fresh=False, **kwargs):
    review_task_create(run=run, position=position, decision=decision, events=events, fresh=fresh)


@receiver(run_sampled, dispatch_uid="reviews.run_sampled")
def _on_run_sampled(sender, *, run, position, decision, events=None, fresh=False, **kwargs):
    review_task_create(
        run=run, position=position, decision=decision, kind=ReviewTask.Kind.QA_SAMPLE, events=events, fresh=fresh
    )
