"""Tasks that execute, recover and resend runs, and apply the retention policies."""

from celery import shared_task
from django.db import InterfaceError, OperationalError, close_old_connections

from pipelines.runs.engine import run_execute, run_lease_release, runs_recover, runs_resend
from pipelines.runs.redaction import retention_apply
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


@shared_task(name="pipelines.apply_retention")
def retention_apply_task() -> dict:
    return {str(workspace): counts for workspace, counts in retention_apply().items()}
