"""Redaction of personal data: retention and data-subject requests.

Every table that stores a data subject's personal data says so on its model
(``personal_fields``, ``personal_parent``; pipelines/runs/personal_data.py walks
them). Redaction replaces those fields with tombstones and keeps every hash
(a run's ``input_sha256``, each step's ``output_sha256``, a document's
``sha256``, and the audit chain, whose payloads go through its one redaction
path, ``audit_redact``), so the chain still verifies. Configuration (prompts,
pipelines, releases and their history) is never redacted here.
"""

import base64
import json
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from audit.models import AuditEvent, RetentionPolicy
from audit.services import audit_record, audit_redact
from pipelines.models import Evaluation, EvaluationCase, EvaluationResult, Run
from pipelines.queries import sqlite_wal_truncate
from pipelines.runs.engine import run_expire
from pipelines.runs.personal_data import (
    TOMBSTONE,
    descendants,
    families,
    holder_of,
    holders,
    kept_holders,
    matching_pks,
    rows_redact,
    text_forms,
)

__all__ = ["TOMBSTONE", "retention_apply", "run_data_redact", "subject_erase", "subject_export", "subject_search"]


def _family_redact(roots: dict, *, reason: str, actor) -> dict[str, int]:
    """Redact ``roots`` and every row under them, then the audit events of
    those rows that repeat a removed text (a document's file name, a
    decision's reason or diff) word for word. Returns {table: rows changed}."""
    chosen = descendants(roots)
    counts, removed, named = {}, set(), {}
    now = timezone.now()
    for holder in holders():
        pks = chosen.get(holder.model, set())
        changed, texts = rows_redact(holder, pks, now=now)
        if changed:
            counts[holder.table] = changed
        removed.update(texts)
        if pks:
            named.setdefault(holder.noun, set()).update(str(pk) for pk in pks)
    if removed and named:
        # The canonical JSON of each text, quotes included: the whole value, never a part of another.
        needles = [json.dumps(text, ensure_ascii=False) for text in removed]
        events = AuditEvent.objects.none()
        for noun, ids in named.items():
            events |= AuditEvent.objects.filter(object_type=noun, object_id__in=ids)
        hits = [
            seq
            for seq, payload in events.filter(redacted_at__isnull=True).values_list("seq", "payload")
            if any(needle in payload for needle in needles)
        ]
        for seq in hits:
            audit_redact(seq=seq, reason=reason, actor=actor)
        if hits:
            counts[AuditEvent._meta.db_table] = len(hits)
    return counts


@transaction.atomic
def run_data_redact(*, run: Run, reason: str, actor=None) -> bool:
    """Redact one run's personal data and everything of its story (steps and
    their recordings, its document, deliveries, review tasks and decisions,
    evaluation cases made from it and their results); False when nothing was
    left to redact."""
    run = Run.objects.select_for_update().select_related("pipeline").get(pk=run.pk)
    counts = _family_redact({Run: {run.pk}}, reason=reason, actor=actor)
    if not counts:
        return False
    audit_record(
        action="run.data_redacted",
        object_type="run",
        object_id=run.pk,
        payload={
            "reason": reason,
            "steps": counts.get("pipelines_steprun", 0),
            "rows": counts,
            "input_sha256": run.input_sha256,
        },
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=actor,
    )
    return True


@transaction.atomic
def evaluation_case_data_redact(*, case: EvaluationCase, reason: str, actor=None) -> bool:
    """Redact an evaluation case's input and phrases and its results' outputs."""
    case = EvaluationCase.objects.select_for_update().select_related("pipeline").get(pk=case.pk)
    counts = _family_redact({EvaluationCase: {case.pk}}, reason=reason, actor=actor)
    if not counts:
        return False
    audit_record(
        action="evaluation_case.data_redacted",
        object_type="evaluation_case",
        object_id=case.pk,
        payload={"reason": reason, "rows": counts},
        workspace_id=case.pipeline.workspace_id,
        pipeline_id=case.pipeline_id,
        actor=actor,
    )
    return True


@transaction.atomic
def evaluation_data_redact(*, evaluation: Evaluation, reason: str, actor=None) -> bool:
    """Redact what an evaluation's sandbox produced (its results' outputs and failures)."""
    evaluation = Evaluation.objects.select_related("release__pipeline").get(pk=evaluation.pk)
    results = set(EvaluationResult.objects.filter(evaluation=evaluation).values_list("pk", flat=True))
    counts = _family_redact({EvaluationResult: results}, reason=reason, actor=actor)
    if not counts:
        return False
    pipeline = evaluation.release.pipeline
    audit_record(
        action="evaluation.data_redacted",
        object_type="evaluation",
        object_id=evaluation.pk,
        payload={"reason": reason, "rows": counts},
        workspace_id=pipeline.workspace_id,
        pipeline_id=pipeline.pk,
        actor=actor,
    )
    return True


def retention_apply(*, now: datetime | None = None, actor="retention") -> dict[int, dict[str, int]]:
    """Redact each workspace's personal data older than its retention period.

    1. Runs that never finished (queued, running, waiting for review) are
       cancelled first, through ``run_expire``, so no worker or reviewer
       carries them on.
    2. Finished runs are redacted with their whole story (documents,
       deliveries, reviews, cases made from them).
    3. Evaluation cases and evaluations' results older than the period.

    One transaction per object, so a long backlog never holds a lock for long.
    Returns {workspace_id: {what: count}}."""
    now = now or timezone.now()
    done = {}
    for policy in RetentionPolicy.objects.order_by("workspace_id"):
        cutoff = now - timedelta(days=policy.run_data_days)
        reason = f"retention: personal data kept {policy.run_data_days} days"
        old_runs = Run.objects.filter(pipeline__workspace_id=policy.workspace_id, created_at__lt=cutoff)
        counts = {"cancelled": 0, "runs": 0, "evaluation_cases": 0, "evaluations": 0}
        for run in old_runs.exclude(status__in=Run.FINISHED).order_by("pk"):
            try:
                run_expire(run=run, reason=reason, component=actor)
                counts["cancelled"] += 1
            except ValidationError:
                pass  # it finished meanwhile: redacted below as any finished run
        due = old_runs.filter(status__in=Run.FINISHED).exclude(input=TOMBSTONE).values_list("pk", flat=True)
        for run_id in list(due.iterator(chunk_size=500)):
            counts["runs"] += run_data_redact(run=Run(pk=run_id), reason=reason, actor=actor)
        cases = EvaluationCase.objects.filter(pipeline__workspace_id=policy.workspace_id, created_at__lt=cutoff)
        for case in cases.exclude(input=TOMBSTONE).order_by("pk"):
            counts["evaluation_cases"] += evaluation_case_data_redact(case=case, reason=reason, actor=actor)
        evaluations = Evaluation.objects.filter(
            release__pipeline__workspace_id=policy.workspace_id, created_at__lt=cutoff
        ).filter(
            models.Exists(EvaluationResult.objects.filter(evaluation=models.OuterRef("pk")).exclude(output=TOMBSTONE))
        )
        for evaluation in evaluations.order_by("pk"):
            counts["evaluations"] += evaluation_data_redact(evaluation=evaluation, reason=reason, actor=actor)
        done[policy.workspace_id] = counts
    # The erased values' old pages: secure_delete keeps the file free of them, this empties the log.
    sqlite_wal_truncate()
    return done


def subject_identifier_check(identifier: str) -> str:
    identifier = identifier.strip()
    if len(identifier) < 3:
        raise ValueError("An identifier needs at least 3 characters, or it would match almost every run.")
    return identifier


def subject_key_id(identifier: str) -> str:
    """The request's identifier as the chain keeps it: an HMAC-SHA256 keyed by
    the deployment (``KEEL_SUBJECT_KEY``, else a key derived from SECRET_KEY),
    so the chain never holds the identifier nor a hash anyone can recompute."""
    secret = settings.KEEL_SUBJECT_KEY or settings.SECRET_KEY
    normalised = identifier.strip().lower()
    return salted_hmac("keel.data-subject", normalised, secret=secret, algorithm="sha256").hexdigest()


def subject_copies(*, identifier: str) -> dict[type[models.Model], set]:
    """Every row of every table that stores personal data and names
    ``identifier`` (case-insensitively, in any column), audit events included."""
    forms = text_forms(subject_identifier_check(identifier))
    return {holder.model: matching_pks(holder, forms) for holder in holders()}


def subject_kept_copies(*, identifier: str) -> dict[str, int]:
    """Rows that name ``identifier`` in a column that is kept (configuration and
    its history, staff accounts...), per table: what an erasure leaves, and why
    is in pipelines/runs/personal_data.py."""
    forms = text_forms(subject_identifier_check(identifier))
    found = {holder.table: len(matching_pks(holder, forms)) for holder in kept_holders()}
    return {table: count for table, count in found.items() if count}


def subject_runs_find(*, identifier: str):
    """The runs whose story names ``identifier``: a run, or any row under it."""
    copies = subject_copies(identifier=identifier)
    copies.pop(AuditEvent, None)
    runs = families(copies).get(Run, set())
    return Run.objects.filter(pk__in=runs).select_related("pipeline")


def _by_table(copies: dict) -> dict[str, int]:
    return {model._meta.db_table: len(pks) for model, pks in copies.items()}


def _subject_recorded(action: str, identifier: str, actor, **payload) -> AuditEvent:
    # The chain keeps the request, never the identifier itself: only its keyed hash.
    return audit_record(
        action=action, object_type="data_subject", object_id=subject_key_id(identifier), payload=payload, actor=actor
    )


@transaction.atomic
def subject_search(*, identifier: str, actor) -> dict:
    """Where a data subject is named: rows per table (every table that stores
    personal data, zero included), the runs whose story names them, and the
    rows of kept tables (configuration...) that name them too, which an
    erasure leaves. The search itself is recorded."""
    copies = subject_copies(identifier=identifier)
    tables = _by_table(copies)
    copies.pop(AuditEvent, None)
    runs = sorted(families(copies).get(Run, set()))
    kept = subject_kept_copies(identifier=identifier)
    _subject_recorded("subject.searched", identifier, actor, runs=runs, tables=tables, kept=kept)
    return {"tables": tables, "runs": runs, "kept": kept}


def _exportable(value):
    if isinstance(value, bytes | memoryview):
        return {"base64": base64.b64encode(bytes(value)).decode()}
    return value


@transaction.atomic
def subject_export(*, identifier: str, actor) -> dict:
    """A person's data: every row naming them, by table, with its personal
    fields, and the runs whose story names them with their inputs and outputs."""
    copies = subject_copies(identifier=identifier)
    copies.pop(AuditEvent, None)
    rows = {}
    for model, pks in copies.items():
        holder = holder_of(model)
        if pks:
            values = model._default_manager.filter(pk__in=pks).order_by("pk").values("pk", *holder.fields)
            rows[holder.table] = [{k: _exportable(v) for k, v in row.items()} for row in values]
    runs = Run.objects.filter(pk__in=families(copies).get(Run, set())).order_by("pk")
    document = {
        "identifier": identifier,
        "tables": rows,
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
            for run in runs.select_related("pipeline").prefetch_related("steps")
        ],
    }
    _subject_recorded("subject.exported", identifier, actor, runs=[run["run"] for run in document["runs"]])
    return document


def subject_erase(*, identifier: str, reason: str, actor) -> dict:
    """Erase a person's data by redaction, everywhere it is stored.

    1. Find every row naming them; take each with its whole family (a step
       names them, so its run and everything of the run goes).
    2. Redact each run's story (``run_data_redact``), then any other family
       (a case made by hand, the admin's log).
    3. Redact, through ``audit_redact``, every audit event still naming them.
    4. Record the request by its keyed hash, with what was redacted per table.

    Hashes stay; the chain verifies. Returns {"runs": [...], "tables": {...},
    "kept": {...}}, the last the kept tables' rows that still name the person."""
    identifier = subject_identifier_check(identifier)
    if not reason.strip():
        raise ValueError("An erasure needs a reason (e.g. the request's reference).")
    forms = text_forms(identifier)
    if any(form.lower() in reason.lower() for form in forms):
        raise ValueError("The reason must not name the identifier: it is kept in the audit chain.")
    why = f"data-subject erasure: {reason}"
    with transaction.atomic():
        copies = subject_copies(identifier=identifier)
        copies.pop(AuditEvent, None)
        chosen = families(copies)
        runs = sorted(chosen.pop(Run, set()))
        for run_id in runs:
            run_data_redact(run=Run(pk=run_id), reason=why, actor=actor)
        # What no run holds: its own families, redacted together.
        _family_redact(chosen, reason=why, actor=actor)
        # What named the person, per table (their families went with them).
        tables = _by_table(copies)
        events = matching_pks(holder_of(AuditEvent), forms)
        for seq in sorted(events):
            audit_redact(seq=seq, reason=why, actor=actor)
        tables[AuditEvent._meta.db_table] = len(events)
        kept = subject_kept_copies(identifier=identifier)
        _subject_recorded("subject.erased", identifier, actor, runs=runs, tables=tables, kept=kept, reason=reason)
    sqlite_wal_truncate()  # as after a retention sweep
    return {"runs": runs, "tables": tables, "kept": kept}
