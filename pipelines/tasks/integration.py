"""Tasks of the integration surface: a schedule's run, and the worker's heartbeat for
``/health/ready`` (recorded when the worker starts and whenever beat sends ``heartbeat``)."""

from celery import shared_task
from celery.signals import worker_ready
from django.db import close_old_connections

from pipelines.integration.health import heartbeat_record
from pipelines.integration.schedules import schedule_fire


@shared_task(name="pipelines.scheduled_run")
def schedule_fire_task(schedule_id: int) -> int | None:
    close_old_connections()
    run = schedule_fire(schedule_id=schedule_id)
    return run.pk if run else None


@shared_task(name="pipelines.heartbeat", ignore_result=True)
def heartbeat_task() -> None:
    heartbeat_record("worker")


@worker_ready.connect
def worker_ready_heartbeat(**kwargs) -> None:
    heartbeat_record("worker")
