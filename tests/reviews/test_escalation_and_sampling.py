"""The beat tasks: overdue reviews escalate (never approve), and a periodic
random sample of passed outputs goes to QA with its seed recorded."""

import random
from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent
from pipelines.models import Run
from reviews.models import ReviewDecision, ReviewTask
from reviews.services import reviews_escalate, reviews_sample_draw
from tests.reviews.conftest import gated_pipeline, hold, task_of


def test_an_overdue_review_goes_to_the_escalation_contact_then_the_owner(gated, mailoutbox):
    task = task_of(hold(gated))
    start = task.created_at
    assert reviews_escalate(now=start + timedelta(hours=1)) == []  # within its 24 hours
    assert reviews_escalate(now=start + timedelta(hours=25)) == [task.pk]
    task.refresh_from_db()
    assert (task.escalation_level, task.status) == (1, ReviewTask.Status.OPEN)
    assert mailoutbox[0].to == ["acme-replies-leads@example.com"] and "overdue" in mailoutbox[0].subject
    assert reviews_escalate(now=start + timedelta(hours=26)) == []  # told once per level
    assert reviews_escalate(now=start + timedelta(hours=49)) == [task.pk]  # past the second deadline
    task.refresh_from_db()
    assert task.escalation_level == 2 and mailoutbox[1].to == [gated.owner.email]
    events = AuditEvent.objects.filter(action="review.escalated", object_id=str(task.pk)).order_by("seq")
    assert [e.payload_data["level"] for e in events] == [1, 2]


def test_an_expired_review_is_never_approved(gated, mailoutbox):
    run = hold(gated)
    task = task_of(run)
    reviews_escalate(now=task.created_at + timedelta(days=30))
    reviews_escalate(now=task.created_at + timedelta(days=60))
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN and not ReviewDecision.objects.exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING_REVIEW


def test_without_an_escalation_contact_the_owner_is_told(gated, mailoutbox):
    gated.escalation_contact = ""
    gated.save()
    task = task_of(hold(gated))
    reviews_escalate(now=task.created_at + timedelta(hours=25))
    assert mailoutbox[0].to == [gated.owner.email]


def test_a_decided_review_is_not_escalated(gated, reviewer, mailoutbox):
    from reviews.services import review_decide

    task = task_of(hold(gated))
    review_decide(task=task, actor=reviewer, decision="approve")
    assert reviews_escalate(now=task.created_at + timedelta(days=3)) == [] and not mailoutbox


def test_the_periodic_sample_draws_a_fixed_size_with_its_seed_recorded(acme, superuser, author):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="never", sample_rate="0")
    runs = [hold(pipeline, subject=f"ticket {i}") for i in range(6)]
    now = timezone.now()
    seed, tasks = reviews_sample_draw(pipeline=pipeline, since=now - timedelta(days=1), until=now + timedelta(1),
                                      size=2, seed=1234)  # fmt: skip
    candidates = sorted((run.pk, 1) for run in runs)
    expected = sorted(c[0] for c in random.Random(1234).sample(candidates, 2))
    assert seed == 1234 and sorted(t.run_id for t in tasks) == expected
    assert all(t.kind == "qa_sample" and t.sample_seed == 1234 for t in tasks)
    event = AuditEvent.objects.get(action="review.sample_drawn")
    assert event.payload_data["seed"] == "1234" and event.payload_data["runs"] == expected
    _, again = reviews_sample_draw(pipeline=pipeline, since=now - timedelta(days=1), until=now + timedelta(1), size=10)
    assert sorted(t.run_id for t in again) == sorted({r.pk for r in runs} - set(expected))  # never twice
