"""The production gate: a release goes to production only when approved and when its latest
evaluation passes the pipeline's current change policy.
"""

from decimal import Decimal

from django.core.exceptions import ValidationError

from governance.models import ChangePolicy, change_policy_for
from pipelines.models import (
    Evaluation,
    Release,
)
from pipelines.releases.approval import release_state
from pipelines.releases.base import PRODUCTION, State


def evaluation_latest(release: Release) -> Evaluation | None:
    return release.evaluations.filter(status=Evaluation.Status.DONE).order_by("-created_at", "-pk").first()


def release_gate_problems(release: Release, policy: ChangePolicy | None = None) -> list[str]:
    """Why ``release`` may not go to production now ([] when it may)."""
    policy = policy or change_policy_for(release.pipeline)
    problems = []
    state = release_state(release)
    if state != State.APPROVED:
        problems.append(f"release #{release.number} is {state}, not approved")
    evaluation = evaluation_latest(release)
    if evaluation is None:
        problems.append(f"release #{release.number} has not been evaluated")
        return problems
    if release.pipeline.evaluation_cases.count() != evaluation.cases:
        problems.append("the evaluation cases changed since the last evaluation; evaluate again")
    if evaluation.cases == 0 and policy.min_pass_rate > 0:
        problems.append("the pipeline has no evaluation cases")
    elif Decimal(evaluation.passed) < policy.min_pass_rate * evaluation.cases:
        problems.append(
            f"evaluation passed {evaluation.passed} of {evaluation.cases} cases, "
            f"below the policy's minimum pass rate {policy.min_pass_rate}"
        )
    if policy.block_regressions and evaluation.broken:
        problems.append(f"{evaluation.broken} cases the production release passes now fail (regressions block)")
    return problems


def deployment_guard(release: Release, environment: str) -> None:
    """Refuse a production deploy of a release that is not approved or whose
    evaluation fails; staging takes any release that is not retired or rejected."""
    if environment == PRODUCTION:
        problems = release_gate_problems(release)
        if problems:
            raise ValidationError(f"Release #{release.number} cannot go to production: " + "; ".join(problems) + ".")
    elif release_state(release) in (State.RETIRED, State.REJECTED):
        raise ValidationError(f"Release #{release.number} is {release_state(release)}.")
