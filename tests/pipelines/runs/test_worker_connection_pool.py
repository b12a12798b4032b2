"""Model calls on many threads without a database connection per thread: with
DATABASE_POOL_MAX_SIZE a worker borrows a connection only to commit, and the
engine hands it back for the length of every outside call."""

import time

import pytest
from django.conf import settings
from django.db import connection

from audit.context import acting_as
from pipelines.models import ModelConfig, Run
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_start
from tests import factories
from tests.pipelines.chat_server import ChatServer, Reply, completion
from tests.releasing import release_to_production
from tests.workers import celery_worker, wait_for

RUNS = 6
POOL = 2
DELAY = 3.0  # each model call: long enough for every call to be in flight at once


def _worker_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_six_calls_in_flight_hold_at_most_the_pools_connections(superuser, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's (psycopg_pool)")
    answer = completion("label: billing\nconfidence: 0.90")
    with ChatServer() as server, acting_as(superuser):
        server.script = [Reply(body=answer.body, delay=DELAY) for _ in range(RUNS)]
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(workspace=workspace, body="Classify: {{ subject }}",
                                                 variables=["subject"])  # fmt: skip
        model = ModelConfig.objects.create(workspace=workspace, slug="remote", name="Remote", provider="openai",
                                           model_name="m", base_url=server.base_url, timeout_seconds=30)  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        factories.StepFactory(pipeline=pipeline, position=1, name="check", kind="validate", config={})
        factories.StepFactory(pipeline=pipeline, position=2, name="classify", kind="model",
                              config={"output_field": "classification"}, prompt=prompt, model_config=model)  # fmt: skip
        release_to_production(release_cut(pipeline=pipeline, actor=superuser), actor=superuser)

        broker = settings.CELERY_BROKER_URL
        log = tmp_path / "worker.log"
        with celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                           log_path=log, pool="threads", concurrency=RUNS,
                           extra_env={"DATABASE_POOL_MAX_SIZE": str(POOL)}):  # fmt: skip
            runs = [
                run_start(pipeline=pipeline, input={"subject": f"Ticket {n}"}, actor=None, trigger="cli")[0]
                for n in range(RUNS)
            ]
            assert wait_for(lambda: len(server.requests) == RUNS, timeout=60), log.read_text()[-3000:]
            # Every call reached the server before any was answered: the threads did not queue for connections.
            ids = [run.pk for run in runs]
            assert not Run.objects.filter(pk__in=ids, status=Run.Status.COMPLETED).exists()
            # All calls are in flight now: count the worker's connections.
            seen = []
            for _ in range(5):
                seen.append(_worker_connections())
                time.sleep(0.1)
            settled = wait_for(
                lambda: not Run.objects.filter(pk__in=ids, status__in=["queued", "running"]).exists(),
                timeout=60,
            )  # fmt: skip
            assert settled, log.read_text()[-3000:]
    assert max(seen) <= POOL, seen
    statuses = set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("status", flat=True))
    assert statuses == {Run.Status.COMPLETED}
