import hashlib

import pytest

from pipelines.steps.base import StepError
from pipelines.steps.gate import execute

from .helpers import make_ctx

# As a release snapshot holds an ApprovalPolicy: Decimals as strings.
POLICY = {
    "review_mode": "exceptions",
    "confidence_threshold": "0.750",
    "rules": [
        {"field": "label", "operator": "in", "value": ["refund", "complaint"]},
        {"field": "draft", "operator": "contains", "value": "guarantee"},
    ],
    "sample_rate": "0.000",
    "required_approvals": 1,
    "review_deadline_hours": 4,
}
ROUTINE = {"label": "shipping", "confidence": 0.9, "draft": "Your parcel is on its way.", "parse_uncertain": False}


def gate(document: dict, policy: dict | None = POLICY, **ctx):
    return execute(document, make_ctx(kind="gate", policy=policy, **ctx))


def test_a_routine_output_passes_unchanged():
    result = gate(ROUTINE)
    assert result.output == ROUTINE and result.output is not ROUTINE
    assert result.decision == {
        "passed": True,
        "reasons": [],
        "rule_hits": [],
        "confidence": 0.9,
        "sampled": False,
        "review_mode": "exceptions",
    }


def test_without_a_policy_everything_passes():
    decision = gate({"label": "refund", "confidence": 0.1}, policy=None).decision
    assert decision == {"passed": True, "reasons": [], "rule_hits": [], "confidence": 0.1, "sampled": False}


def test_never_passes_even_what_exceptions_would_hold():
    decision = gate({"label": "refund", "confidence": 0.1}, policy={**POLICY, "review_mode": "never"}).decision
    assert decision["passed"] and decision["reasons"] == []


def test_always_holds_and_still_says_what_else_it_saw():
    assert gate(ROUTINE, policy={**POLICY, "review_mode": "always"}).decision["reasons"] == ["always"]
    decision = gate({**ROUTINE, "label": "refund"}, policy={**POLICY, "review_mode": "always"}).decision
    assert (decision["passed"], decision["reasons"]) == (False, ["always", "rule"])


def test_low_confidence_is_held():
    decision = gate({**ROUTINE, "confidence": 0.74}).decision
    assert (decision["passed"], decision["reasons"], decision["confidence"]) == (False, ["low_confidence"], 0.74)
    assert gate({**ROUTINE, "confidence": 0.75}).decision["passed"]


def test_a_matching_rule_is_held_with_the_rule():
    decision = gate({**ROUTINE, "draft": "We Guarantee it."}).decision
    assert decision["reasons"] == ["rule"]
    assert decision["rule_hits"] == [POLICY["rules"][1]]


def test_an_uncertain_parse_is_held():
    assert gate({**ROUTINE, "parse_uncertain": True}).decision["reasons"] == ["parse_uncertain"]


def test_every_reason_is_listed_in_a_fixed_order():
    document = {"label": "complaint", "confidence": 0.2, "draft": "guarantee", "parse_uncertain": True}
    decision = gate(document).decision
    assert decision["reasons"] == ["low_confidence", "rule", "parse_uncertain"]
    assert decision["rule_hits"] == POLICY["rules"]


def test_a_confidence_that_is_not_a_number_is_held():
    assert gate({**ROUTINE, "confidence": "high"}).decision["reasons"] == ["invalid_confidence"]


def test_a_document_without_confidence_is_judged_on_the_rest():
    assert gate({"draft": "Hello"}).decision["passed"]


def test_a_bad_rule_fails_the_step():
    with pytest.raises(StepError, match="the approval policy has a bad rule: unknown rule operator 'like'"):
        gate(ROUTINE, policy={**POLICY, "rules": [{"field": "label", "operator": "like", "value": "x"}]})


def test_an_unknown_review_mode_fails_the_step():
    with pytest.raises(StepError, match="unknown review mode 'sometimes'"):
        gate(ROUTINE, policy={**POLICY, "review_mode": "sometimes"})


def bucket(slug: str, run_id: int) -> int:
    return int(hashlib.sha256(f"{slug}:{run_id}".encode()).hexdigest()[:8], 16) % 10_000


def test_sampling_takes_a_fixed_share_of_passed_runs_by_their_id():
    policy = {**POLICY, "sample_rate": "0.100"}
    verdicts = {run_id: gate(ROUTINE, policy=policy, run_id=run_id).decision["sampled"] for run_id in range(1, 401)}
    assert verdicts == {run_id: bucket("support-triage", run_id) < 1000 for run_id in verdicts}
    assert 20 <= sum(verdicts.values()) <= 60
    assert verdicts == {r: gate(ROUTINE, policy=policy, run_id=r).decision["sampled"] for r in verdicts}


def test_held_runs_are_never_sampled_and_rates_of_zero_and_one_are_exact():
    assert not gate({**ROUTINE, "label": "refund"}, policy={**POLICY, "sample_rate": "1.000"}).decision["sampled"]
    assert gate(ROUTINE, policy={**POLICY, "sample_rate": "1.000"}).decision["sampled"]
    assert not any(gate(ROUTINE, run_id=r).decision["sampled"] for r in range(50))
