"""An approval waits out its undo window as a pending approval, and only then
becomes a decision; an undo or a decision made otherwise meanwhile wins."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.models import AuditEvent
from pipelines.models import Run
from reviews.models import PendingApproval, ReviewDecision, ReviewTask
from reviews.services import (
    review_approval_hold,
    review_approval_undo,
    review_decide,
    reviews_approvals_finalize,
    undo_seconds,
)
from tests.reviews.conftest import hold, task_of


def test_an_approval_is_written_only_when_its_window_closes(gated, reviewer):
    task = task_of(hold(gated))
    now = timezone.now()
    pending = review_approval_hold(task=task, actor=reviewer, now=now)
    assert pending.due_at == now + timedelta(seconds=undo_seconds())
    assert reviews_approvals_finalize(now=now + timedelta(seconds=1)) == []  # still in its window
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW
    written = reviews_approvals_finalize(now=pending.due_at)
    assert ReviewDecision.objects.get(pk__in=written).decision == "approve"
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewTask.Status.APPROVED
    assert not PendingApproval.objects.exists()
    assert reviews_approvals_finalize(now=pending.due_at) == []  # a second finalizer finds nothing


def test_the_refusals_of_a_decision_come_at_once_not_when_the_window_closes(gated, lead):
    task = task_of(hold(gated, actor=lead))
    with pytest.raises(PermissionDenied, match="You started this run"):
        review_approval_hold(task=task, actor=lead)
    assert not PendingApproval.objects.exists()


def test_an_undo_after_the_window_changes_nothing(gated, reviewer):
    task = task_of(hold(gated))
    now = timezone.now()
    pending = review_approval_hold(task=task, actor=reviewer, now=now)
    with pytest.raises(ValidationError, match="Too late to undo"):
        review_approval_undo(task=task, actor=reviewer, now=pending.due_at)
    assert PendingApproval.objects.exists()
    with pytest.raises(ValidationError, match="in its undo window"):  # the approver cannot also reject meanwhile
        review_decide(task=task, actor=reviewer, decision="reject", reason="No.", now=now)


def test_an_approval_overtaken_by_another_decision_is_dropped_and_says_why(gated, reviewer, second_reviewer):
    task = task_of(hold(gated))
    now = timezone.now()
    pending = review_approval_hold(task=task, actor=reviewer, now=now)
    with pytest.raises(ValidationError, match="reviewer holds this review"):
        review_decide(task=task, actor=second_reviewer, decision="reject", reason="No.", now=now)
    # Long after (the worker was down and the claim lapsed), someone else rejects it.
    later = ReviewTask.objects.get(pk=task.pk).claim_expires_at + timedelta(seconds=1)
    review_decide(task=task, actor=second_reviewer, decision="reject", reason="Wrong.", now=later)
    assert reviews_approvals_finalize(now=later) == []
    dropped = AuditEvent.objects.get(action="review.approval_dropped")
    assert dropped.actor_name == "reviewer" and "already decided" in dropped.payload_data["error"]
    assert list(ReviewDecision.objects.values_list("decision", flat=True)) == ["reject"]
    assert not PendingApproval.objects.filter(pk=pending.pk).exists()
