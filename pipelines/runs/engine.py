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
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from audit.canonical import canonical_bytes
from audit.queries import insert_dicts
from audit.services import audit_append
from config.logcontext import log_context_bind
from config.observability.instruments import step_observed
from governance.permissions import user_can
from pipelines.broker import enqueue, enqueue_on_commit, waiting_messages
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.reports import report_build
from pipelines.delivery.webhooks import delivery_send
from pipelines.models import Deployment, Pipeline, Release, Run, StepRun
from pipelines.providers import call_model
from pipelines.queries import deployment_read, insert_one, insert_statement, run_load, run_update, step_update
from pipelines.releases.canary import deployment_release_for
from pipelines.runs.budgets import budget_assess, budget_hold
from pipelines.runs.documents import DocumentRefused, run_first_document
from pipelines.runs.inputs import input_canonical
from pipelines.signals import run_held, run_sampled
from pipelines.steps import SchemaValidator, execute_step, run_input_check, step_does_io
from pipelines.steps.base import StepContext, StepError, StepResult

logger = logging.getLogger(__name__)

# The task that executes a run (pipelines/tasks/runs.py), sent by name: services never import tasks.
RUN_TASK = "pipelines.execute_run"


def _lease() -> timedelta:
    # How long a claimed run is a worker's before recovery may take it back;
    # read per use so that a test (or an operator) can shorten it.
    return timedelta(seconds=settings.KEEL_RUN_LEASE_SECONDS)


MAX_TRANSIENT_ATTEMPTS = 3


def _max_attempts() -> int:
    return settings.KEEL_RUN_MAX_ATTEMPTS


class RunRefused(Exception):
    """A run cannot start: the pipeline is paused or has nothing live (HTTP 409)."""


def _sha256(value) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def derive_seed(fingerprint: str, input_sha256: str) -> int:
    """The seed rule: SHA-256 of the release fingerprint and the input hash,
    as a non-negative 63-bit integer (a model config's own seed overrides it)."""
    return int(hashlib.sha256(f"{fingerprint}:{input_sha256}".encode()).hexdigest()[:15], 16)


def _events(run: Run, action: str, payload: dict, actor=None, along: tuple[str, list] | None = None) -> None:
    # audit_append: nothing here reads the stored event back as a model instance.
    audit_append(
        [
            {
                "action": action,
                "object_type": "run",
                "object_id": run.pk,
                "payload": payload,
                "workspace_id": run.pipeline.workspace_id,
                "pipeline_id": run.pipeline_id,
                "actor": actor,
            }
        ],
        along=along,
    )


@functools.lru_cache(maxsize=256)
def input_validator(release_id: int, fingerprint: str) -> SchemaValidator:
    # Building a validator costs more than validating; a release's schema never changes.
    schema = Release.objects.get(pk=release_id, fingerprint=fingerprint).snapshot_data["input_schema"]
    return SchemaValidator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


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
    requested_by_id: int | None = None,
) -> tuple[Run, bool]:
    """Start a run of the pipeline's live release; returns (run, created).

    1. A repeated idempotency key returns the run it started.
    2. Refuse without a live deployment, or while paused (RunRefused); pick
       the canary's release or the live one (the bucket rule).
    3. Validate the input against the release's input schema.
    4. Create the run and its ``run.started`` event; enqueue it on commit.

    ``requested_by_id``: the person who asked for the run when that is not the
    actor (a token's creator, the token acting as a service account); the
    run's requester is the actor otherwise.
    """
    if actor is not None and getattr(actor, "is_authenticated", False) and not user_can(actor, "change", pipeline):
        raise PermissionDenied("Starting a run needs the change right on the pipeline.")

    deployment, budgeted, earlier_id, run_id = deployment_read(pipeline, environment, idempotency_key)
    if idempotency_key:
        if deployment is None:
            # Without a deployment row the earlier run had nowhere to ride: ask on its own.
            earlier = Run.objects.filter(pipeline=pipeline, idempotency_key=idempotency_key).order_by()
            earlier_id = next(iter(earlier.values_list("pk", flat=True)[:1]), None)
        if earlier_id is not None:
            return Run.objects.get(pk=earlier_id), False
    if deployment is None or deployment.release is None:
        raise RunRefused(f"{pipeline.slug} has no live release in {environment}.")
    if deployment.paused:
        raise RunRefused(f"{pipeline.slug} is paused in {environment}: {deployment.pause_reason or 'no reason given'}")
    if not isinstance(input, dict):
        raise ValidationError({"input": "The input must be a JSON object."})
    input = input_canonical(input)  # once, on arrival: what is stored is what is hashed (pipelines/runs/inputs.py)
    run_input_check(input)  # a size no step could take (KEEL_STEP_INPUT_MAX_BYTES)
    # The canary bucket (pipelines/releases/): by the idempotency key, else the input hash.
    input_sha256 = _sha256(input)
    release = deployment_release_for(
        deployment, pipeline_slug=pipeline.slug, key=idempotency_key or input_sha256, source=source
    )
    validator = input_validator(release.pk, release.fingerprint)
    problems = sorted(
        f"input.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}".replace("input.:", "input:")
        for e in validator.iter_errors(input)
    )
    if problems:
        raise ValidationError({"input": problems})
    try:
        with transaction.atomic():
            # The budgets are read before run.started takes the audit-chain lock
            # (held until commit, by every audited write): only the writes they
            # call for, if any, follow the event.
            budgets = budget_assess(pipeline=pipeline) if budgeted else None
            run = Run(
                pk=run_id,
                pipeline=pipeline,
                release=release,
                environment=environment,
                input=input,
                input_sha256=input_sha256,
                source=source,
                trigger=trigger,
                actor=actor if getattr(actor, "is_authenticated", False) else None,
                requested_by_id=requested_by_id or (actor.pk if getattr(actor, "is_authenticated", False) else None),
                idempotency_key=idempotency_key or None,
                seed=derive_seed(release.fingerprint, input_sha256),
            )
            # With its id taken from the sequence (PostgreSQL), the run goes in
            # with its run.started event, one statement; otherwise first, for its id.
            along = insert_statement(run) if run_id is not None else None
            if along is None:
                insert_one(run)
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
                along=along,
            )
            # A run over a hard budget limit is held as failed, and not enqueued.
            run = budget_hold(run=run, assessment=budgets)
            if enqueue and run.status == Run.Status.QUEUED:  # False: the caller executes it (keel_demo --inline)
                run_enqueue_on_commit(run)
    except IntegrityError:
        # A concurrent start with the same key won the race: return its run.
        return Run.objects.get(pipeline=pipeline, idempotency_key=idempotency_key), False
    return run, True


def _document_before(run: Run, position: int) -> dict:
    if position == 1:
        return run_first_document(run)
    previous = StepRun.objects.get(run=run, position=position - 1, status=StepRun.Status.COMPLETED)
    return previous.output


class _LeaseLost(Exception):
    """The run was cancelled, or another worker took it over, since this one claimed it."""


class _Batch:
    """The steps a worker has executed since its last commit, recorded together.

    Steps that reach nothing outside the process are pure functions of what the
    run already holds, so recording each in transactions of its own buys
    nothing: if the worker dies first, they simply run again. They are kept
    here and written in one transaction (rows, lease renewal and audit events,
    the events last) whenever the run is about to reach outside — before a
    remote model call or a webhook, so no consumer ever sees an output that is
    not on the record — and when the run stops. The audit timestamps are those
    of that commit, which is when the steps became facts.
    """

    def __init__(self, run: Run, owner: str):
        self.run, self.owner = run, owner
        self.claimed = False
        self.counts = True  # whether the claim counts an attempt (not the one that gives up)
        self.fresh = not run.attempts  # never claimed before: nothing of it is on the record yet
        self.loaded_position = run.next_position
        self.began = timezone.now()
        # Attempts per position already on rows; a run never claimed before has none.
        self.attempts: dict[int, int] = (
            dict(StepRun.objects.filter(run=run, position__gte=run.next_position).values_list("position", "attempts"))
            if run.attempts
            else {}
        )
        self.stored = set(self.attempts)  # positions that have a row in the database
        self.counted: set[int] = set()  # positions whose attempt this execution has counted
        self.started: set[int] = set()  # positions whose start this execution has recorded
        self.rows: dict[int, dict] = {}  # position -> the StepRun's fields, in execution order
        self.events: list[dict] = []
        self.signals: list[tuple] = []  # (signal, kwargs) for the apps above, sent inside the commit
        self.next_position = run.next_position

    def event(self, action: str, payload: dict) -> None:
        run = self.run
        self.events.append({"action": action, "object_type": "run", "object_id": run.pk, "payload": payload,
                            "workspace_id": run.pipeline.workspace_id, "pipeline_id": run.pipeline_id})  # fmt: skip

    def start(self, step: dict, document: dict, *, at=None) -> None:
        position = self.attempt(step)
        self.started.add(position)
        self.rows[position] = {"name": step["name"], "kind": step["kind"], "input": document,
                               "status": StepRun.Status.RUNNING, "attempts": self.attempts[position],
                               "started_at": at or timezone.now(), "finished_at": None, "error": ""}  # fmt: skip
        self.event("step.started", {"position": position, "name": step["name"], "kind": step["kind"]})

    def attempt(self, step: dict) -> int:
        """Count an attempt at the step (once, however its start is recorded)."""
        position = step["position"]
        if position not in self.counted:
            self.attempts[position] = self.attempts.get(position, 0) + 1
            self.counted.add(position)
        return position

    def complete(self, step: dict, document: dict, result: StepResult, *, began, held: bool) -> None:
        position = step["position"]
        if position not in self.started:  # a pure step: its start is recorded with its end
            self.start(step, document, at=began)
        output_sha256 = _sha256(result.output)
        self.rows.setdefault(position, {}).update(
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
            self.next_position = position + 1
        payload = {"position": position, "kind": step["kind"], "output_sha256": output_sha256,
                   "decision": result.decision}  # fmt: skip
        self.event("step.completed", payload)

    def fail(self, step: dict, document: dict, error: StepError, *, began, transient: bool) -> None:
        position = step["position"]
        if position not in self.started:
            self.start(step, document, at=began)
        self.rows.setdefault(position, {}).update(
            status=StepRun.Status.FAILED, error=str(error), recordings=error.recordings, finished_at=timezone.now()
        )
        self.event("step.failed", {"position": position, "error": str(error), "transient": transient})

    def commit(self, **run_fields) -> None:
        """Write what is pending in one transaction; ``run_fields`` end the run
        (status and the rest), else the lease is renewed. Raises _LeaseLost,
        writing nothing, when the run is no longer this worker's.

        The first commit also claims the run (a conditional UPDATE, so two
        workers never both win): a run of steps that stay inside the process
        needs a single transaction, and a worker that loses the race has only
        computed what the winner records."""
        now = timezone.now()
        if self.claimed:
            fields = {"lease_expires_at": now + _lease()}
        else:  # the claim also counts an attempt
            fields = {"status": Run.Status.RUNNING, "lease_owner": self.owner, "lease_expires_at": now + _lease(),
                      "started_at": self.began}  # fmt: skip
        count = self.counts and not self.claimed
        if self.next_position > self.loaded_position and self.run.attempts + count != 1:
            # The run has moved on: its attempts count the claims since then, this one.
            # (KEEL_RUN_MAX_ATTEMPTS bounds a run that is stuck, not a long one.)
            fields["attempts"], count = 1, False
        fields.update(run_fields, next_position=self.next_position)
        with transaction.atomic():
            if not run_update(self.run.pk, fields, claim=not self.claimed, count=count, owner=self.owner, now=now):
                raise _LeaseLost
            for position, step_fields in self.rows.items():
                if position in self.stored:
                    step_update(self.run.pk, position, step_fields)
            insert_dicts(StepRun, [{"run_id": self.run.pk, "position": p, **f}
                                   for p, f in self.rows.items() if p not in self.stored])  # fmt: skip
            if self.signals:
                self._apply(fields, count)  # handlers see the run as it is being committed
                for signal, kwargs in self.signals:
                    # A handler appends its own audit events after the run's:
                    # one take of the chain head records them all.
                    signal.send(sender=Run, run=self.run, events=self.events, fresh=self.fresh, **kwargs)
            audit_append(self.events)
        self.stored.update(self.rows)
        self.rows, self.events, self.signals = {}, [], []
        self._apply(fields, count)

    def _apply(self, fields: dict, count: bool = False) -> None:
        """The run as committed, without reading it back."""
        if not self.claimed:
            self.claimed = True
            self.run.attempts += count
        for name, value in fields.items():
            setattr(self.run, name, value)

    def finish(self, status: str, *, event: str, payload: dict, reason: str = "", output=None) -> None:
        finished_at = timezone.now() if status in Run.FINISHED else None
        self.event(event, payload)
        if finished_at is not None:  # the run's duration, for the metrics (audit_append's hints)
            self.events[-1]["hints"] = {"created_at": self.run.created_at, "finished_at": finished_at}
        self.commit(status=status, failure_reason=reason, output=output, lease_owner="", lease_expires_at=None,
                    finished_at=finished_at)  # fmt: skip


def _hand_back_connection() -> None:
    """Give the database connection back to its pool before an outside call
    (DATABASE_POOL_MAX_SIZE): the run holds no transaction until its next
    commit, so a thread waiting seconds on a model holds no connection either.
    Without a pool the connection is kept, as reconnecting costs more."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def run_execute(run_id: int, *, owner: str | None = None, call=call_model) -> Run | None:
    """Execute a run from its first step not yet completed. Returns the run,
    or None when another worker holds it (or it has finished).

    1. Load the run if no live worker holds it; the first commit claims its
       lease. A run claimed before is claimed at once, so that every attempt
       counts however it ends; one claimed KEEL_RUN_MAX_ATTEMPTS times
       without moving on fails instead.
    2. Execute its steps in order, each on the previous one's output (an
       uploaded PDF's text is extracted first). Before a step that reaches
       outside (step_does_io), commit what has run so far and the step's
       start, and after it its result: a crash never repeats a call whose
       answer is on the record. Everything else is committed together.
    3. A gate that holds, a failure, or the last step ends the run in the same
       transaction as the steps before it. An exception that is not a
       StepError is recorded as the step's failure and hands the run back.
    """
    owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
    run = run_load(run_id)
    if run is None:
        return None
    snapshot = run.release.snapshot_data
    steps = snapshot["steps"]
    batch = _Batch(run, owner)
    log_context_bind(run_id=run.pk, pipeline=run.pipeline.slug, workspace=run.pipeline.workspace_id)
    try:
        if run.attempts >= _max_attempts():
            return _give_up(batch, steps)
        if not batch.fresh:
            batch.commit()
        try:
            document = _document_before(run, run.next_position)
        except DocumentRefused as refused:
            batch.finish(Run.Status.FAILED, reason=str(refused), event="run.failed",
                         payload={"position": run.next_position, "error": str(refused)})  # fmt: skip
            return run
        for step in steps[run.next_position - 1 :]:
            position = step["position"]
            io = step_does_io(step)
            if io:
                batch.start(step, document)
                batch.commit()
                _hand_back_connection()
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
                deliver=functools.partial(_deliver, run_id=run.pk, position=position),
                report=functools.partial(report_build, run_id=run.pk, position=position),
                workspace_id=run.pipeline.workspace_id,
            )
            began = timezone.now()
            try:
                with step_observed(kind=step["kind"], position=position, pipeline=run.pipeline.slug,
                                   release=run.release.number):  # its span, duration and log context  # fmt: skip
                    result = execute_step(step["kind"], document, ctx)
                held = step["kind"] == "gate" and not (result.decision or {}).get("passed", True)
                batch.complete(step, document, result, began=began, held=held)
            except StepError as error:
                return _fail_step(batch, step, document, error, began=began)
            except _LeaseLost:
                raise
            except Exception as error:
                _fail_unexpectedly(batch, step, document, error, began=began)
                raise
            # reviews opens a review task (held) or a QA sample (passed but sampled) in the same commit.
            gate = {"position": position, "decision": result.decision}
            if held:
                batch.signals.append((run_held, gate))
            elif step["kind"] == "gate" and (result.decision or {}).get("sampled"):
                batch.signals.append((run_sampled, gate))
            if held:
                batch.finish(Run.Status.WAITING_REVIEW, event="run.waiting_review",
                             payload={"position": position, "reasons": result.decision.get("reasons", [])})  # fmt: skip
                return run
            if io and position < len(steps) and not step_does_io(steps[position]):
                batch.commit()  # the answer is on the record before anything else runs
            document = result.output
        batch.finish(Run.Status.COMPLETED, output=document, event="run.completed",
                     payload={"output_sha256": _sha256(document)})  # fmt: skip
    except _LeaseLost:
        return None  # cancelled, or the lease was lost to another worker: stop quietly
    return run


def _deliver(config: dict, document: dict, *, run_id: int, position: int) -> dict:
    """The deliver step's way out: a delivery that was not made is the step's failure."""
    try:
        return delivery_send(config, document, run_id=run_id, position=position)
    except DeliveryError as error:
        raise StepError(str(error), transient=error.transient) from error


def _fail_step(batch: _Batch, step: dict, document: dict, error: StepError, *, began) -> Run:
    """Record the failure with the steps before it. A transient error while
    attempts remain hands the run back to the queue and re-raises, so the task
    retries after a backoff; anything else fails the run."""
    run = batch.run
    batch.attempt(step)
    transient = error.transient and batch.attempts[step["position"]] < MAX_TRANSIENT_ATTEMPTS
    batch.fail(step, document, error, began=began, transient=transient)
    if transient:
        batch.commit(status=Run.Status.QUEUED, lease_owner="", lease_expires_at=None)
        raise error
    batch.finish(Run.Status.FAILED, reason=f"step {step['position']} ({step['name']}): {error}",
                 event="run.failed", payload={"position": step["position"], "error": str(error)})  # fmt: skip
    return run


def _fail_unexpectedly(batch: _Batch, step: dict, document: dict, error: Exception, *, began) -> None:
    """A step raised what no step should (a bug, a database error): record
    it as the step's failure and hand the run back to the queue, where a
    later attempt may succeed; the caller re-raises. Its attempt counts, so a
    run that keeps failing so ends failed (``_give_up``). If even the
    recording fails, the lease lapses and recovery counts the next claim."""
    logger.exception("Run %s, step %s: unexpected %s", batch.run.pk, step["position"], type(error).__name__)
    reason = f"unexpected error: {type(error).__name__}: {error}"[:2000]
    position = step["position"]
    batch.rows.pop(position, None)  # a half-recorded completion, if the error came while recording it
    if position not in batch.stored:  # a step inside the process: forget what of it is pending
        batch.started.discard(position)
        batch.events = [e for e in batch.events if e["payload"].get("position") != position]
    batch.attempt(step)
    try:
        batch.fail(step, document, StepError(reason), began=began, transient=True)
        batch.commit(status=Run.Status.QUEUED, lease_owner="", lease_expires_at=None)
    except Exception:  # noqa: BLE001 - the original error is the one to raise
        logger.exception("Run %s: the failure of step %s could not be recorded", batch.run.pk, step["position"])


def _give_up(batch: _Batch, steps: list[dict]) -> Run:
    """Fail a run claimed KEEL_RUN_MAX_ATTEMPTS times without moving on,
    with the last error of the step it is stuck at; this claim is not counted."""
    run = batch.run
    position = run.next_position
    last = StepRun.objects.filter(run=run, position=position).values_list("status", "error").first()
    reason = f"gave up after {run.attempts} attempts at step {position}"
    if position <= len(steps):
        reason += f" ({steps[position - 1]['name']})"
    if last and last[1]:
        reason += f"; the last error: {last[1]}"
    elif last:
        reason += "; the worker stopped during the step (killed, or out of time or memory)"
    reason = reason[:2000]
    if last and last[0] != StepRun.Status.FAILED:
        batch.rows[position] = {"status": StepRun.Status.FAILED, "error": reason, "finished_at": timezone.now()}
        batch.event("step.failed", {"position": position, "error": reason, "transient": False})
    batch.counts = False
    batch.finish(Run.Status.FAILED, reason=reason, event="run.failed",
                 payload={"position": position, "error": reason, "attempts": run.attempts})  # fmt: skip
    return run


def run_enqueue_on_commit(run: Run) -> None:
    """Send the run's task message once the transaction commits. If the
    broker cannot take it, the run is recorded as unsent (``send_failed_at``)
    and ``runs_resend`` sends it again: its creator is still told it was created."""
    enqueue_on_commit(RUN_TASK, run.pk, on_failure=functools.partial(_record_unsent, run.pk))


def _record_unsent(run_id: int, error: BaseException) -> None:
    # Bookkeeping of delivery, like the lease fields: no audit event. If the
    # database is away too, the run is still queued and unclaimed, and
    # runs_resend finds it once the broker's queue is empty.
    try:
        Run.objects.filter(pk=run_id, status=Run.Status.QUEUED).update(send_failed_at=timezone.now())
    except DatabaseError:
        logger.warning("Run %s: its message was not sent and could not be recorded as unsent", run_id)


def runs_resend(*, now=None) -> list[int]:
    """Send again the messages of queued runs the broker does not hold; returns their ids.

    1. Runs whose send failed (``send_failed_at``) at least
       KEEL_RUN_RESEND_AFTER_SECONDS ago.
    2. When no message waits on the broker's queue: runs never claimed and
       created at least that long ago. Their message is gone (a broker
       restarted without persistence loses what it held) or is in a worker's
       hands a moment before its claim; a second message for a run is
       harmless, as the claim is a conditional update that one worker wins.
    3. The first send that fails stops the round (the broker is away); the
       runs stay marked for the next.
    """
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.KEEL_RUN_RESEND_AFTER_SECONDS)
    due = Q(status=Run.Status.QUEUED, send_failed_at__lt=since)
    if waiting_messages() == 0:
        due |= Q(status=Run.Status.QUEUED, attempts=0, created_at__lt=since)
    sent = []
    for run_id in Run.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:1000]:
        if not enqueue(RUN_TASK, run_id, on_failure=functools.partial(_record_unsent, run_id)):
            break
        sent.append(run_id)
    Run.objects.filter(pk__in=sent, send_failed_at__isnull=False).update(send_failed_at=None)
    return sent


def run_lease_release(*, run_id: int, owner: str) -> bool:
    """Put a run ``owner`` still holds back in the queue (its worker lost the
    database mid-run and is about to try again); False if it holds none.

    Conditional on the owner, as the claim is, so a run another worker took
    meanwhile is left alone. No event: the run's steps are on the record as
    they were, and the next claim counts the attempt."""
    return bool(
        Run.objects.filter(pk=run_id, status=Run.Status.RUNNING, lease_owner=owner).update(
            status=Run.Status.QUEUED, lease_owner="", lease_expires_at=None
        )
    )


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
    sent = []
    for run_id in stale:
        if not enqueue(RUN_TASK, run_id, on_failure=functools.partial(_record_unsent, run_id)):
            break  # the broker is away: the next round tries again
        sent.append(run_id)
    return sent


@transaction.atomic
def run_cancel(*, run: Run, actor, reason: str) -> Run:
    """Stop a run that has not finished; a worker holding it stops after its current
    step. ``actor`` is a user with the deploy right on the run's pipeline."""
    if not user_can(actor, "deploy_pipeline", run.pipeline):
        raise PermissionDenied("Cancelling a run needs the deploy right on its pipeline.")
    return _run_stop(run=run, actor=actor, reason=reason)


@transaction.atomic
def run_expire(*, run: Run, reason: str, component: str = "retention") -> Run:
    """Cancel a run past its workspace's retention period: Keel applying the
    workspace's policy, recorded as the system component ``component``."""
    return _run_stop(run=run, actor=component, reason=reason)


def _run_stop(*, run: Run, actor, reason: str) -> Run:
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
    run_enqueue_on_commit(run)
    return Run.objects.get(pk=run.pk)
