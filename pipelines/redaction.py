"""Redaction of runs' personal data: retention and data-subject requests.

A run's input and outputs (and each step's input, output and model
recordings) are replaced by a tombstone; every hash stays (``input_sha256``,
each step's ``output_sha256``, and the audit chain, which never held the data
itself), so the chain still verifies and replay still knows what was produced.
Audit events whose payload names a data subject go through the chain's one
redaction path, ``audit_redact``. Configuration (prompts, pipelines, releases
and their history) is never redacted here.
"""

import hashlib
import json
from datetime import datetime, timedelta

from celery import shared_task
from django.db import transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from audit.models import AuditEvent, RetentionPolicy
from audit.services import audit_record, audit_redact
from pipelines.models import Run, StepRun

TOMBSTONE = {"redacted": True}


def _is_redacted(value) -> bool:
    return value == TOMBSTONE


@transaction.atomic
def run_data_redact(*, run: Run, reason: str, actor=None) -> bool:
    """Redact one run's personal data; False when it already was."""
    run = Run.objects.select_for_update().select_related("pipeline").get(pk=run.pk)
    if _is_redacted(run.input):
        return False
    Run.objects.filter(pk=run.pk).update(input=TOMBSTONE, output=TOMBSTONE if run.output is not None else None)
    steps = StepRun.objects.filter(run=run).update(input=TOMBSTONE, output=TOMBSTONE, recordings=[])
    audit_record(
        action="run.data_redacted",
        object_type="run",
        object_id=run.pk,
        payload={"reason": reason, "steps": steps, "input_sha256": run.input_sha256},
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=actor,
    )
    return True


def retention_apply(*, now: datetime | None = None, actor="retention") -> dict[int, int]:
    """Redact the data of finished runs older than their workspace's retention
    period; one transaction per run, so a long backlog never holds a lock for
    long. Returns {workspace_id: runs redacted}."""
    now = now or timezone.now()
    done = {}
    for policy in RetentionPolicy.objects.order_by("workspace_id"):
        cutoff = now - timedelta(days=policy.run_data_days)
        due = (
            Run.objects.filter(pipeline__workspace_id=policy.workspace_id, created_at__lt=cutoff)
            .filter(status__in=Run.FINISHED)
            .exclude(input=TOMBSTONE)
            .values_list("pk", flat=True)
        )
        count = 0
        for run_id in list(due.iterator(chunk_size=500)):
            reason = f"retention: run data kept {policy.run_data_days} days"
            count += run_data_redact(run=Run(pk=run_id), reason=reason, actor=actor)
        done[policy.workspace_id] = count
    return done


@shared_task(name="pipelines.apply_retention")
def retention_apply_task() -> dict:
    return {str(workspace): count for workspace, count in retention_apply().items()}


def _text_forms(identifier: str) -> set[str]:
    # JSON columns may hold non-ASCII text escaped (\u00eb), as SQLite does.
    return {identifier, json.dumps(identifier)[1:-1]}


def subject_runs_find(*, identifier: str):
    """Every run whose input or output, or any step's, names ``identifier``
    (an e-mail address, a customer number...), matched case-insensitively."""
    identifier = identifier.strip()
    if len(identifier) < 3:
        raise ValueError("An identifier needs at least 3 characters, or it would match almost every run.")
    texts = Run.objects.annotate(input_text=Cast("input", TextField()), output_text=Cast("output", TextField()))
    step_texts = StepRun.objects.annotate(
        input_text=Cast("input", TextField()), output_text=Cast("output", TextField())
    )
    match = Q()
    for form in _text_forms(identifier):
        match |= Q(input_text__icontains=form) | Q(output_text__icontains=form)
    step_runs = step_texts.filter(match).values("run_id")
    return Run.objects.filter(Q(pk__in=texts.filter(match).values("pk")) | Q(pk__in=step_runs)).select_related(
        "pipeline"
    )


def _subject_recorded(action: str, identifier: str, runs: list[int], actor, **extra) -> AuditEvent:
    # The chain keeps the request, never the identifier itself: only its hash.
    return audit_record(
        action=action,
        object_type="data_subject",
        object_id=hashlib.sha256(identifier.strip().lower().encode()).hexdigest()[:32],
        payload={"runs": runs, **extra},
        actor=actor,
    )


@transaction.atomic
def subject_export(*, identifier: str, actor) -> dict:
    """A person's data: every run naming them, with its input and outputs."""
    runs = list(subject_runs_find(identifier=identifier).order_by("pk").prefetch_related("steps"))
    document = {
        "identifier": identifier,
        "runs": [
            {
                "run": run.pk,
                "pipeline": run.pipeline.slug,
                "created_at": run.created_at.isoformat(),
                "input": run.input,
                "output": run.output,
                "steps": [
                    {"position": step.position, "name": step.name, "input": step.input, "output": step.output}
                    for step in run.steps.all()
                ],
            }
            for run in runs
        ],
    }
    _subject_recorded("subject.exported", identifier, [run.pk for run in runs], actor)
    return document


@transaction.atomic
def subject_erase(*, identifier: str, reason: str, actor) -> list[int]:
    """Erase a person's data by redaction: their runs' data, and every audit
    event of those runs whose payload names them. Hashes stay; the chain verifies."""
    if not reason.strip():
        raise ValueError("An erasure needs a reason (e.g. the request's reference).")
    runs = list(subject_runs_find(identifier=identifier).order_by("pk"))
    forms = _text_forms(identifier)
    for run in runs:
        run_data_redact(run=run, reason=f"data-subject erasure: {reason}", actor=actor)
        events = AuditEvent.objects.filter(object_type="run", object_id=str(run.pk), redacted_at__isnull=True)
        for seq, payload in events.values_list("seq", "payload"):
            if any(form.lower() in payload.lower() for form in forms):
                audit_redact(seq=seq, reason=f"data-subject erasure: {reason}", actor=actor)
    _subject_recorded("subject.erased", identifier, [run.pk for run in runs], actor, reason=reason)
    return [run.pk for run in runs]


@transaction.atomic
def subject_search(*, identifier: str, actor) -> list[int]:
    """The runs naming a data subject; the search itself is recorded."""
    runs = list(subject_runs_find(identifier=identifier).order_by("pk").values_list("pk", flat=True))
    _subject_recorded("subject.searched", identifier, runs, actor)
    return runs
