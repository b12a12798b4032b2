"""Schedules: a pipeline run on a cron expression with a fixed input.

``schedule_save`` keeps the django-celery-beat periodic task in step with the
PipelineSchedule row (beat reads those); beat sends ``pipelines.scheduled_run``
with the schedule's id, and ``schedule_fire`` starts an ordinary run with
trigger ``schedule``. The idempotency key names the schedule and the minute
it fired for, so a firing delivered twice starts one run.
"""

import json

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from audit.context import acting_as
from audit.services import audit_record
from governance.permissions import user_can
from pipelines.models import Deployment, PipelineSchedule, Run
from pipelines.models.schedules import parse_cron
from pipelines.runs.engine import RunRefused, run_start
from pipelines.runs.inputs import input_canonical
from pipelines.steps import SchemaValidator

clock = timezone.now  # replaced by tests that freeze time


def _event(schedule: PipelineSchedule, action: str, actor, payload: dict) -> None:
    audit_record(
        action=action,
        object_type="schedule",
        object_id=schedule.pk,
        payload={"name": schedule.name, "cron": schedule.cron, "timezone": schedule.timezone, **payload},
        workspace_id=schedule.pipeline.workspace_id,
        pipeline_id=schedule.pipeline_id,
        actor=actor,
    )


@transaction.atomic
def schedule_save(*, schedule: PipelineSchedule, actor) -> PipelineSchedule:
    """Create or update a schedule and its beat entry.

    1. Refuse without the change right on the pipeline; validate the cron
       expression, time zone and input (ValidationError naming the field).
    2. Save the row, then the crontab and periodic task beat reads.
    3. Record ``schedule.saved``.
    """
    if not user_can(actor, "change", schedule.pipeline):
        raise PermissionDenied("Scheduling runs needs the change right on the pipeline.")
    schedule.full_clean()
    schedule_input_check(schedule)
    if schedule.pk is None and getattr(actor, "is_authenticated", False):
        schedule.created_by = actor
    schedule.save()
    crontab, _ = CrontabSchedule.objects.get_or_create(**parse_cron(schedule.cron), timezone=schedule.timezone)
    task = schedule.periodic_task or PeriodicTask(name=f"keel-schedule-{schedule.pk}")
    task.task = "pipelines.scheduled_run"
    task.crontab = crontab
    task.interval = task.solar = task.clocked = None
    task.args = json.dumps([schedule.pk])
    task.enabled = schedule.enabled
    task.description = f"{schedule.pipeline.slug}: {schedule.name}"
    task.save()
    if schedule.periodic_task_id != task.pk:
        PipelineSchedule.objects.filter(pk=schedule.pk).update(periodic_task=task)
        schedule.periodic_task = task
    _event(schedule, "schedule.saved", actor, {"enabled": schedule.enabled, "input": schedule.input})
    return schedule


def schedule_input_check(schedule: PipelineSchedule) -> None:
    """The fixed input against the live release's schema (else the pipeline's), so a
    schedule that could never start a run is refused now, not at 3 a.m."""

    # Canonicalised here, before it is saved, as every run input is on arrival.
    schedule.input = input_canonical(schedule.input)
    live = Deployment.objects.filter(pipeline=schedule.pipeline, environment=Deployment.Environment.PRODUCTION)
    release = live.select_related("release").first()
    schema = release.release.snapshot_data["input_schema"] if release and release.release else None
    validator = SchemaValidator(schema or schedule.pipeline.input_schema or {})
    problems = sorted(
        f"{'.'.join(str(p) for p in e.absolute_path) or 'input'}: {e.message}"
        for e in validator.iter_errors(schedule.input)
    )
    if problems:
        raise ValidationError({"input": problems})


@transaction.atomic
def schedule_delete(*, schedule: PipelineSchedule, actor) -> None:
    if not user_can(actor, "change", schedule.pipeline):
        raise PermissionDenied("Removing a schedule needs the change right on the pipeline.")
    _event(schedule, "schedule.deleted", actor, {})
    task = schedule.periodic_task
    schedule.delete()
    if task is not None:
        task.delete()


def schedule_fire(*, schedule_id: int) -> Run | None:
    """Start the schedule's run for this minute. A paused pipeline, or one with
    nothing live, is skipped with a logged audit event rather than retried."""
    schedule = PipelineSchedule.objects.select_related("pipeline").filter(pk=schedule_id, enabled=True).first()
    if schedule is None:
        return None  # removed or disabled since beat read it
    fired_for = clock().replace(second=0, microsecond=0)
    key = f"schedule:{schedule.pk}:{fired_for:%Y-%m-%dT%H:%M}Z"
    with acting_as("schedule"):
        try:
            run, _ = run_start(
                pipeline=schedule.pipeline, input=schedule.input, actor=None, trigger=Run.Trigger.SCHEDULE,
                source=f"schedule:{schedule.pk}", idempotency_key=key,
            )  # fmt: skip
        except (RunRefused, ValidationError) as refused:
            # Not retried: the next firing tries again; the skip is on record.
            reason = "; ".join(refused.messages) if isinstance(refused, ValidationError) else str(refused)
            with transaction.atomic():
                _event(schedule, "schedule.skipped", None, {"reason": reason, "fired_for": key})
            return None
    return run
