"""The deterministic engine: start a run, execute it step by step under a
lease, recover runs whose worker died.

No transaction or lock is held across a step's execution (which may call a
model): each step is claimed, executed, then recorded in short transactions of
its own. A step's output is a function of its input document, its config from
the release snapshot and the run's seed, plus what it learned from outside,
which is recorded on its StepRun.
"""

import functools
import hashlib
import logging
import uuid
from datetime import timedelta

import jsonschema
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit.canonical import canonical_bytes
from audit.services import audit_record
from governance.permissions import user_can
from pipelines.deliveries import delivery_send
from pipelines.models import Deployment, Pipeline, Run, StepRun
from pipelines.providers import call_model
from pipelines.steps import execute_step
from pipelines.steps.base import StepContext, StepError

logger = logging.getLogger(__name__)


def _lease() -> timedelta:
    # How long a claimed run is a worker's before recovery may take it back;
    # read per use so that a test (or an operator) can shorten it.
    return timedelta(seconds=settings.KEEL_RUN_LEASE_SECONDS)


MAX_TRANSIENT_ATTEMPTS = 3


class RunRefused(Exception):
    """A run cannot start: the pipeline is paused or has nothing live (HTTP 409)."""


def _sha256(value) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def derive_seed(fingerprint: str, input_sha256: str) -> int:
    """The seed rule: SHA-256 of the release fingerprint and the input hash,
    as a non-negative 63-bit integer (a model config's own seed overrides it)."""
    return int(hashlib.sha256(f"{fingerprint}:{input_sha256}".encode()).hexdigest()[:15], 16)


def _events(run: Run, action: str, payload: dict, actor=None) -> None:
    audit_record(
        action=action,
        object_type="run",
        object_id=run.pk,
        payload=payload,
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=actor,
    )


def run_start(
    *,
    pipeline: Pipeline,
    input: dict,
    actor,
    trigger: str,
    source: str = "",
    idempotency_key: str | None = None,
    environment: str = Deployment.Environment.PRODUCTION,
    enqueue: bool = True,
) -> tuple[Run, bool]:
    """Start a run of the pipeline's live release; returns (run, created).

    1. A repeated idempotency key returns the run it started.
    2. Refuse without a live deployment, or while paused (RunRefused).
    3. Validate the input against the release's input schema.
    4. Create the run and its ``run.started`` event; enqueue it on commit.
    """
    if actor is not None and getattr(actor, "is_authenticated", False) and not user_can(actor, "change", pipeline):
        raise PermissionDenied("Starting a run needs the change right on the pipeline.")
    if idempotency_key:
        existing = Run.objects.filter(pipeline=pipeline, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    deployment = Deployment.objects.filter(pipeline=pipeline, environment=environment).select_related("release").first()
    if deployment is None or deployment.release is None:
        raise RunRefused(f"{pipeline.slug} has no live release in {environment}.")
    if deployment.paused:
        raise RunRefused(f"{pipeline.slug} is paused in {environment}.")
    release = deployment.release
    if not isinstance(input, dict):
        raise ValidationError({"input": "The input must be a JSON object."})
    validator = jsonschema.Draft202012Validator(
        release.snapshot_data["input_schema"], format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    problems = sorted(
        f"input.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}".replace("input.:", "input:")
        for e in validator.iter_errors(input)
    )
    if problems:
        raise ValidationError({"input": problems})
    input_sha256 = _sha256(input)
    try:
        with transaction.atomic():
            run = Run.objects.create(
                pipeline=pipeline,
                release=release,
                environment=environment,
                input=input,
                input_sha256=input_sha256,
                source=source,
                trigger=trigger,
                actor=actor if getattr(actor, "is_authenticated", False) else None,
                idempotency_key=idempotency_key or None,
                seed=derive_seed(release.fingerprint, input_sha256),
            )
            _events(
                run,
                "run.started",
                {
                    "release": release.number,
                    "fingerprint": release.fingerprint,
                    "input_sha256": input_sha256,
                    "trigger": trigger,
                    "source": source,
                    "environment": environment,
                },
                actor=actor,
            )
            # A run over a hard budget limit is held as failed (a worker then finds nothing to claim).
            from pipelines.budgets import budget_hold

            run = budget_hold(run=run)
            if enqueue:  # False: the caller executes the run itself (keel_demo --inline)
                from pipelines.tasks import run_execute_task

                run_execute_task.delay_on_commit(run.pk)
    except IntegrityError:
        # A concurrent start with the same key won the race: return its run.
        return Run.objects.get(pipeline=pipeline, idempotency_key=idempotency_key), False
    return run, True


def _claim(run_id: int, owner: str) -> Run | None:
    """Take the run's lease if it is free (queued, or running with an expired
    lease): a conditional UPDATE, so two workers never both win."""
    now = timezone.now()
    claimable = Q(status=Run.Status.QUEUED) | Q(status=Run.Status.RUNNING, lease_expires_at__lt=now)
    with transaction.atomic():
        won = Run.objects.filter(claimable, pk=run_id).update(
            status=Run.Status.RUNNING, lease_owner=owner, lease_expires_at=now + _lease(), started_at=now
        )
    return Run.objects.select_related("pipeline", "release").get(pk=run_id) if won else None


def _renew(run: Run, owner: str) -> bool:
    return bool(
        Run.objects.filter(pk=run.pk, lease_owner=owner, status=Run.Status.RUNNING).update(
            lease_expires_at=timezone.now() + _lease()
        )
    )


def _finish(run: Run, owner: str, status: str, *, reason: str = "", output=None, event: str, payload: dict) -> None:
    with transaction.atomic():
        Run.objects.filter(pk=run.pk, lease_owner=owner).update(
            status=status,
            failure_reason=reason,
            output=output,
            lease_owner="",
            lease_expires_at=None,
            finished_at=timezone.now() if status in Run.FINISHED else None,
        )
        _events(run, event, payload)


def _document_before(run: Run, position: int) -> dict:
    if position == 1:
        return dict(run.input)
    previous = StepRun.objects.get(run=run, position=position - 1, status=StepRun.Status.COMPLETED)
    return previous.output


def run_execute(run_id: int, *, owner: str | None = None, call=call_model) -> Run | None:
    """Execute a run from its first step not yet completed. Returns the run,
    or None when another worker holds it (or it has finished)."""
    owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
    run = _claim(run_id, owner)
    if run is None:
        return None
    snapshot = run.release.snapshot_data
    steps = snapshot["steps"]
    document = None
    for step in steps[run.next_position - 1 :]:
        position = step["position"]
        # Each step's input is the previous step's output, kept in memory as
        # replay keeps it; only a resumed run reads it back.
        document = _document_before(run, position) if document is None else document
        with transaction.atomic():
            step_run = _step_begin(run, step, document)
            _events(run, "step.started", {"position": position, "name": step["name"], "kind": step["kind"]})
        ctx = StepContext(
            run_id=run.pk,
            pipeline_slug=run.pipeline.slug,
            step_position=position,
            seed=run.seed,
            step=step,
            policy=snapshot["approval_policy"],
            input_schema=snapshot["input_schema"],
            call_model=call,
            source=run.source,
            deliver=functools.partial(delivery_send, run_id=run.pk, position=position),
        )
        try:
            result = execute_step(step["kind"], document, ctx)
        except StepError as error:
            return _fail_step(run, owner, step_run, error)
        output_sha256 = _sha256(result.output)
        held = step["kind"] == "gate" and result.decision is not None and not result.decision.get("passed", True)
        with transaction.atomic():
            StepRun.objects.filter(pk=step_run.pk).update(
                status=StepRun.Status.WAITING_REVIEW if held else StepRun.Status.COMPLETED,
                output=result.output,
                output_sha256=output_sha256,
                decision=result.decision,
                recordings=result.recordings,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                cost=result.cost,
                finished_at=timezone.now(),
            )
            if not held:
                Run.objects.filter(pk=run.pk).update(next_position=position + 1)
                # Renewed in the same commit: one fewer round trip and fsync per step.
                renewed = _renew(run, owner)
            _events(
                run,
                "step.completed",
                {
                    "position": position,
                    "kind": step["kind"],
                    "output_sha256": output_sha256,
                    "decision": result.decision,
                },
            )
        if held:
            _finish(run, owner, Run.Status.WAITING_REVIEW, event="run.waiting_review",
                    payload={"position": position, "reasons": result.decision.get("reasons", [])})  # fmt: skip
            return Run.objects.get(pk=run.pk)
        if not renewed:
            return None  # cancelled, or the lease was lost to another worker: stop quietly
        document = result.output
    final = StepRun.objects.get(run=run, position=steps[-1]["position"]) if steps else None
    output = final.output if final else run.input
    _finish(run, owner, Run.Status.COMPLETED, output=output, event="run.completed",
            payload={"output_sha256": _sha256(output)})  # fmt: skip
    return Run.objects.get(pk=run.pk)


def _step_begin(run: Run, step: dict, document: dict) -> StepRun:
    """The step's row, marked running with one more attempt: an UPDATE of the
    row a previous attempt left, else an INSERT (no SELECT ... FOR UPDATE and
    savepoints as update_or_create would take on every step)."""
    fields = {"name": step["name"], "kind": step["kind"], "input": document, "status": StepRun.Status.RUNNING,
              "started_at": timezone.now(), "error": ""}  # fmt: skip
    rows = StepRun.objects.filter(run=run, position=step["position"])
    if rows.update(attempts=F("attempts") + 1, **fields):
        return rows.get()
    return StepRun.objects.create(run=run, position=step["position"], attempts=1, **fields)


def _fail_step(run: Run, owner: str, step_run: StepRun, error: StepError) -> Run:
    step_run.refresh_from_db()
    transient = error.transient and step_run.attempts < MAX_TRANSIENT_ATTEMPTS
    with transaction.atomic():
        StepRun.objects.filter(pk=step_run.pk).update(
            status=StepRun.Status.FAILED, error=str(error), finished_at=timezone.now()
        )
        _events(run, "step.failed", {"position": step_run.position, "error": str(error), "transient": transient})
    if transient:
        # Hand the run back: the task retries it after a backoff.
        Run.objects.filter(pk=run.pk, lease_owner=owner).update(
            status=Run.Status.QUEUED, lease_owner="", lease_expires_at=None
        )
        raise error
    _finish(run, owner, Run.Status.FAILED, reason=f"step {step_run.position} ({step_run.name}): {error}",
            event="run.failed", payload={"position": step_run.position, "error": str(error)})  # fmt: skip
    return Run.objects.get(pk=run.pk)


def runs_recover(*, now=None) -> list[int]:
    """Runs whose worker died mid-run (lease expired) or that were never picked
    up go back on the queue; returns their ids."""
    now = now or timezone.now()
    stale = list(
        Run.objects.filter(
            Q(status=Run.Status.RUNNING, lease_expires_at__lt=now)
            | Q(status=Run.Status.QUEUED, created_at__lt=now - _lease())
        ).values_list("pk", flat=True)
    )
    from pipelines.tasks import run_execute_task

    for run_id in stale:
        run_execute_task.delay(run_id)
    return stale


@transaction.atomic
def run_cancel(*, run: Run, actor, reason: str) -> Run:
    """Stop a run that has not finished; a worker holding it stops after its current step."""
    if not user_can(actor, "deploy_pipeline", run.pipeline):
        raise PermissionDenied("Cancelling a run needs the deploy right on its pipeline.")
    if not (reason or "").strip():
        raise ValidationError({"reason": "Say why you are cancelling the run."})
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.is_finished:
        raise ValidationError(f"Run {run.pk} has already finished ({run.status}).")
    Run.objects.filter(pk=run.pk).update(
        status=Run.Status.CANCELLED, failure_reason=f"Cancelled: {reason}", lease_owner="", lease_expires_at=None,
        finished_at=timezone.now(),
    )  # fmt: skip
    _events(run, "run.cancelled", {"reason": reason, "previous_status": run.status}, actor=actor)
    return Run.objects.get(pk=run.pk)


@transaction.atomic
def run_retry(*, run: Run, actor) -> Run:
    """Put a failed run back on the queue; it resumes at the step that failed."""
    if not user_can(actor, "deploy_pipeline", run.pipeline):
        raise PermissionDenied("Retrying a run needs the deploy right on its pipeline.")
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status != Run.Status.FAILED:
        raise ValidationError(f"Only failed runs can be retried; run {run.pk} is {run.status}.")
    Run.objects.filter(pk=run.pk).update(status=Run.Status.QUEUED, failure_reason="", finished_at=None)
    _events(run, "run.retried", {"from_position": run.next_position}, actor=actor)
    from pipelines.tasks import run_execute_task

    run_execute_task.delay_on_commit(run.pk)
    return Run.objects.get(pk=run.pk)
