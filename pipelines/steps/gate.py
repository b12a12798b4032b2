"""gate: ask the release's approval policy whether this output may go on without a person.

The document passes through unchanged; the verdict is ``StepResult.decision``,
which the engine turns into a held run (and a review task) or a passed one.
"""

import hashlib

from governance.rules import evaluate_rules
from pipelines.steps.base import StepContext, StepError, StepResult, json_copy


def sampled(ctx: StepContext, sample_rate: float) -> bool:
    """Whether this run falls in the policy's QA sample: a fixed bucket per run, so replay agrees."""
    bucket = int(hashlib.sha256(f"{ctx.pipeline_slug}:{ctx.run_id}".encode()).hexdigest()[:8], 16) % 10_000
    return bucket < sample_rate * 10_000


def _exceptions(policy: dict, document: dict) -> tuple[list[str], list[dict]]:
    reasons = []
    confidence = document.get("confidence")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
            reasons.append("invalid_confidence")  # cannot be compared, so cannot be trusted
        elif confidence < float(policy.get("confidence_threshold", 0)):
            reasons.append("low_confidence")
    try:
        hits = evaluate_rules(policy.get("rules") or [], document)
    except ValueError as exc:
        raise StepError(f"the approval policy has a bad rule: {exc}") from None
    if hits:
        reasons.append("rule")
    if document.get("parse_uncertain") is True:
        reasons.append("parse_uncertain")
    return reasons, hits


def execute(document: dict, ctx: StepContext) -> StepResult:
    policy = ctx.policy
    confidence = document.get("confidence")
    decision = {"passed": True, "reasons": [], "rule_hits": [], "confidence": confidence, "sampled": False}
    if policy is not None:
        mode = policy.get("review_mode", "exceptions")
        if mode not in ("never", "always", "exceptions"):
            raise StepError(f"the approval policy has an unknown review mode {mode!r}")
        decision["review_mode"] = mode
        if mode != "never":
            reasons, hits = _exceptions(policy, document)
            # In "always" mode every output is held; the other reasons still tell the reviewer what to look at.
            decision["reasons"] = ["always", *reasons] if mode == "always" else reasons
            decision["rule_hits"] = json_copy(hits)
            decision["passed"] = not decision["reasons"]
        decision["sampled"] = decision["passed"] and sampled(ctx, float(policy.get("sample_rate", 0)))
    return StepResult(output=json_copy(document), decision=decision)
