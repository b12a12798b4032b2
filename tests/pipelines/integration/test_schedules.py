"""Schedules: a cron expression and a fixed input, kept as a django-celery-beat
periodic task; each firing is an ordinary run with trigger ``schedule``."""

import json
from datetime import UTC, datetime

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from audit.context import acting_as
from audit.models import AuditEvent
from config.celery import app
from pipelines.integration import schedules
from pipelines.integration.schedules import schedule_fire, schedule_save
from pipelines.models import Deployment, PipelineSchedule, Run
from pipelines.tasks.integration import schedule_fire_task
from tests.pipelines.integration.api.conftest import deploy

REPORT_INPUT = {"subject": "Monthly report", "body": "Summarise last month's tickets."}


@pytest.fixture
def pipeline(acme_config, superuser):
    return deploy(acme_config["pipeline"], superuser)


@pytest.fixture
def monthly(pipeline, lead):
    with acting_as(lead):
        schedule = PipelineSchedule(pipeline=pipeline, name="Monthly report", cron="0 9 1 * *", input=REPORT_INPUT)
        return schedule_save(schedule=schedule, actor=lead)


def _frozen(moment):
    return lambda: moment


def test_a_schedule_is_kept_as_a_beat_entry(monthly):
    task = PeriodicTask.objects.get(pk=monthly.periodic_task_id)
    assert task.task == "pipelines.scheduled_run" and json.loads(task.args) == [monthly.pk] and task.enabled
    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "0",
        "9",
        "1",
        "*",
        "*",
    )
    assert AuditEvent.objects.get(action="schedule.saved").actor_name == "lead"


def test_a_scheduled_run_fires_at_its_time_with_a_frozen_clock(
    monthly, monkeypatch, django_capture_on_commit_callbacks
):
    task = PeriodicTask.objects.get(pk=monthly.periodic_task_id)
    task.last_run_at = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    task.save()
    entry = ModelEntry(task, app=app)
    entry.schedule.nowfun = _frozen(datetime(2026, 12, 1, 8, 59, 30, tzinfo=UTC))
    assert not entry.is_due().is_due  # half a minute early: beat waits
    fire_time = datetime(2026, 12, 1, 9, 0, 2, tzinfo=UTC)
    entry.schedule.nowfun = _frozen(fire_time)
    assert entry.is_due().is_due

    monkeypatch.setattr(schedules, "clock", _frozen(fire_time))
    with django_capture_on_commit_callbacks(execute=False):
        # What the beat entry's task does with its arguments (pipelines.scheduled_run).
        assert entry.task == schedule_fire_task.name
        run = schedule_fire(schedule_id=entry.args[0])
        again = schedule_fire(schedule_id=entry.args[0])  # a firing delivered twice
    assert again.pk == run.pk and Run.objects.count() == 1
    assert (run.trigger, run.input, run.source) == ("schedule", REPORT_INPUT, f"schedule:{monthly.pk}")
    assert run.idempotency_key == f"schedule:{monthly.pk}:2026-12-01T09:00Z"
    assert AuditEvent.objects.get(action="run.started", object_id=str(run.pk)).actor_name == "system:schedule"


def test_a_paused_pipeline_skips_the_firing_on_record(monthly, pipeline):
    Deployment.objects.filter(pipeline=pipeline).update(paused=True)
    assert schedule_fire(schedule_id=monthly.pk) is None
    assert not Run.objects.exists()
    assert "paused" in AuditEvent.objects.get(action="schedule.skipped").payload_data["reason"]


@pytest.mark.parametrize(
    ("cron", "message"),
    [("61 * * * *", "minute field '61' is not valid"), ("0 9 * *", "five fields"), ("0 25 * * *", "hour field")],
)
def test_an_invalid_cron_expression_is_a_form_error_in_the_admin(client, lead, pipeline, cron, message):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/pipelineschedule/add/",
        {"pipeline": pipeline.pk, "name": "Bad", "cron": cron, "timezone": "UTC", "input": json.dumps(REPORT_INPUT),
         "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors["cron"])
    assert not PipelineSchedule.objects.exists() and not PeriodicTask.objects.filter(task="pipelines.scheduled_run")


def test_a_lead_adds_a_schedule_in_the_admin(client, lead, pipeline):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/pipelineschedule/add/",
        {"pipeline": pipeline.pk, "name": "Weekly", "cron": "30 7 * * mon", "timezone": "Europe/London",
         "input": json.dumps(REPORT_INPUT), "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    schedule = PipelineSchedule.objects.get()
    assert schedule.periodic_task.crontab.day_of_week == "mon"
    assert str(schedule.periodic_task.crontab.timezone) == "Europe/London"


def test_an_input_the_pipeline_would_refuse_is_a_form_error(client, lead, pipeline):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/pipelineschedule/add/",
        {"pipeline": pipeline.pk, "name": "Bad", "cron": "0 9 1 * *", "timezone": "UTC", "input": "{}",
         "enabled": "on"},
    )  # fmt: skip
    assert "subject" in " ".join(response.context["adminform"].form.errors["input"])
    assert not PipelineSchedule.objects.exists()


@pytest.mark.parametrize(("extra", "problem"), [("1e21", "beyond ±9007199254740991"), ("1e400", "not a finite number")])
def test_a_number_no_json_reader_holds_exactly_is_a_form_error_naming_its_path(client, lead, pipeline, extra, problem):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/pipelineschedule/add/",
        {"pipeline": pipeline.pk, "name": "Big", "cron": "0 9 1 * *", "timezone": "UTC",
         "input": f'{{"subject": "Monthly", "amount": {extra}}}', "enabled": "on"},
    )  # fmt: skip
    (error,) = response.context["adminform"].form.errors["input"]
    assert error.startswith("input.amount: ") and problem in error
    assert not PipelineSchedule.objects.exists()


def test_a_schedules_input_is_stored_in_its_canonical_form(pipeline, lead):
    with acting_as(lead):
        schedule = schedule_save(
            schedule=PipelineSchedule(pipeline=pipeline, name="x", cron="0 9 1 * *",
                                      input={**REPORT_INPUT, "count": 2.0, "rate": 0.50}),
            actor=lead,
        )  # fmt: skip
    stored = PipelineSchedule.objects.get(pk=schedule.pk).input
    assert stored == {**REPORT_INPUT, "count": 2, "rate": 0.5} and type(stored["count"]) is int


def test_scheduling_needs_the_change_right(pipeline, auditor):
    with pytest.raises(PermissionDenied):
        schedule_save(schedule=PipelineSchedule(pipeline=pipeline, name="x", cron="0 9 1 * *"), actor=auditor)


def test_a_bad_time_zone_is_refused(pipeline, lead):
    with pytest.raises(ValidationError, match="time zone"):
        schedule_save(
            schedule=PipelineSchedule(pipeline=pipeline, name="x", cron="0 9 1 * *", timezone="Mars/Olympus",
                                      input=REPORT_INPUT),
            actor=lead,
        )  # fmt: skip
