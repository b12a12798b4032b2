"""After a person decided: resume a run held at a gate with the approved
output, or end it as rejected.

The reviews app calls these once a review task has its approvals (or a
rejection); pipelines knows nothing of review tasks, only of the decision it is
handed, which it records on the gate's StepRun so that replay can read it back
as it reads a model's recorded response.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record_many
from governance.permissions import user_can
from pipelines.delivery.notices import rejection_notice_prepare
from pipelines.models import Run, StepRun
from pipelines.runs.engine import _sha256, run_enqueue_on_commit


def _run_event(run: Run, action: str, payload: dict, actor) -> dict:
    """A run's audit event as the engine records it, for one batched append."""
    return {"action": action, "object_type": "run", "object_id": run.pk, "payload": payload,
            "workspace_id": run.pipeline.workspace_id, "pipeline_id": run.pipeline_id, "actor": actor}  # fmt: skip


def _held(run: Run, actor) -> tuple[Run, StepRun]:
    """The run, locked, and its held gate step; refuses anything else."""
    if getattr(actor, "is_authenticated", False) and not user_can(actor, "review_output", run.pipeline):
        raise PermissionDenied("Deciding a held run needs the review_output right on its pipeline.")
    # The run's row only: the pipeline is read, not changed, and a lock on it
    # would hold up every other decision and new run of the pipeline.
    run = Run.objects.select_for_update(of=("self",)).select_related("pipeline").get(pk=run.pk)
    if run.status != Run.Status.WAITING_REVIEW:
        raise ValidationError(f"Run {run.pk} is not waiting for review ({run.status}).")
    gate = StepRun.objects.get(run=run, position=run.next_position)
    if gate.kind != "gate" or gate.status != StepRun.Status.WAITING_REVIEW:
        raise ValidationError(f"Run {run.pk} has no held gate at step {run.next_position}.")
    return run, gate


# No savepoint of its own inside a caller's transaction (two round trips a
# decision): it refuses before it writes anything, and its caller
# (reviews.services.review_decide) lets a refusal end its own transaction.
@transaction.atomic(savepoint=False)
def run_resume(
    *, run: Run, output: dict | None, decision: dict, actor, enqueue: bool = True,
    record_first: list[dict] | None = None,
) -> Run:  # fmt: skip
    """Resume a held run with the approved output as its gate's output.

    1. Refuse unless the run waits at a gate (a second resumption finds it queued).
    2. Record the approved output (the edit, where edited; ``None``: the gate's
       output as it was held) and its hash on the gate's StepRun, with
       ``decision`` under ``review`` beside the gate's verdict.
    3. Record the gate's completion (its new output hash) and ``run.resumed``.
       ``record_first`` (``audit_record`` keyword arguments: the caller's own
       event, e.g. the review decision) goes ahead of them in the same append,
       so the whole decision takes the chain head once.
    4. Put the run back on the queue at the next step; a worker delivers it.
    """
    if output is not None and not isinstance(output, dict):
        raise ValidationError({"output": "The approved output must be a JSON object."})
    if not isinstance(decision, dict):
        raise ValidationError({"decision": "The review decision must be a JSON object."})
    run, gate = _held(run, actor)
    output = gate.output if output is None else output
    output_sha256 = _sha256(output)
    review = {**decision, "original_sha256": gate.output_sha256, "output_sha256": output_sha256}
    recorded = {**(gate.decision or {}), "review": review}
    StepRun.objects.filter(pk=gate.pk).update(
        status=StepRun.Status.COMPLETED, output=output, output_sha256=output_sha256, decision=recorded
    )
    resumed = {"status": Run.Status.QUEUED, "next_position": gate.position + 1, "lease_owner": "",
               "lease_expires_at": None}  # fmt: skip
    Run.objects.filter(pk=run.pk).update(**resumed)
    audit_record_many([
        *(record_first or []),
        _run_event(run, "step.completed",
                   {"position": gate.position, "kind": gate.kind, "output_sha256": output_sha256,
                    "decision": recorded}, actor),
        _run_event(run, "run.resumed",
                   {"position": gate.position, "outcome": decision.get("outcome", "approved"),
                    "original_sha256": gate.output_sha256, "output_sha256": output_sha256}, actor),
    ])  # fmt: skip
    if enqueue:
        run_enqueue_on_commit(run)
    # The locked row with what the UPDATE wrote: no other writer gets it before the commit.
    for field, value in resumed.items():
        setattr(run, field, value)
    return run


@transaction.atomic
def run_reject(
    *, run: Run, reason: str, actor, decision: dict | None = None, record_first: list[dict] | None = None
) -> Run:
    """End a held run as rejected: nothing after its gate runs, nothing is
    delivered; a signed ``run.rejected`` notice goes to the release's webhook,
    if it has one (pipelines/delivery/notices.py). ``record_first`` as for ``run_resume``."""
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why the output is rejected."})
    run, gate = _held(run, actor)
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.REJECTED, failure_reason=f"Rejected: {reason}", lease_owner="", lease_expires_at=None,
        finished_at=now,
    )  # fmt: skip
    # The consumer that would have had the output is told, where the release has a webhook for it.
    notice = rejection_notice_prepare(run=run, position=gate.position, reason=reason, reviewer=actor, at=now)
    audit_record_many([
        *(record_first or []),
        _run_event(run, "run.rejected", {"position": gate.position, "reason": reason, **(decision or {})}, actor),
        *notice,
    ])  # fmt: skip
    return Run.objects.get(pk=run.pk)
