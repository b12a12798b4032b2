"""The demo leaves a queue for its reviewer; the beat schedule names the review tasks."""

import io

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from config.celery import app
from pipelines.models import Run
from reviews.models import ReviewTask
from reviews.selectors import review_queue_for_user
from reviews.tasks import reviews_escalate_task, reviews_sample_task


def test_the_demos_held_runs_fill_the_demo_reviewers_queue(db):
    call_command("keel_demo", "--runs", "20", "--inline", stdout=io.StringIO())
    held = Run.objects.filter(status=Run.Status.WAITING_REVIEW)
    assert held.count() >= 5  # low confidence, refunds, complaints and legal threats
    reviewer = get_user_model().objects.get(username="reviewer")
    queue = review_queue_for_user(user=reviewer)
    assert {t.run_id for t in queue if t.kind != ReviewTask.Kind.QA_SAMPLE} == set(held.values_list("pk", flat=True))
    legal = ReviewTask.objects.filter(run__input__subject="Legal notice").first()
    assert legal is not None and "rule" in legal.reasons


def test_the_beat_schedule_runs_escalation_and_the_periodic_sample(db):
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"reviews.escalate_overdue", "reviews.sample_periodic", "reviews.finalize_approvals"} <= tasks
    app.loader.import_default_modules()
    assert {"reviews.escalate_overdue", "reviews.sample_periodic", "reviews.finalize_approvals"} <= set(app.tasks)
    assert reviews_escalate_task() == [] and reviews_sample_task() == {}
