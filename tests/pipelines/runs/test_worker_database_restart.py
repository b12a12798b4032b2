"""A worker keeps its database connection between tasks (CELERY_DB_REUSE_MAX);
when the server drops it, as a PostgreSQL restart does, the next task
reconnects instead of failing."""

import io

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from pipelines.models import Pipeline, Run
from pipelines.runs.engine import run_start
from tests.workers import celery_worker, wait_for

TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved.", "customer_email": "ada@example.com"}


def _settled(run) -> bool:
    return Run.objects.get(pk=run.pk).status not in ("queued", "running")


@pytest.mark.django_db(transaction=True)
def test_a_worker_reconnects_after_the_database_drops_its_connection(tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: dropping a client's connection is a server-side act")
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    broker = settings.CELERY_BROKER_URL
    log = tmp_path / "worker.log"
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                       log_path=log):  # fmt: skip
        first, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
        assert wait_for(lambda: _settled(first), timeout=90), log.read_text()[-3000:]

        # What a restart does to every client: the server ends their sessions.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (dropped,) = cursor.fetchone()
        assert dropped >= 1  # the worker's kept connection was among them

        second, _ = run_start(pipeline=pipeline, input={**TICKET, "subject": "Still waiting"}, actor=None,
                              trigger="cli")  # fmt: skip
        assert wait_for(lambda: _settled(second), timeout=90), log.read_text()[-3000:]
    second.refresh_from_db()
    assert second.status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW), second.failure_reason
    assert second.attempts == 1  # the first attempt after the drop worked: no failure, no retry
