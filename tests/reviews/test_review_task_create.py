"""A gate that holds a run opens a review task through the engine's signal."""

from audit.models import AuditEvent
from pipelines.models import Run, StepRun
from reviews.models import ReviewTask
from tests.reviews.conftest import gated_pipeline, hold, task_of


def test_a_held_run_opens_one_review_task_with_the_policy_in_force(gated):
    run = hold(gated)
    assert run.status == Run.Status.WAITING_REVIEW
    task = task_of(run)
    assert (task.kind, task.status, task.position, task.pipeline_id) == ("pre_publication", "open", 1, gated.pk)
    assert task.reasons == ["always"] and task.required_approvals == 1
    assert task.deadline_at is not None and task.second_deadline_at > task.deadline_at
    event = AuditEvent.objects.get(action="review.created", object_id=str(task.pk))
    assert event.payload_data["kind"] == "pre_publication" and event.payload_data["run"] == run.pk


def test_an_exception_records_its_reasons_rule_hits_and_confidence(acme, superuser, author):
    rules = [{"field": "draft", "operator": "contains", "value": "guarantee"}]
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="exceptions",
                              confidence_threshold="0.800", rules=rules, required_approvals=2)  # fmt: skip
    run = hold(pipeline, draft="We guarantee a refund.", confidence=0.5)
    task = task_of(run)
    assert task.kind == "exception" and task.reasons == ["low_confidence", "rule"]
    assert task.rule_hits == rules and task.confidence == 0.5 and task.required_approvals == 2
    gate = StepRun.objects.get(run=run, position=1)
    assert gate.decision["reasons"] == ["low_confidence", "rule"]
    assert AuditEvent.objects.get(action="run.waiting_review", object_id=str(run.pk)).payload_data["reasons"] == [
        "low_confidence",
        "rule",
    ]


def test_a_passed_output_in_the_sample_opens_a_non_blocking_qa_task(acme, superuser, author):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="never", sample_rate="1")
    run = hold(pipeline)
    assert run.status == Run.Status.COMPLETED  # the sample never holds the run
    task = ReviewTask.objects.get(run=run)
    assert (task.kind, task.reasons, task.deadline_at) == ("qa_sample", ["sample"], None)


def test_a_passed_output_outside_the_sample_opens_nothing(acme, superuser, author):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="never", sample_rate="0")
    run = hold(pipeline)
    assert run.status == Run.Status.COMPLETED and not ReviewTask.objects.filter(run=run).exists()
