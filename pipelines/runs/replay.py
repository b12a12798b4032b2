"""Exact replay: re-execute a past run from its release snapshot and its
recordings, and check every step's output against the audit chain.

Replay is read-only. Model steps get their recorded responses back instead of
calling a model (``live=True`` calls the providers again and shows what changed),
and delivery steps get their recorded decision without sending anything. The
chain is the source of truth: a StepRun edited in the database no longer
matches the hashes its events carry.
"""

import copy
import difflib
import functools
import hashlib
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.db import transaction

from audit.canonical import canonical_bytes
from audit.models import AuditEvent
from pipelines.delivery.reports import report_build
from pipelines.models import Run, StepRun
from pipelines.providers import ModelRequest, ModelResponse, ProviderError, cost_of
from pipelines.providers import call_model as live_call_model
from pipelines.runs.documents import DocumentRefused, run_first_document
from pipelines.runs.engine import derive_seed
from pipelines.steps import execute_step
from pipelines.steps.base import StepContext, StepError
from pipelines.steps.model import request_record

RUN_EVENTS = ("run.started", "step.completed", "step.failed", "run.completed")


@dataclass(frozen=True)
class StepReplay:
    position: int
    name: str
    kind: str
    recorded_sha256: str  # from the step's step.completed event ("" when it failed)
    replayed_sha256: str  # "" when the replayed step failed
    match: bool
    reason: str = ""  # why it diverged; what was compared when it matched a failure
    diff: str = ""  # when the output hash differs: the stored output against the replayed one, a unified diff


@dataclass
class ReplayReport:
    run_id: int
    live: bool
    steps: list[StepReplay] = field(default_factory=list)
    # Divergences of the run itself: its input, seed or final output against the chain.
    problems: list[str] = field(default_factory=list)
    # Steps not replayed because the run has not finished them yet.
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and all(step.match for step in self.steps)


class _Unrecorded(Exception):
    """Replay asked for a model response that was never recorded."""


def _sha256(value) -> str:
    return hashlib.sha256(canonical_bytes(value)).hexdigest()


def _response(request: ModelRequest, recording: dict) -> ModelResponse:
    """The recorded answer as a ModelResponse: both providers record an
    OpenAI-shaped chat.completion, so text and tokens are read from it."""
    body = recording["response_body"]
    usage = body.get("usage") or {}
    input_tokens, output_tokens = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return ModelResponse(
        text=body["choices"][0]["message"]["content"],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost=cost_of(request, input_tokens, output_tokens),
        request_body=recording.get("request_body") or {},
        response_body=body,
        attempts=tuple(recording.get("attempts") or ()),
    )


class _Recorded:
    """``call_model`` for replay: the step's recorded responses, in order,
    noting every request that differs from the one recorded."""

    def __init__(self, recordings: list[dict]):
        self.recordings = list(recordings)
        self.used = 0
        self.divergences: list[str] = []

    def __call__(self, request: ModelRequest) -> ModelResponse:
        if self.used >= len(self.recordings):
            raise _Unrecorded(f"model call {self.used + 1} was never recorded ({len(self.recordings)} recorded)")
        recording = self.recordings[self.used]
        self.used += 1
        sent, recorded = request_record(request), recording.get("request") or {}
        changed = sorted(key for key in sent.keys() | recorded.keys() if sent.get(key) != recorded.get(key))
        if changed:
            self.divergences.append(
                f"model call {self.used}: the request differs from the recorded one in {', '.join(changed)}"
            )
        if "error" in recording:  # the call failed: the failure is what was learned from outside
            raise ProviderError(recording["error"], transient=bool(recording.get("transient")))
        return _response(request, recording)

    def unused(self) -> list[str]:
        left = len(self.recordings) - self.used
        return [f"{left} recorded model call(s) were not made again"] if left else []


def _failure_replay(recordings: list[dict], recorded_error: str):
    """``call_model`` for a step that failed at its provider: the failure is
    what was learned from outside, so replay raises it again. Steps recorded
    since failed calls were kept raise it from their recording; for older
    ones the error is read from the StepRun's message."""
    recorded = _Recorded(recordings)
    prefix = "model call failed: "

    def call(request: ModelRequest) -> ModelResponse:
        if recorded.used < len(recorded.recordings) or not recorded_error.startswith(prefix):
            return recorded(request)
        raise ProviderError(recorded_error.removeprefix(prefix), transient=False)

    return call, recorded


def _pretty(value) -> list[str]:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _diff(before, after) -> str:
    return "\n".join(difflib.unified_diff(_pretty(before), _pretty(after), "recorded", "replayed", lineterm="", n=2))


def _run_events(run_ids: list[int]) -> dict[int, list[tuple[str, str]]]:
    """(action, payload) of the replay-relevant events of each run, in chain order: one query for many runs."""
    events: dict[int, list[tuple[str, str]]] = {run_id: [] for run_id in run_ids}
    rows = AuditEvent.objects.filter(object_type="run", object_id__in=[str(i) for i in run_ids], action__in=RUN_EVENTS)
    for object_id, action, payload in rows.order_by("seq").values_list("object_id", "action", "payload"):
        events[int(object_id)].append((action, payload))
    return events


def _events_by_position(rows: list[tuple[str, str]]) -> tuple[dict, dict, dict, dict | None]:
    """The run's started event payload, its last step.completed and
    step.failed payloads per position, and its run.completed payload."""
    started, completed, failed, finished = None, {}, {}, None
    for action, payload in rows:
        data = json.loads(payload)  # a redacted payload reads as {"redacted": ...}, with no hash: a divergence
        if action == "run.started":
            started = data
        elif action == "run.completed":
            finished = data
        elif action == "step.completed":
            completed[data.get("position")] = data
        else:
            failed[data.get("position")] = data
    return started or {}, completed, failed, finished


def _run_problems(run: Run, started: dict, first_step: StepRun | None, first_document: dict | None) -> list[str]:
    problems = []
    input_sha256 = _sha256(run.input)
    if started.get("input_sha256") != input_sha256:
        problems.append("the run's input does not hash to the input_sha256 of its run.started event")
    if run.input_sha256 != input_sha256:
        problems.append("the run's input_sha256 is not the hash of its input")
    if started.get("fingerprint") != run.release.fingerprint:
        problems.append("the run's release is not the one its run.started event names")
    if run.seed != derive_seed(run.release.fingerprint, run.input_sha256):
        problems.append("the run's seed is not the one derived from its release and input")
    if first_step is not None and first_document is None:
        problems.append("the run's steps began, but its PDF has no text on record")
    elif first_step is not None and _sha256(first_step.input) != _sha256(first_document):
        problems.append("the first step's input is not the run's input")
    return problems


def _replay_step(step_run: StepRun, step: dict, document: dict, ctx_fields: dict, events: tuple, live: bool):
    """Replay one step; returns (its StepReplay, the replayed output or None)."""
    _, completed, failed, _ = events
    position = step_run.position
    if live:
        call, recorded = live_call_model, None
    elif step_run.status == StepRun.Status.FAILED:
        call, recorded = _failure_replay(step_run.recordings or [], step_run.error)
    else:
        recorded = _Recorded(step_run.recordings or [])
        call = recorded
    decision = copy.deepcopy(step_run.decision)
    ctx = StepContext(
        step_position=position,
        step=step,
        call_model=call,
        deliver=lambda config, doc: copy.deepcopy(decision),  # the recorded decision: never send again
        report=functools.partial(report_build, run_id=step_run.run_id, position=position),  # rebuilt, to compare
        **ctx_fields,
    )
    chain = completed.get(position) or {}
    row = {"position": position, "name": step["name"], "kind": step["kind"]}
    reasons: list[str] = []
    if (step_run.name, step_run.kind) != (step["name"], step["kind"]):
        reasons.append(f"the StepRun is {step_run.kind} {step_run.name!r}, the release has another step here")
    try:
        result = execute_step(step["kind"], copy.deepcopy(document), ctx)
    except _Unrecorded as error:
        return StepReplay(**row, recorded_sha256=chain.get("output_sha256", ""), replayed_sha256="", match=False,
                          reason="; ".join([*reasons, str(error)])), None  # fmt: skip
    except StepError as error:
        # A step that failed must fail again, with the error the chain recorded.
        recorded_error = (failed.get(position) or {}).get("error")
        if step_run.status != StepRun.Status.FAILED:
            reasons.append(f"replay failed where the run did not: {error}")
        elif str(error) != recorded_error or str(error) != step_run.error:
            reasons.append(f"failed with {str(error)!r}, the chain recorded {recorded_error!r}")
        if recorded is not None:
            reasons += recorded.divergences
        match = not reasons
        return StepReplay(**row, recorded_sha256="", replayed_sha256="", match=match,
                          reason="; ".join(reasons) or f"failed again as recorded: {error}"), None  # fmt: skip
    if step["kind"] == "gate" and "review" in (step_run.decision or {}):
        reasons += _reviewed_gate(step_run, result)
    replayed = _sha256(result.output)
    if step_run.status == StepRun.Status.FAILED:
        reasons.append("the run failed at this step; replay did not")
    elif not chain:
        reasons.append("no step.completed event in the chain for this step")
    else:
        if replayed != chain.get("output_sha256"):
            reasons.append("output hash differs from the chain")
        if step_run.output_sha256 != chain.get("output_sha256"):
            reasons.append("the StepRun's output_sha256 differs from the chain")
        if _sha256(step_run.output) != chain.get("output_sha256"):
            reasons.append("the StepRun's stored output does not hash to the chain's")
        if _sha256(result.decision) != _sha256(chain.get("decision")):
            reasons.append("decision differs from the chain")
    if recorded is not None:
        reasons += recorded.divergences + recorded.unused()
    diff = _diff(step_run.output, result.output) if replayed != chain.get("output_sha256") else ""
    return StepReplay(**row, recorded_sha256=chain.get("output_sha256", ""), replayed_sha256=replayed,
                      match=not reasons, reason="; ".join(reasons), diff=diff), result.output  # fmt: skip


def _reviewed_gate(step_run: StepRun, result) -> list[str]:
    """A gate a person decided: its output is the approved one recorded on the
    StepRun (what was learned from outside, like a model's response), and its
    decision the gate's verdict with the review beside it. The replayed gate
    must have been shown the output the reviewer saw."""
    review = step_run.decision["review"]
    reasons = []
    if _sha256(result.output) != review.get("original_sha256"):
        reasons.append("the replayed gate's input is not the output the reviewer saw")
    if _sha256(step_run.output) != review.get("output_sha256"):
        reasons.append("the StepRun's stored output is not the one the reviewer approved")
    result.output = copy.deepcopy(step_run.output)
    result.decision = {**(result.decision or {}), "review": copy.deepcopy(review)}
    return reasons


def run_replay(run: Run, *, live: bool = False) -> ReplayReport:
    """Re-execute the steps a run reached and compare each with the chain.

    1. Check the run's input, seed and release against its run.started event.
    2. Replay its StepRuns in position order from the run's input, each step
       fed the previous replayed output, stopping where the run stopped (a
       failed step, a gate that held, a step not finished yet).
    3. Compare each output hash with the step's step.completed event and its
       StepRun, and a completed run's final output with run.completed.

    Everything happens in a transaction that is rolled back: replay writes
    nothing, even should a step kind ever try to.
    """
    (report,) = runs_replay([run], live=live)
    return report


def runs_replay(runs: Iterable[Run], *, live: bool = False, chunk: int = 200) -> Iterator[ReplayReport]:
    """``run_replay`` for many runs: each chunk's steps and events are read
    with one query apiece, inside one transaction that is rolled back."""
    runs = iter(runs)
    while batch := list(itertools.islice(runs, chunk)):
        with transaction.atomic():
            ids = [run.pk for run in batch]
            step_runs: dict[int, list[StepRun]] = {run_id: [] for run_id in ids}
            for step_run in StepRun.objects.filter(run_id__in=ids).order_by("run_id", "position"):
                step_runs[step_run.run_id].append(step_run)
            events = _run_events(ids)
            reports = [_replay(run, step_runs[run.pk], events[run.pk], live=live) for run in batch]
            transaction.set_rollback(True)
        yield from reports


def _replay(run: Run, step_runs: list[StepRun], event_rows: list[tuple[str, str]], *, live: bool) -> ReplayReport:
    snapshot = run.release.snapshot_data
    steps = {step["position"]: step for step in snapshot["steps"]}
    events = _events_by_position(event_rows)
    started, _, _, finished = events
    try:  # an uploaded PDF's text, as extracted when the run began (never again here)
        document: dict | None = copy.deepcopy(run_first_document(run, extract=False))
    except DocumentRefused:
        document = None
    first_step = next(iter(step_runs), None)
    report = ReplayReport(run_id=run.pk, live=live, problems=_run_problems(run, started, first_step, document))
    ctx_fields = {
        "run_id": run.pk,
        "pipeline_slug": run.pipeline.slug,
        "seed": run.seed,
        "policy": snapshot["approval_policy"],
        "input_schema": snapshot["input_schema"],
        "source": run.source,
        "workspace_id": run.pipeline.workspace_id,
    }
    for expected, step_run in enumerate(step_runs if document is not None else [], start=1):
        if step_run.position != expected or step_run.position not in steps:
            report.problems.append(f"step {step_run.position} is out of place: the release has no such step here")
            break
        if step_run.status == StepRun.Status.RUNNING:
            report.note = f"step {step_run.position} has not finished: not replayed"
            break
        replayed, document = _replay_step(step_run, steps[step_run.position], document, ctx_fields, events, live)
        report.steps.append(replayed)
        if document is None or step_run.status != StepRun.Status.COMPLETED:
            break  # where the run stopped (a failure or a held gate), or where replay could not go on
    if not step_runs:
        report.note = "the run has no steps yet: nothing to replay"
    if finished is not None and document is not None and len(report.steps) == len(steps):
        if _sha256(document) != finished.get("output_sha256"):
            report.problems.append("the replayed final output differs from the run.completed event's")
    elif finished is not None and report.ok:
        report.problems.append("the run completed but replay did not reach its end")
    return report
