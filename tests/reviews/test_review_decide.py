"""Deciding a held run: who may, what is recorded, and how the run goes on."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Run, StepRun
from pipelines.runs.engine import run_execute
from pipelines.runs.replay import run_replay
from reviews.models import ReviewDecision, ReviewTask
from reviews.services import review_claim, review_decide
from tests.reviews.conftest import gated_pipeline, hold, task_of


def _decide(task, user, decision, **kwargs):
    with acting_as(user):
        return review_decide(task=task, actor=user, decision=decision, **kwargs)


def _events(action, task):
    return list(AuditEvent.objects.filter(action=action, object_id=str(task.pk)))


def test_it_approves_and_the_run_resumes_to_delivery_with_the_original_output(gated, reviewer):
    run = hold(gated)
    task = task_of(run)
    _decide(task, reviewer, "approve")
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.APPROVED and task.decided_at is not None
    run.refresh_from_db()
    assert run.status == Run.Status.QUEUED and run.next_position == 2
    gate = StepRun.objects.get(run=run, position=1)
    assert gate.status == StepRun.Status.COMPLETED and gate.decision["review"]["outcome"] == "approved"
    assert gate.decision["review"]["approvers"] == ["reviewer"]
    assert [e.actor_name for e in _events("review.decided", task)] == ["reviewer"]
    assert AuditEvent.objects.filter(action="run.resumed", object_id=str(run.pk)).count() == 1
    run = run_execute(run.pk)  # what the worker does
    assert run.status == Run.Status.COMPLETED and run.output == run.input
    assert StepRun.objects.get(run=run, position=2).output == run.input


def test_it_delivers_the_edited_output_with_the_edit_stored_beside_the_original(gated, reviewer):
    run = hold(gated, draft="We guarantee a refund.")
    task = task_of(run)
    edited = {**run.input, "draft": "We will check your refund request."}
    record = _decide(task, reviewer, "edit", edited_output=edited)
    assert record.original_output == run.input and record.edited_output == edited
    assert '-  "draft": "We guarantee a refund."' in record.diff and '+  "draft": "We will check' in record.diff
    assert _events("review.decided", task)[0].payload_data["diff"] == record.diff
    run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED and run.output == edited
    assert StepRun.objects.get(run=run, position=1).decision["review"]["outcome"] == "edited"


def test_a_reviewed_run_replays_to_the_byte(gated, reviewer):
    run = hold(gated, draft="We guarantee a refund.")
    _decide(task_of(run), reviewer, "edit", edited_output={**run.input, "draft": "Edited."})
    run = run_execute(run.pk)
    report = run_replay(run)
    assert report.ok, (report.problems, report.steps)
    assert [s.position for s in report.steps] == [1, 2]
    assert audit_chain_verify().ok


def test_replay_notices_a_tampered_approved_output(gated, reviewer):
    run = hold(gated)
    _decide(task_of(run), reviewer, "approve")
    run = run_execute(run.pk)
    StepRun.objects.filter(run=run, position=1).update(output={**run.input, "draft": "Tampered."})
    report = run_replay(run)
    assert not report.ok
    assert "not the one the reviewer approved" in report.steps[0].reason


def test_it_rejects_with_a_reason_and_the_run_ends_rejected_with_no_delivery(gated, reviewer):
    run = hold(gated)
    task = task_of(run)
    _decide(task, reviewer, "reject", reason="Promises a refund we cannot give.")
    run.refresh_from_db()
    assert run.status == Run.Status.REJECTED and "Promises a refund" in run.failure_reason
    assert not StepRun.objects.filter(run=run, position=2).exists()
    assert run_execute(run.pk) is None  # a rejected run is never picked up again
    event = AuditEvent.objects.get(action="run.rejected", object_id=str(run.pk))
    assert event.payload_data["reason"] == "Promises a refund we cannot give." and event.actor_name == "reviewer"


def test_it_refuses_a_reject_without_a_reason(gated, reviewer):
    task = task_of(hold(gated))
    with pytest.raises(ValidationError, match="needs a reason"):
        _decide(task, reviewer, "reject", reason="   ")
    assert not ReviewDecision.objects.exists() and not _events("review.decided", task)
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW


def test_it_refuses_self_approval_by_the_runs_requester(gated, reviewer, superuser):
    from governance.permissions import user_can

    # The requester must be able to start the run: give the reviewer the change right too.
    from governance.services import permission_grant

    with acting_as(superuser):
        permission_grant(actor=superuser, user=reviewer, permission="change_pipeline", obj=gated)
    assert user_can(reviewer, "change", gated)
    task = task_of(hold(gated, actor=reviewer))
    with pytest.raises(PermissionDenied, match="started this run"):
        _decide(task, reviewer, "approve")
    assert not ReviewDecision.objects.exists()


def test_it_refuses_approval_by_the_author_of_the_release(gated, author, superuser):
    from governance.services import permission_grant

    with acting_as(superuser):
        permission_grant(actor=superuser, user=author, permission="review_output", obj=gated)
    task = task_of(hold(gated))
    with pytest.raises(PermissionDenied, match="authored the release"):
        _decide(task, author, "edit", edited_output={**task.run.input, "draft": "x"})
    assert not ReviewDecision.objects.exists()


def test_it_refuses_anyone_without_review_output_on_the_pipeline(gated, outsider, auditor):
    task = task_of(hold(gated))
    for user in (outsider, auditor):
        with pytest.raises(PermissionDenied):
            _decide(task, user, "approve")
    assert not ReviewDecision.objects.exists()


def test_it_needs_distinct_reviewers_for_the_required_approvals(acme, superuser, author, reviewer, second_reviewer):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, required_approvals=2)
    run = hold(pipeline)
    task = task_of(run)
    _decide(task, reviewer, "approve")
    assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING_REVIEW  # one of two
    with pytest.raises(ValidationError, match="already decided"):
        _decide(task, reviewer, "approve")  # the same person twice counts once
    _decide(task, second_reviewer, "approve")
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.APPROVED
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED
    assert StepRun.objects.get(run=run, position=1).decision["review"]["approvers"] == ["reviewer", "reviewer2"]


def test_with_two_approvals_the_first_reviewers_edit_is_what_the_second_approval_delivers(
    acme, superuser, author, reviewer, second_reviewer
):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, required_approvals=2)
    run = hold(pipeline)
    task = task_of(run)
    edited = {**run.input, "draft": "We will check your refund request."}
    _decide(task, reviewer, "edit", edited_output=edited)
    _decide(task, second_reviewer, "approve")
    review = StepRun.objects.get(run=run, position=1).decision["review"]
    assert review["outcome"] == "edited" and review["approvers"] == ["reviewer", "reviewer2"]
    assert run_execute(run.pk).output == edited


def test_it_refuses_an_edit_that_breaks_the_outputs_structure(gated, reviewer):
    task = task_of(hold(gated))
    original = task.run.input
    for bad, message in (
        ({"subject": original["subject"]}, "fields removed: draft"),
        ({**original, "extra": 1}, "fields added: extra"),
        ({**original, "draft": ["a list"]}, "draft must stay a string"),
        (["not", "an", "object"], "must be a JSON object"),
    ):
        with pytest.raises(ValidationError, match=message):
            _decide(task, reviewer, "edit", edited_output=bad)
    assert not ReviewDecision.objects.exists()
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW


def test_it_refuses_a_decision_on_someone_elses_claim(gated, reviewer, second_reviewer):
    task = task_of(hold(gated))
    with acting_as(second_reviewer):
        review_claim(task=task, actor=second_reviewer)
    with pytest.raises(ValidationError, match="reviewer2 holds this review"):
        _decide(task, reviewer, "approve")
    assert not ReviewDecision.objects.exists()


def test_a_claim_keeps_others_out_and_a_stale_claim_lapses(gated, reviewer, second_reviewer):
    task = task_of(hold(gated))
    now = timezone.now()
    with acting_as(reviewer):
        review_claim(task=task, actor=reviewer, now=now)
    with pytest.raises(ValidationError, match="reviewer is working on this review"):
        review_claim(task=task, actor=second_reviewer, now=now + timedelta(minutes=1))
    later = now + timedelta(hours=1)  # past the claim period
    claimed = review_claim(task=task, actor=second_reviewer, now=later)
    assert claimed.claimed_by == second_reviewer
    events = _events("review.claimed", task)
    assert [e.actor_name for e in events] == ["reviewer", "reviewer2"]
    assert events[1].payload_data["lapsed_claim_of"] == "reviewer"


def test_a_decided_task_refuses_a_second_decision_and_the_run_resumes_once(gated, reviewer, second_reviewer):
    run = hold(gated)
    task = task_of(run)
    _decide(task, reviewer, "approve")
    with pytest.raises(ValidationError, match="already decided"):
        _decide(task, second_reviewer, "reject", reason="Too late")
    assert ReviewDecision.objects.count() == 1
    assert AuditEvent.objects.filter(action="run.resumed", object_id=str(run.pk)).count() == 1
    assert Run.objects.get(pk=run.pk).status == Run.Status.QUEUED


def test_a_review_decision_is_never_changed_or_deleted(gated, reviewer):
    record = _decide(task_of(hold(gated)), reviewer, "approve")
    record.reason = "changed"
    with pytest.raises(ValidationError):
        record.save()
    with pytest.raises(ValidationError):
        record.delete()
