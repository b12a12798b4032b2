from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections

from pipelines.runs.engine import run_execute, run_lease_release, runs_recover, runs_resend
from pipelines.runs.redaction import retention_apply_task  # noqa: F401 - registers the retention task
from pipelines.steps.base import StepError

DATABASE_RETRY_SECONDS = 3
DATABASE_RETRIES = 20


# Executing a run twice is safe (completed steps never run again and a lease
# admits one worker), so the message is acknowledged only when the work is done.
@shared_task(
    name="pipelines.execute_run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=3,
)
def run_execute_task(self, run_id: int) -> str | None:
    # The worker reuses connections between tasks (CELERY_DB_REUSE_MAX):
    # apply CONN_MAX_AGE and the health check as Django does around a request,
    # before and after. With a pool (CONN_MAX_AGE 0) the connection goes back
    # to it at the end, for the worker's other threads.
    close_old_connections()
    owner = f"{self.request.hostname}:{self.request.id}"  # a retry keeps the task's id, so its owner
    try:
        if self.request.retries:
            # An earlier try lost the database mid-run: the run may still be held under its lease.
            run_lease_release(run_id=run_id, owner=owner)
        run = run_execute(run_id, owner=owner)
    except StepError as error:  # transient: the engine has put the run back on the queue
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    except (OperationalError, InterfaceError) as error:
        # The database is away: try again every few seconds for a minute
        # rather than leave a claimed run to its lease (runs_resend sends
        # unclaimed ones again in any case).
        raise self.retry(exc=error, countdown=DATABASE_RETRY_SECONDS, max_retries=DATABASE_RETRIES) from error
    except Exception as error:
        # Unexpected: the engine recorded it and counted the attempt, and fails
        # the run once KEEL_RUN_MAX_ATTEMPTS are spent; past this task's own
        # retries, recovery takes the run back when its lease lapses.
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    finally:
        close_old_connections()
    return run.status if run else None


@shared_task(name="pipelines.recover_runs")
def runs_recover_task() -> list[int]:
    return runs_recover()


@shared_task(name="pipelines.resend_runs", ignore_result=True)
def runs_resend_task() -> list[int]:
    return runs_resend()


# The heartbeat task and the worker's start-up heartbeat, for /health/ready.
from pipelines.integration.health import heartbeat_task  # noqa: E402, F401


@shared_task(name="pipelines.redeliver", acks_late=True, reject_on_worker_lost=True)
def delivery_redeliver_task(delivery_pk: int) -> str:
    from pipelines.delivery.dead_letters import delivery_redeliver

    close_old_connections()
    return delivery_redeliver(delivery_pk=delivery_pk).status


@shared_task(name="pipelines.scheduled_run")
def schedule_fire_task(schedule_id: int) -> int | None:
    from pipelines.integration.schedules import schedule_fire

    close_old_connections()
    run = schedule_fire(schedule_id=schedule_id)
    return run.pk if run else None


@shared_task(name="pipelines.resend_delivery", bind=True, acks_late=True, max_retries=5)
def delivery_resend_task(self, delivery_pk: int) -> str | None:
    from pipelines.delivery.webhooks import delivery_resend

    close_old_connections()
    try:
        record = delivery_resend(delivery_pk)
    except StepError as error:
        if not error.transient:
            raise
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    finally:
        close_old_connections()
    return record["status"] if record else None


@shared_task(name="pipelines.watch_canaries")
def canaries_watch_task() -> list[int]:
    from pipelines.releases.canary import canaries_watch

    return canaries_watch()


@shared_task(name="pipelines.send_notice", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def notice_send_task(self, delivery_pk: int) -> str | None:
    """Send a notice (a rejected run's ``run.rejected``); when its retries are
    spent, it becomes a dead letter to resend from the admin."""
    from pipelines.delivery.notices import notice_give_up, notice_send_by_pk

    close_old_connections()
    try:
        record = notice_send_by_pk(delivery_pk)
    except StepError as error:
        if not error.transient:
            return "failed"  # refused, or no secret to sign with: already a dead letter
        if self.request.retries >= self.max_retries:
            notice_give_up(delivery_pk=delivery_pk, error=str(error))
            return "failed"
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    finally:
        close_old_connections()
    return record["status"] if record else None


@shared_task(
    name="pipelines.evaluate_release",
    time_limit=settings.KEEL_EVALUATION_TIME_LIMIT,
    soft_time_limit=settings.KEEL_EVALUATION_TIME_LIMIT - 5,
)
def evaluation_execute_task(evaluation_pk: int) -> str | None:
    """Run a queued evaluation; past its soft time limit it is marked failed
    (evaluation_execute records why) and the task ends."""
    from pipelines.evaluation.services import evaluation_execute

    close_old_connections()
    try:
        evaluation = evaluation_execute(evaluation_pk)
    except SoftTimeLimitExceeded:
        return "failed"
    finally:
        close_old_connections()
    return evaluation.status if evaluation else None
