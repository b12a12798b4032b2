"""The evaluation gate: run a release over its pipeline's evaluation cases in a
sandbox and compare each result with production's release.

The sandbox executes the release snapshot with the engine's own step
functions (``execute_step``), seed rule and input validation, but writes no
run, step or delivery row: a deliver step's consumer is never called, a gate
that would hold ends the case instead of reaching a reviewer, and nothing
enters metrics or canary statistics, which count production runs. Cases run
on a worker (``evaluation_execute``, from the ``pipelines.evaluate_release``
task), never in a web request.
"""

import csv
import hashlib
import io
import json
from dataclasses import dataclass

from celery import signature
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from audit.canonical import canonical_bytes
from audit.services import audit_record
from governance.permissions import user_can
from pipelines.models import Deployment, Evaluation, EvaluationCase, EvaluationResult, Pipeline, Release, Run
from pipelines.providers import call_model
from pipelines.runs.engine import derive_seed, input_validator
from pipelines.runs.inputs import input_canonical
from pipelines.steps import SchemaValidator, execute_step
from pipelines.steps.base import StepContext, StepError

EVALUATION = "evaluation"
Comparison = EvaluationResult.Comparison


def case_check(case: EvaluationCase, output) -> list[str]:
    """What the output fails of the case's expectations ([] when it passes)."""
    if output is None:
        return ["the run produced no output"]
    failures = []
    text = json.dumps(output, ensure_ascii=False, sort_keys=True)
    lowered = text.casefold()
    if case.expected_label:
        label = output.get("label") if isinstance(output, dict) else None
        if label != case.expected_label:
            failures.append(f"label is {label!r}, expected {case.expected_label!r}")
    failures += [f"missing required phrase {p!r}" for p in case.required_phrases if p.casefold() not in lowered]
    failures += [f"contains forbidden phrase {p!r}" for p in case.forbidden_phrases if p.casefold() in lowered]
    if case.output_schema:
        validator = SchemaValidator(case.output_schema)
        failures += [f"schema: {e.message}" for e in validator.iter_errors(output)]
    if case.max_length is not None and len(text) > case.max_length:
        failures.append(f"output is {len(text)} characters, over the maximum {case.max_length}")
    return failures


@dataclass
class SandboxOutcome:
    output: dict | None
    error: str = ""
    held: bool = False


def _withheld(config: dict, document: dict) -> dict:
    return {"status": "withheld", "environment": EVALUATION, "delivery_id": None}


def sandbox_execute(release: Release, input: dict, *, call=call_model) -> SandboxOutcome:
    """Execute ``release`` on ``input`` as the engine would, keeping nothing."""
    problems = [e.message for e in input_validator(release.pk, release.fingerprint).iter_errors(input)]
    if problems:
        return SandboxOutcome(None, error="input: " + "; ".join(sorted(problems)))
    snapshot = release.snapshot_data
    seed = derive_seed(release.fingerprint, hashlib.sha256(canonical_bytes(input)).hexdigest())
    document = dict(input)
    for step in snapshot["steps"]:
        ctx = StepContext(
            run_id=0, pipeline_slug=snapshot["pipeline"]["slug"], step_position=step["position"], seed=seed,
            step=step, policy=snapshot["approval_policy"], input_schema=snapshot["input_schema"], call_model=call,
            source=EVALUATION, deliver=_withheld, workspace_id=snapshot["pipeline"]["workspace_id"],
        )  # fmt: skip
        try:
            result = execute_step(step["kind"], document, ctx)
        except StepError as error:
            return SandboxOutcome(None, error=f"step {step['position']} ({step['name']}): {error}")
        if step["kind"] == "gate" and result.decision is not None and not result.decision.get("passed", True):
            return SandboxOutcome(result.output, held=True)  # judged as the gate held it
        document = result.output
    return SandboxOutcome(document)


def case_run(release: Release, case: EvaluationCase, *, call=call_model) -> tuple[SandboxOutcome, list[str]]:
    outcome = sandbox_execute(release, case.input, call=call)
    return outcome, ([outcome.error] if outcome.error else case_check(case, outcome.output))


def _baseline_results(baseline: Release | None) -> dict[int, bool]:
    if baseline is None:
        return {}
    latest = baseline.evaluations.filter(status=Evaluation.Status.DONE).order_by("-created_at", "-pk").first()
    return dict(latest.results.values_list("case_id", "passed")) if latest else {}


EVALUATE_TASK = "pipelines.evaluate_release"


def release_evaluate(*, release: Release, actor) -> Evaluation:
    """Ask for an evaluation of ``release`` on its pipeline's cases: the
    Evaluation is made ``queued`` with its ``release.evaluation_requested``
    event, and a worker runs it (``evaluation_execute``) once this commits.
    No model is called in the caller. Refused without the change or approve
    right on the pipeline."""
    pipeline = release.pipeline
    if not (user_can(actor, "change", pipeline) or user_can(actor, "approve_release", pipeline)):
        raise PermissionDenied("Evaluating a release needs the change or approve right on the pipeline.")
    with transaction.atomic():
        evaluation = Evaluation.objects.create(
            release=release,
            total=_runnable_cases(pipeline).count(),
            created_by=actor if getattr(actor, "is_authenticated", False) else None,
        )
        audit_record(
            action="release.evaluation_requested", object_type="release", object_id=release.pk,
            payload={"number": release.number, "evaluation": evaluation.pk, "cases": evaluation.total},
            workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor,
        )  # fmt: skip
        # By name (the task module sits above this one), at once where tasks run eagerly,
        # with its time limits in the message (soft: time to record the failure).
        limit = settings.KEEL_EVALUATION_TIME_LIMIT
        task = signature(EVALUATE_TASK, args=(evaluation.pk,), time_limit=limit, soft_time_limit=limit - 5)
        transaction.on_commit(task.delay)
    return evaluation


def _runnable_cases(pipeline: Pipeline):
    # A case whose input was redacted (retention, erasure) has nothing left to run.
    return pipeline.evaluation_cases.exclude(input={"redacted": True})


def evaluation_execute(evaluation_pk: int, *, call=call_model) -> Evaluation | None:
    """Run a queued evaluation (on a worker): every case of the release's
    pipeline, compared with production's release (fixed, broken, unchanged).

    1. Claim it (queued to running, with the number of cases); None when
       another worker has it or it is over.
    2. Run each case in the sandbox, counting progress on the row (no
       transaction is held across a model call). For production's release,
       reuse its latest evaluation's results and run only the cases it lacks.
    3. Record the results, the counts and ``release.evaluated`` together.
    A failure marks it ``failed`` with ``release.evaluation_failed``.
    """
    claimed = Evaluation.objects.filter(pk=evaluation_pk, status=Evaluation.Status.QUEUED)
    evaluation = claimed.select_related("release__pipeline", "created_by").first()
    if evaluation is None:
        return None
    release = evaluation.release
    pipeline = release.pipeline
    cases = list(_runnable_cases(pipeline).order_by("pk"))
    if not claimed.update(status=Evaluation.Status.RUNNING, total=len(cases), done=0):
        return None
    try:
        outcomes, baseline = _cases_run(evaluation, release, cases, call=call)
        return _evaluation_record(evaluation, outcomes, baseline)
    except SoftTimeLimitExceeded:  # the task's time limit (pipelines/tasks/)
        limit = settings.KEEL_EVALUATION_TIME_LIMIT
        evaluation_fail(evaluation_pk=evaluation.pk, error=f"The evaluation took longer than its limit ({limit} s).")
        raise
    except Exception as error:
        evaluation_fail(evaluation_pk=evaluation.pk, error=f"{type(error).__name__}: {error}")
        raise


def _cases_run(evaluation: Evaluation, release: Release, cases: list, *, call) -> tuple[list, Release | None]:
    live = Deployment.objects.filter(pipeline=release.pipeline, environment=Deployment.Environment.PRODUCTION).first()
    baseline = live.release if live and live.release_id and live.release_id != release.pk else None
    known = _baseline_results(baseline)
    outcomes = []
    for done, case in enumerate(cases, start=1):
        outcome, failures = case_run(release, case, call=call)
        baseline_passed = None
        if baseline is not None:
            if case.pk not in known:
                known[case.pk] = not case_run(baseline, case, call=call)[1]
            baseline_passed = known[case.pk]
        outcomes.append((case, outcome, failures, baseline_passed))
        Evaluation.objects.filter(pk=evaluation.pk).update(done=done)
    return outcomes, baseline


def _evaluation_record(evaluation: Evaluation, outcomes: list, baseline: Release | None) -> Evaluation:
    release = evaluation.release
    pipeline = release.pipeline
    with transaction.atomic():
        results = []
        for case, outcome, failures, baseline_passed in outcomes:
            passed = not failures
            if baseline_passed is None:
                comparison = Comparison.NEW
            elif passed == baseline_passed:
                comparison = Comparison.UNCHANGED
            else:
                comparison = Comparison.FIXED if passed else Comparison.BROKEN
            results.append(EvaluationResult(evaluation=evaluation, case=case, passed=passed, failures=failures,
                                            output=outcome.output, held=outcome.held, baseline_passed=baseline_passed,
                                            comparison=comparison))  # fmt: skip
        EvaluationResult.objects.bulk_create(results)
        counts = {c: sum(1 for r in results if r.comparison == c) for c in Comparison.values}
        Evaluation.objects.filter(pk=evaluation.pk).update(
            status=Evaluation.Status.DONE, baseline=baseline, finished_at=timezone.now(),
            cases=len(results), passed=sum(r.passed for r in results),
            fixed=counts["fixed"], broken=counts["broken"], unchanged=counts["unchanged"],
        )  # fmt: skip
        evaluation.refresh_from_db()
        audit_record(
            action="release.evaluated", object_type="release", object_id=release.pk,
            payload={"number": release.number, "evaluation": evaluation.pk, "cases": evaluation.cases,
                     "passed": evaluation.passed, "baseline": baseline.number if baseline else None,
                     "fixed": evaluation.fixed, "broken": evaluation.broken, "unchanged": evaluation.unchanged},
            workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=evaluation.created_by,
        )  # fmt: skip
    return evaluation


def evaluation_fail(*, evaluation_pk: int, error: str) -> None:
    """An evaluation that could not finish (an error, or its time limit)."""
    with transaction.atomic():
        evaluation = Evaluation.objects.select_related("release__pipeline", "created_by").get(pk=evaluation_pk)
        unfinished = (Evaluation.Status.QUEUED, Evaluation.Status.RUNNING)
        if not Evaluation.objects.filter(pk=evaluation_pk, status__in=unfinished).update(
            status=Evaluation.Status.FAILED, error=error[:2000], finished_at=timezone.now()
        ):
            return
        release = evaluation.release
        audit_record(
            action="release.evaluation_failed", object_type="release", object_id=release.pk,
            payload={"number": release.number, "evaluation": evaluation.pk, "error": error[:2000]},
            workspace_id=release.pipeline.workspace_id, pipeline_id=release.pipeline_id, actor=evaluation.created_by,
        )  # fmt: skip


# Building the case set

_CASE_FIELDS = ("name", "input", "expected_label", "required_phrases", "forbidden_phrases", "output_schema",
                "max_length")  # fmt: skip
_JSON_FIELDS = ("input", "required_phrases", "forbidden_phrases", "output_schema")


def _rows(text: str, fmt: str) -> list[tuple[int, dict]]:
    if fmt == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValidationError(f"line {number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValidationError(f"line {number}: each line must be a JSON object")
            rows.append((number, row))
        return rows
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        for number, raw in enumerate(reader, start=2):
            row = {}
            for field, value in raw.items():
                if field is None or value in (None, ""):
                    continue
                if field in _JSON_FIELDS:
                    try:
                        value = json.loads(value)
                    except json.JSONDecodeError:
                        # A list of phrases may be written "a|b"; anything else must be JSON.
                        if field.endswith("_phrases"):
                            value = [p.strip() for p in value.split("|") if p.strip()]
                        else:
                            raise ValidationError(f"line {number}: {field} is not JSON") from None
                row[field] = value
            rows.append((number, row))
        return rows
    raise ValidationError({"format": "Import CSV or JSONL."})


@transaction.atomic
def evaluation_cases_import(*, pipeline: Pipeline, actor, text: str, fmt: str) -> int:
    """Add the cases in ``text`` (CSV with a header row, or JSONL) to the
    pipeline's evaluation set: all of them, or none with every problem named."""
    if not user_can(actor, "change", pipeline):
        raise PermissionDenied("Changing the evaluation set needs the change right on the pipeline.")
    problems, cases = [], []
    existing = set(pipeline.evaluation_cases.values_list("name", flat=True))
    for number, row in _rows(text, fmt):
        unknown = set(row) - set(_CASE_FIELDS)
        if unknown:
            problems.append(f"line {number}: unknown fields {', '.join(sorted(unknown))}")
            continue
        if "input" not in row or not row.get("name"):
            problems.append(f"line {number}: name and input are required")
            continue
        try:  # a case's input is a run input: canonicalised as one (pipelines/runs/inputs.py)
            row["input"] = input_canonical(row["input"])
        except ValidationError as error:
            problems += [f"line {number}: {message}" for message in error.message_dict["input"]]
            continue
        if "max_length" in row:
            try:
                row["max_length"] = int(row["max_length"])
            except (TypeError, ValueError):
                problems.append(f"line {number}: max_length must be a whole number")
                continue
        case = EvaluationCase(pipeline=pipeline, **row)
        try:
            case.full_clean(exclude=["pipeline", "source_run"], validate_unique=False)
        except ValidationError as error:
            problems += [f"line {number}: {field}: {'; '.join(m)}" for field, m in error.message_dict.items()]
            continue
        if case.name in existing:
            problems.append(f"line {number}: a case named {case.name!r} exists already")
            continue
        existing.add(case.name)
        cases.append(case)
    if problems:
        raise ValidationError(problems)
    EvaluationCase.objects.bulk_create(cases)
    audit_record(action="evaluation_cases.imported", object_type="pipeline", object_id=pipeline.pk,
                 payload={"count": len(cases), "format": fmt, "names": [c.name for c in cases]},
                 workspace_id=pipeline.workspace_id, pipeline_id=pipeline.pk, actor=actor)  # fmt: skip
    return len(cases)


@transaction.atomic
def evaluation_case_from_run(*, run: Run, actor) -> EvaluationCase:
    """A finished production run becomes a case: its input, and its output's
    label as the expected label."""
    if not user_can(actor, "change", run.pipeline):
        raise PermissionDenied("Changing the evaluation set needs the change right on the pipeline.")
    if run.status != Run.Status.COMPLETED:
        raise ValidationError(f"Run {run.pk} is {run.status}; only a completed run becomes a case.")
    label = run.output.get("label", "") if isinstance(run.output, dict) else ""
    case, created = EvaluationCase.objects.get_or_create(
        pipeline=run.pipeline, name=f"run {run.pk}",
        defaults={"input": run.input, "expected_label": label or "", "source_run": run},
    )  # fmt: skip
    if not created:
        raise ValidationError(f"Run {run.pk} is already a case.")
    audit_record(action="evaluation_case.created", object_type="evaluation_case", object_id=case.pk,
                 payload={"name": case.name, "run": run.pk, "expected_label": case.expected_label},
                 workspace_id=run.pipeline.workspace_id, pipeline_id=run.pipeline_id, actor=actor)  # fmt: skip
    return case
