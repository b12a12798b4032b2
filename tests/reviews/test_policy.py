"""The approval policy in force at the gate, as a run meets it: each mode and
rule kind, the release's frozen policy rather than today's, and the sample."""

import math

import pytest

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.models import Run, StepRun
from pipelines.steps.gate import execute
from reviews.models import ReviewTask
from tests.pipelines.steps.helpers import make_ctx
from tests.reviews.conftest import gated_pipeline, hold


@pytest.mark.parametrize(
    ("mode", "document", "held", "reasons"),
    [
        ("always", {"confidence": 0.99}, True, ["always"]),
        ("always", {"confidence": 0.1}, True, ["always", "low_confidence"]),
        ("never", {"confidence": 0.1, "label": "refund"}, False, []),
        ("exceptions", {"confidence": 0.99}, False, []),
        ("exceptions", {"confidence": 0.5}, True, ["low_confidence"]),
        ("exceptions", {"confidence": 0.99, "label": "refund"}, True, ["rule"]),  # a label
        ("exceptions", {"confidence": 0.99, "draft": "I will see you in court"}, True, ["rule"]),  # a phrase
        ("exceptions", {"confidence": 0.99, "order_total": 900}, True, ["rule"]),  # a field value
        ("exceptions", {"confidence": 0.99, "parse_uncertain": True}, True, ["parse_uncertain"]),
    ],
)
def test_each_mode_and_rule_kind_holds_or_passes_a_run(mode, document, held, reasons, acme, superuser, author):
    rules = [
        {"field": "label", "operator": "eq", "value": "refund"},
        {"field": "draft", "operator": "contains", "value": "court"},
        {"field": "order_total", "operator": "gt", "value": 500},
    ]
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode=mode,
                              confidence_threshold="0.750", rules=rules)  # fmt: skip
    run = hold(pipeline, **{"draft": "Thanks for writing.", **document})
    assert run.status == (Run.Status.WAITING_REVIEW if held else Run.Status.COMPLETED)
    gate = StepRun.objects.get(run=run, kind="gate")
    assert gate.decision["reasons"] == reasons and gate.decision["review_mode"] == mode
    event = AuditEvent.objects.get(action="step.completed", object_id=str(run.pk), payload__contains='"kind":"gate"')
    assert event.payload_data["decision"] == gate.decision  # the verdict and its reasons are in the chain
    assert ReviewTask.objects.filter(run=run, kind__in=ReviewTask.BLOCKING).exists() == held


def test_the_gate_applies_the_releases_policy_not_the_pipelines_current_one(gated, superuser):
    policy = gated.approval_policy
    with acting_as(superuser):
        policy.review_mode = "never"
        policy.save()
    run = hold(gated)  # the live release froze "always"
    assert run.status == Run.Status.WAITING_REVIEW


def test_sampling_agrees_on_replay_and_keeps_its_rate_over_ten_thousand_runs():
    policy = {"review_mode": "exceptions", "confidence_threshold": "0.5", "rules": [], "sample_rate": "0.100"}
    document = {"confidence": 0.9}
    verdicts = [
        execute(document, make_ctx(kind="gate", policy=policy, run_id=run_id)).decision["sampled"]
        for run_id in range(1, 10_001)
    ]
    again = [
        execute(document, make_ctx(kind="gate", policy=policy, run_id=run_id)).decision["sampled"]
        for run_id in range(1, 10_001)
    ]
    assert verdicts == again
    n, p = 10_000, 0.1
    band = 2.5758 * math.sqrt(n * p * (1 - p))  # the binomial's 99% band, by the normal approximation
    assert n * p - band <= sum(verdicts) <= n * p + band
