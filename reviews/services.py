"""Writes in the reviews app: create, claim and decide review tasks, record QA
verdicts, escalate overdue reviews and draw periodic samples. Each records its
audit event in the same transaction."""

import difflib
import json
import logging
import random
import secrets
from datetime import UTC, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.services import audit_record
from governance.permissions import permission_cache, user_can
from pipelines.broker import enqueue_on_commit
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.resume import run_reject, run_resume
from reviews.models import PendingApproval, PipelineReviewSettings, ReviewDecision, ReviewTask
from reviews.selectors import review_queue_counts_changed

logger = logging.getLogger(__name__)


def _claim_period() -> timedelta:
    # Read per use so that a test (or an operator) can shorten it.
    return timedelta(seconds=getattr(settings, "KEEL_REVIEW_CLAIM_SECONDS", 15 * 60))


def _event_fields(task: ReviewTask, action: str, payload: dict, actor=None) -> dict:
    """A task's audit event as ``audit_record`` keyword arguments."""
    return {
        "action": action,
        "object_type": "review_task",
        "object_id": task.pk,
        "payload": {"run": task.run_id, "position": task.position, **payload},
        "workspace_id": task.pipeline.workspace_id,
        "pipeline_id": task.pipeline_id,
        "actor": actor,
    }


def _event(task: ReviewTask, action: str, payload: dict, actor=None) -> None:
    audit_record(**_event_fields(task, action, payload, actor))


def _pretty(value) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def output_diff(original, edited) -> str:
    """The edit as a unified diff of the two outputs' pretty JSON."""
    return "\n".join(difflib.unified_diff(_pretty(original), _pretty(edited), "original", "edited", lineterm="", n=2))


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), "unknown")


def _check_structure(original: dict, edited: object) -> None:
    """An edit may change values, never the output's shape: the same fields,
    each of the same JSON type, so that the steps after the gate still read it."""
    if not isinstance(edited, dict):
        raise ValidationError({"output": "The edited output must be a JSON object."})
    missing = sorted(set(original) - set(edited))
    added = sorted(set(edited) - set(original))
    problems = []
    if missing:
        problems.append(f"fields removed: {', '.join(missing)}")
    if added:
        problems.append(f"fields added: {', '.join(added)}")
    for key in sorted(set(original) & set(edited)):
        was, now = _json_type(original[key]), _json_type(edited[key])
        if was != now and "null" not in (was, now):
            problems.append(f"{key} must stay a {was}, not a {now}")
    if problems:
        raise ValidationError({"output": "The edit breaks the output's structure: " + "; ".join(problems) + "."})


def _policy_of(run: Run) -> dict:
    return run.release.snapshot_data.get("approval_policy") or {}


@transaction.atomic(savepoint=False)  # nothing here is caught and carried on from
def review_task_create(
    *, run: Run, position: int, decision: dict, kind: str | None = None, sample_seed: int | None = None,
    actor=None, now=None, events: list[dict] | None = None, fresh: bool = False,
) -> ReviewTask:  # fmt: skip
    """Open a review for a gate's output: blocking (the run waits) unless
    ``kind`` is a QA sample. The policy in force is the one frozen in the run's
    release, never the pipeline's current one. A second call for the same gate
    returns the task the first made.

    The engine passes ``events``, the audit events it is about to append, and
    the task's event joins them; and ``fresh`` when the run was never executed
    before, so there is no earlier task to look for."""
    now = now or timezone.now()
    decision = decision or {}
    if kind is None:
        kind = ReviewTask.Kind.PRE_PUBLICATION if "always" in decision.get("reasons", []) else ReviewTask.Kind.EXCEPTION
    blocking = kind in ReviewTask.BLOCKING
    if not fresh:
        existing = ReviewTask.objects.filter(
            run=run, position=position, kind__in=ReviewTask.BLOCKING if blocking else [ReviewTask.Kind.QA_SAMPLE]
        ).first()
        if existing is not None:
            return existing
    policy = _policy_of(run)
    hours = int(policy.get("review_deadline_hours") or 24)
    task = ReviewTask(
        run=run,
        pipeline=run.pipeline,  # loaded with the run: its event reads the workspace
        position=position,
        kind=kind,
        reasons=list(decision.get("reasons", [])) if blocking else ["sample"],
        rule_hits=list(decision.get("rule_hits", [])),
        confidence=decision.get("confidence") if isinstance(decision.get("confidence"), (int, float)) else None,
        required_approvals=min(3, max(1, int(policy.get("required_approvals") or 1))) if blocking else 1,
        # A sampled output is checked after the fact: it has no deadline to miss.
        deadline_at=now + timedelta(hours=hours) if blocking else None,
        second_deadline_at=now + timedelta(hours=2 * hours) if blocking else None,
        sample_seed=sample_seed,
        created_at=now,
    )
    task.save(force_insert=True)
    review_queue_counts_changed()
    event = _event_fields(task, "review.created",
                          {"kind": kind, "reasons": task.reasons, "rule_hits": task.rule_hits,
                           "required_approvals": task.required_approvals,
                           "deadline_at": task.deadline_at.isoformat() if task.deadline_at else None,
                           # A 63-bit seed is past I-JSON's integers: recorded as a string.
                           **({"sample_seed": str(sample_seed)} if sample_seed is not None else {})},
                          actor=actor)  # fmt: skip
    if events is None:
        audit_record(**event)
    else:
        events.append(event)
    return task


def _lock(task: ReviewTask) -> ReviewTask:
    # run__pipeline: the same row as pipeline, so resuming the run needs no fetch of it.
    # Only the task's own row is locked (the run's, when it moves on, next, in
    # run_resume or run_reject): a lock on the joined pipeline and release rows
    # would queue every decision and every new run of the pipeline (an insert
    # takes a KEY SHARE lock on the rows it refers to) behind this one. NO KEY
    # is the weakest lock that still keeps a second decider out; the task's key
    # never changes.
    return (
        ReviewTask.objects.select_for_update(of=("self",), no_key=True)
        .select_related("pipeline", "run", "run__release", "run__pipeline")
        .get(pk=task.pk)
    )


def _require_reviewer(actor, task: ReviewTask) -> None:
    if not user_can(actor, "review_output", task.pipeline):
        raise PermissionDenied("Reviewing needs the review_output right on this pipeline.")


@transaction.atomic
def review_claim(*, task: ReviewTask, actor, now=None) -> ReviewTask:
    """Claim an open task for a limited time so that no one else works it.
    Holding a live claim already is no change; someone else's live claim
    refuses; a stale claim has lapsed and is taken over."""
    now = now or timezone.now()
    _require_reviewer(actor, task)
    task = _lock(task)
    if task.status != ReviewTask.Status.OPEN:
        raise ValidationError(f"This review is already {task.status}.")
    if task.is_blocking and task.run.status != Run.Status.WAITING_REVIEW:
        # The run ended another way (cancelled): nothing is left to decide.
        _close(task, ReviewTask.Status.CLOSED, now)
        _event(task, "review.closed", {"run_status": task.run.status}, actor=actor)
        return task
    holder = task.claim_holder(now)
    if holder is not None and holder.pk == actor.pk:
        return task
    if holder is not None:
        raise ValidationError(
            f"{holder.get_username()} is working on this review until {task.claim_expires_at:%H:%M} UTC."
        )
    lapsed = task.claimed_by.get_username() if task.claimed_by_id else None
    task.claimed_by, task.claim_expires_at = actor, now + _claim_period()
    task.save(update_fields=["claimed_by", "claim_expires_at"])
    _event(task, "review.claimed",
           {"until": task.claim_expires_at.isoformat(), **({"lapsed_claim_of": lapsed} if lapsed else {})},
           actor=actor)  # fmt: skip
    return task


@transaction.atomic
def review_release(*, task: ReviewTask, actor) -> ReviewTask:
    """Give back one's own claim (moving on without deciding)."""
    task = _lock(task)
    if task.claimed_by_id != actor.pk:
        return task
    task.claimed_by, task.claim_expires_at = None, None
    task.save(update_fields=["claimed_by", "claim_expires_at"])
    _event(task, "review.released", {}, actor=actor)
    return task


def _gate_output(task: ReviewTask) -> dict:
    return StepRun.objects.get(run_id=task.run_id, position=task.position).output


def _check_decision(task: ReviewTask, actor, decision: str, reason: str, now) -> list[ReviewDecision]:
    """Step 1 of review_decide on the locked task (its rights checked before
    the lock): raise unless ``actor`` may record ``decision`` now. Returns the
    task's earlier decisions where it needs more than one approval."""
    if not task.is_blocking:
        raise ValidationError("A QA sample is marked correct or incorrect, not approved or rejected.")
    if task.status != ReviewTask.Status.OPEN:
        raise ValidationError(f"This review was already decided ({task.status}); your decision was not recorded.")
    # The actor's own claim (live or lapsed) never refuses: spare the holder's fetch.
    holder = task.claim_holder(now) if task.claimed_by_id != actor.pk else None
    if holder is not None:
        raise ValidationError(f"{holder.get_username()} holds this review; your decision was not recorded.")
    # The task row is locked: these are all its decisions until this one commits.
    # A task that needs one approval has none while it is open (the first
    # approval or rejection closes it), so only a task needing more reads them.
    earlier = list(task.decisions.select_related("reviewer")) if task.required_approvals > 1 else []
    if any(d.reviewer_id == actor.pk for d in earlier):
        raise ValidationError("You have already decided this review; it needs another reviewer.")
    if decision == ReviewDecision.Decision.REJECT and not reason:
        raise ValidationError({"reason": "A rejection needs a reason."})
    if decision in ReviewDecision.APPROVING:
        # The requester is the actor or, for a run started with a token, the token's creator.
        if actor.pk in (task.run.actor_id, task.run.requested_by_id):
            raise PermissionDenied("You started this run, so you may not approve its output.")
        if task.run.release.created_by_id is not None and task.run.release.created_by_id == actor.pk:
            raise PermissionDenied("You authored the release that produced this output, so you may not approve it.")
    if PendingApproval.objects.filter(task=task, reviewer=actor).exists():
        raise ValidationError("Your approval of this review is in its undo window; undo it to decide otherwise.")
    return earlier


@transaction.atomic
def review_decide(
    *, task: ReviewTask, actor, decision: str, reason: str = "", edited_output: dict | None = None, now=None
) -> ReviewDecision:
    """Record one reviewer's decision on a blocking task.

    1. Refuse without review_output on the pipeline, on a task no longer open,
       on someone else's live claim, a reject without a reason, an edit that
       breaks the output's structure, a second decision by the same person, or
       an approval by the run's requester or the author of its release.
    2. Record the decision (an edit beside the original, with its diff).
    3. A rejection ends the run as rejected; the last required approval
       resumes it with the approved output (the latest edit, where edited).
    The task row is locked first, so of two reviewers deciding at once one
    counts and the other finds the task decided.
    """
    now = now or timezone.now()
    reason = (reason or "").strip()
    if decision not in (ReviewDecision.Decision.APPROVE, ReviewDecision.Decision.EDIT, ReviewDecision.Decision.REJECT):
        raise ValidationError({"decision": "Choose approve, edit or reject."})
    _require_reviewer(actor, task)
    task = _lock(task)
    earlier = _check_decision(task, actor, decision, reason, now)
    # Only an edit needs the held output here (to check and diff it); an
    # approval as is leaves run_resume to take it from the gate it reads anyway.
    original = edited = None
    if decision == ReviewDecision.Decision.EDIT:
        original = _gate_output(task)
        _check_structure(original, edited_output)
        if edited_output == original:
            raise ValidationError({"output": "The edit changes nothing; approve instead."})
        edited = edited_output
    try:
        # No savepoint: the locked task and the check above leave this
        # unreachable but for a bug, and then the error ends the transaction.
        record = ReviewDecision.objects.create(
            task=task, reviewer=actor, decision=decision, reason=reason, created_at=now,
            original_output=original if edited is not None else None, edited_output=edited,
            diff=output_diff(original, edited) if edited is not None else "",
        )  # fmt: skip
    except IntegrityError:
        raise ValidationError("You have already decided this review; it needs another reviewer.") from None
    payload = {"decision": decision, "reason": reason, "decision_id": record.pk}
    if edited is not None:
        payload["diff"] = record.diff
    # Recorded with the run's own events where the run moves on (one take of
    # the chain head for the whole decision), else on its own; either way in
    # this transaction and ahead of the run's events.
    decided = _event_fields(task, "review.decided", payload, actor=actor)
    if decision == ReviewDecision.Decision.REJECT:
        _close(task, ReviewTask.Status.REJECTED, now)
        run_reject(run=task.run, reason=reason, actor=actor, decision={"review_task": task.pk}, record_first=[decided])
        return record
    approvals = sorted(
        (d for d in [*earlier, record] if d.decision in ReviewDecision.APPROVING), key=lambda d: (d.created_at, d.pk)
    )  # the model's ordering
    if len(approvals) < task.required_approvals:
        # Someone else must approve too: the claim goes back to the queue.
        task.claimed_by, task.claim_expires_at = None, None
        task.save(update_fields=["claimed_by", "claim_expires_at"])
        audit_record(**decided)
        return record
    _close(task, ReviewTask.Status.APPROVED, now)
    edits = [a for a in approvals if a.decision == ReviewDecision.Decision.EDIT]
    run_resume(
        run=task.run,
        output=edits[-1].edited_output if edits else None,  # None: the gate's output as held
        decision={
            "outcome": "edited" if edits else "approved",
            "review_task": task.pk,
            "approvers": [a.reviewer.get_username() for a in approvals],
            "decisions": [a.pk for a in approvals],
            # Who, how and when, as the run records it: a PDF report states them, and replay rebuilds it from here.
            "approvals": [
                {
                    "reviewer": a.reviewer.get_username(),
                    "decision": a.decision,
                    "at": a.created_at.astimezone(UTC).isoformat(),
                }
                for a in approvals
            ],
        },
        actor=actor,
        record_first=[decided],
    )
    return record


def undo_seconds() -> int:
    """How long an approval may be taken back; read per use (a test shortens it)."""
    return int(getattr(settings, "KEEL_REVIEW_UNDO_SECONDS", 10))


@transaction.atomic
def review_approval_hold(*, task: ReviewTask, actor, now=None) -> PendingApproval:
    """Press approve: refuse now whatever review_decide would refuse, then
    keep the approval as a PendingApproval for the undo window, holding the
    actor's claim over it so that no one else decides meanwhile. Nothing
    reaches the run or the decisions until reviews_approvals_finalize writes
    it; the finalizing task is enqueued for the window's end."""
    now = now or timezone.now()
    _require_reviewer(actor, task)
    task = _lock(task)
    _check_decision(task, actor, ReviewDecision.Decision.APPROVE, "", now)
    due = now + timedelta(seconds=undo_seconds())
    pending = PendingApproval.objects.create(task=task, reviewer=actor, created_at=now, due_at=due)
    # The claim outlasts the window, so the finalizer decides under the actor's own claim.
    task.claimed_by, task.claim_expires_at = actor, max(task.claim_expires_at or now, due + _claim_period())
    task.save(update_fields=["claimed_by", "claim_expires_at"])
    _event(task, "review.approval_pending", {"due_at": due.isoformat(), "pending_id": pending.pk}, actor=actor)
    # By name (services never import tasks); a broker that is down only delays it to beat's next sweep.
    enqueue_on_commit("reviews.finalize_approvals", countdown=undo_seconds() + 1, on_failure=lambda error: None)
    return pending


@transaction.atomic
def review_approval_undo(*, task: ReviewTask, actor, now=None) -> ReviewTask:
    """Take back one's pending approval within its window. The row is
    deleted by a conditional DELETE: if the finalizer took it first (or the
    window has closed), nothing is undone and the approval stands."""
    now = now or timezone.now()
    _require_reviewer(actor, task)
    task = _lock(task)
    undone, _ = PendingApproval.objects.filter(task=task, reviewer=actor, due_at__gt=now).delete()
    if not undone:
        raise ValidationError("Too late to undo: the approval was already recorded (or there was none).")
    _event(task, "review.approval_undone", {}, actor=actor)
    return task


def reviews_approvals_finalize(*, now=None) -> list[int]:
    """Write every pending approval whose undo window has closed, each in its
    own transaction: delete the row (whoever deletes it acts, so an undo and
    two finalizers never both do) and record it through review_decide, which
    resumes the run. An approval that can no longer be recorded (the task was
    decided otherwise, the right withdrawn) is dropped with an audit event
    saying why. Returns the ids of the decisions written."""
    now = now or timezone.now()
    written = []
    due = PendingApproval.objects.filter(due_at__lte=now).order_by("due_at", "pk")
    for pending in due.select_related("task", "task__pipeline", "reviewer"):
        # One permission answer per approval, as a request has (run_resume asks again).
        with permission_cache(), transaction.atomic():
            taken, _ = PendingApproval.objects.filter(pk=pending.pk).delete()
            if not taken:
                continue  # undone, or another finalizer took it
            try:  # review_decide's own atomic block is a savepoint here: a refusal undoes only it
                record = review_decide(
                    task=pending.task, actor=pending.reviewer, decision=ReviewDecision.Decision.APPROVE, now=now
                )
            except (ValidationError, PermissionDenied) as error:
                message = " ".join(error.messages) if isinstance(error, ValidationError) else str(error)
                _event(pending.task, "review.approval_dropped", {"error": message}, actor=pending.reviewer)
                continue
            written.append(record.pk)
    return written


def _close(task: ReviewTask, status: str, now) -> None:
    task.status, task.decided_at = status, now
    task.claimed_by, task.claim_expires_at = None, None
    task.save(update_fields=["status", "decided_at", "claimed_by", "claim_expires_at"])
    review_queue_counts_changed()


@transaction.atomic
def review_qa_record(*, task: ReviewTask, actor, verdict: str, category: str = "", note: str = "", now=None):
    """Mark a sampled output correct or incorrect. Never blocks anything: the
    run went on when the gate passed it."""
    now = now or timezone.now()
    if verdict not in (ReviewDecision.Decision.CORRECT, ReviewDecision.Decision.INCORRECT):
        raise ValidationError({"verdict": "Choose correct or incorrect."})
    category, note = (category or "").strip(), (note or "").strip()
    if verdict == ReviewDecision.Decision.INCORRECT and not category:
        raise ValidationError({"category": "Say what kind of error it is."})
    _require_reviewer(actor, task)
    task = _lock(task)
    if task.is_blocking:
        raise ValidationError("This review holds a run: approve, edit or reject it.")
    if task.status != ReviewTask.Status.OPEN:
        raise ValidationError("This sample was already reviewed; your verdict was not recorded.")
    record = ReviewDecision.objects.create(
        task=task, reviewer=actor, decision=verdict, category=category, reason=note, created_at=now
    )
    _close(task, ReviewTask.Status.REVIEWED, now)
    _event(task, "review.qa_recorded", {"verdict": verdict, "category": category, "note": note}, actor=actor)
    return record


def _escalate_one(task_id: int, *, level: int, now) -> ReviewTask | None:
    """Move one overdue task to ``level`` if no one else has (a conditional
    UPDATE), with its audit event; the mail goes out after the commit."""
    with transaction.atomic():
        won = ReviewTask.objects.filter(pk=task_id, status=ReviewTask.Status.OPEN, escalation_level=level - 1).update(
            escalation_level=level, escalated_at=now
        )
        if not won:
            return None
        task = ReviewTask.objects.select_related("pipeline", "pipeline__owner").get(pk=task_id)
        _event(task, "review.escalated", {"level": level, "to": _escalation_address(task, level)})
    return task


def _escalation_address(task: ReviewTask, level: int) -> str:
    if level == 1 and task.pipeline.escalation_contact:
        return task.pipeline.escalation_contact
    return task.pipeline.owner.email


def reviews_escalate(*, now=None) -> list[int]:
    """Escalate open blocking reviews past their deadline: the pipeline's
    escalation contact first, the pipeline's owner after the second deadline.
    Escalation only tells people; an overdue review is never approved by it."""
    now = now or timezone.now()
    escalated = []
    open_tasks = ReviewTask.objects.filter(
        status=ReviewTask.Status.OPEN, kind__in=ReviewTask.BLOCKING, run__status=Run.Status.WAITING_REVIEW
    )
    due = [
        *((pk, 1) for pk in open_tasks.filter(escalation_level=0, deadline_at__lt=now).values_list("pk", flat=True)),
        *(
            (pk, 2)
            for pk in open_tasks.filter(escalation_level__lt=2, second_deadline_at__lt=now).values_list("pk", flat=True)
        ),
    ]
    for task_id, level in sorted(due):
        if level == 2 and ReviewTask.objects.filter(pk=task_id, escalation_level=0).exists():
            continue  # reaches level 1 first (in this same pass) and level 2 on the next
        task = _escalate_one(task_id, level=level, now=now)
        if task is None:
            continue
        address = _escalation_address(task, level)
        try:
            send_mail(
                subject=f"[Keel] Review {task.pk} of {task.pipeline.name} is overdue",
                message=(
                    f"Run {task.run_id} of {task.pipeline.name} has waited for review since "
                    f"{task.created_at:%Y-%m-%d %H:%M} UTC; its deadline was {task.deadline_at:%Y-%m-%d %H:%M} UTC.\n"
                    f"It is not approved automatically. Open it: /review/tasks/{task.pk}/\n"
                ),
                from_email=None,
                recipient_list=[address],
            )
        except Exception as error:  # noqa: BLE001 - any mail failure: undo the level so the next beat retries
            logger.exception("Escalation mail for review %s failed", task.pk)
            with transaction.atomic():
                ReviewTask.objects.filter(pk=task.pk, escalation_level=level).update(escalation_level=level - 1)
                _event(task, "review.escalation_failed", {"level": level, "error": str(error)})
            continue
        escalated.append(task.pk)
    return escalated


def reviews_sample_draw(*, pipeline: Pipeline, since, until, size: int, seed: int | None = None, actor=None):
    """Copy a fixed-size random sample of the pipeline's passed outputs in
    [since, until) into QA reviews. The seed is recorded, so the draw can be
    repeated: the same seed over the same runs picks the same ones."""
    if size < 1:
        raise ValidationError({"size": "The sample size must be at least 1."})
    seed = secrets.randbits(63) if seed is None else seed
    gates = (
        StepRun.objects.filter(
            run__pipeline=pipeline, kind="gate", status=StepRun.Status.COMPLETED,
            run__created_at__gte=since, run__created_at__lt=until, decision__passed=True,
        )
        .exclude(run__review_tasks__kind=ReviewTask.Kind.QA_SAMPLE)
        .order_by("run_id", "position")
        .values_list("run_id", "position", "decision")
    )  # fmt: skip
    candidates = [(run_id, position, decision) for run_id, position, decision in gates if "review" not in decision]
    chosen = random.Random(seed).sample(candidates, min(size, len(candidates)))
    tasks = []
    with transaction.atomic():
        for run_id, position, decision in sorted(chosen, key=lambda c: (c[0], c[1])):
            run = Run.objects.select_related("release").get(pk=run_id)
            tasks.append(
                review_task_create(
                    run=run,
                    position=position,
                    decision=decision,
                    kind=ReviewTask.Kind.QA_SAMPLE,
                    sample_seed=seed,
                    actor=actor,
                )  # fmt: skip
            )
        audit_record(
            action="review.sample_drawn",
            object_type="pipeline",
            object_id=pipeline.pk,
            payload={
                "seed": str(seed),  # 63 bits: past I-JSON's integers, so recorded as a string
                "since": since.isoformat(),
                "until": until.isoformat(),
                "size": size,
                "candidates": len(candidates),
                "runs": [t.run_id for t in tasks],
            },  # fmt: skip
            workspace_id=pipeline.workspace_id,
            pipeline_id=pipeline.pk,
            actor=actor,
        )
    return seed, tasks


@transaction.atomic
def review_settings_set(*, pipeline: Pipeline, minutes_per_item: int, actor):
    """Set the minutes a person would spend per item (the metrics' time saved):
    the pipeline's owner's estimate, so the owner alone sets it (an active
    user; the owner is changed on the pipeline)."""
    if actor is None or not getattr(actor, "is_active", False) or pipeline.owner_id != actor.pk:
        raise PermissionDenied("Only the pipeline's owner sets the minutes per item.")
    if isinstance(minutes_per_item, bool) or not isinstance(minutes_per_item, int) or not 0 <= minutes_per_item <= 600:
        raise ValidationError({"minutes_per_item": "Give whole minutes from 0 to 600."})
    settings_row, _ = PipelineReviewSettings.objects.select_for_update().get_or_create(pipeline=pipeline)
    previous = settings_row.minutes_per_item
    settings_row.minutes_per_item = minutes_per_item
    settings_row.save(update_fields=["minutes_per_item", "updated_at"])
    audit_record(
        action="review_settings.changed",
        object_type="pipeline",
        object_id=pipeline.pk,
        payload={"minutes_per_item": minutes_per_item, "previous": previous},
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return settings_row
