"""The reviewer app under load: 100,000 open review tasks and 1,000,000 audit
events (the audit benchmark's seeded chain).

- ``queue_page_p95_ms``: GET /review/ as a reviewer, server-side through
  Django's test client (middleware, permission filter, template), 95th percentile.
- ``task_page_p95_ms``: GET /review/tasks/<id>/ on a different task each time
  (each opening claims its task: a write and an audit event).
- ``decision_p95_ms``: POST an approval through the web app: the decision, its
  audit events, the run's resumption; the worker's enqueue after commit is
  replaced by a no-op so that no message reaches a broker nobody drains.
- ``queue_page_queries``, ``task_page_queries``: queries per page, the same
  whatever the queue's size (the tests check that on a small queue).

Targets: under 100 ms, 100 ms and 50 ms. The tasks are seeded once and topped
up to 100,000 open on every run; the audit events the run appends are removed
afterwards, as the audit benchmark does, so its chain stays 1,000,000 long.
"""

import hashlib
import time
from datetime import timedelta

from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.canonical import canonical_bytes
from audit.context import acting_as
from governance.models import ApprovalPolicy, Workspace
from governance.roles import REVIEWERS, role_groups_ensure
from governance.services import role_grant
from pipelines.models import Pipeline, Run, Step, StepRun
from pipelines.releases.cut import release_cut
from reviews.models import ReviewTask
from tests.bench import bench_audit
from tests.releasing import release_to_production

OPEN_TASKS = 100_000
REQUESTS = 60
BATCH = 5_000


def run() -> dict[str, float]:
    bench_audit._ensure_seeded()
    pipeline, reviewer = _ensure_setup()
    _top_up(pipeline)
    from pipelines import tasks

    tasks.runs.run_execute_task.delay_on_commit = lambda *args, **kwargs: None  # see the module docstring
    client = Client(HTTP_HOST="localhost")
    client.force_login(reviewer)
    try:
        figures = _measure(client, pipeline)
    finally:
        bench_audit._drop_appended()
    return figures


def _p95(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)] * 1000


def _timed(call) -> tuple[float, object]:
    started = time.perf_counter()
    response = call()
    return time.perf_counter() - started, response


def _measure(client: Client, pipeline: Pipeline) -> dict[str, float]:
    queue, task_page, decision = [], [], []
    with CaptureQueriesContext(connection) as queries:
        client.get("/review/")  # warm
    queue_queries = len(queries)
    for _ in range(REQUESTS):
        seconds, response = _timed(lambda: client.get("/review/"))
        assert response.status_code == 200, response.status_code
        queue.append(seconds)
    ids = list(
        ReviewTask.objects.filter(pipeline=pipeline, status=ReviewTask.Status.OPEN, claimed_by__isnull=True)
        .order_by("-pk")
        .values_list("pk", flat=True)[: REQUESTS + 1]
    )
    with CaptureQueriesContext(connection) as queries:
        client.get(f"/review/tasks/{ids[-1]}/")
    task_queries = len(queries)
    for pk in ids[:REQUESTS]:
        seconds, response = _timed(lambda pk=pk: client.get(f"/review/tasks/{pk}/"))
        assert response.status_code == 200, response.status_code
        task_page.append(seconds)
    for pk in ids[:REQUESTS]:
        seconds, response = _timed(lambda pk=pk: client.post(f"/review/tasks/{pk}/decide/", {"decision": "approve"}))
        assert response.status_code == 302, response.status_code
        decision.append(seconds)
    return {
        "open_review_tasks": ReviewTask.objects.filter(status=ReviewTask.Status.OPEN).count(),
        "queue_page_p95_ms": _p95(queue),
        "task_page_p95_ms": _p95(task_page),
        "decision_p95_ms": _p95(decision),
        "queue_page_queries": queue_queries,
        "task_page_queries": task_queries,
    }


def _ensure_setup() -> tuple[Pipeline, object]:
    from django.contrib.auth import get_user_model

    users = get_user_model()
    admin, _ = users.objects.get_or_create(username="bench-admin", defaults={"is_superuser": True, "is_staff": True})
    reviewer, created = users.objects.get_or_create(username="bench-reviewer")
    pipeline = Pipeline.objects.filter(slug="bench-replies").first()
    if pipeline is not None:
        return pipeline, reviewer
    with acting_as(admin), transaction.atomic():
        role_groups_ensure()
        workspace, _ = Workspace.objects.get_or_create(slug="bench-reviews", defaults={"name": "Bench", "owner": admin})
        role_grant(actor=admin, role=REVIEWERS, user=reviewer, workspace=workspace)
        policy = ApprovalPolicy.objects.create(workspace=workspace, name="Bench", review_mode="always")
        pipeline = Pipeline.objects.create(
            workspace=workspace, slug="bench-replies", name="Bench replies", owner=admin, approval_policy=policy,
            input_schema={"type": "object"},
        )  # fmt: skip
        Step.objects.create(pipeline=pipeline, position=1, name="gate", kind="gate", config={})
        Step.objects.create(pipeline=pipeline, position=2, name="store", kind="deliver", config={"channel": "stored"})
        release = release_cut(pipeline=pipeline, actor=admin)
    release_to_production(release)  # production takes an approved, evaluated release
    return pipeline, reviewer


def _top_up(pipeline: Pipeline) -> None:
    """Seed held runs with their gate step and open task until 100,000 are open."""
    missing = OPEN_TASKS - ReviewTask.objects.filter(pipeline=pipeline, status=ReviewTask.Status.OPEN).count()
    if missing <= 0:
        return
    print(f"seeding {missing:,} open review tasks...", flush=True)
    started = time.perf_counter()
    release = pipeline.deployments.get(environment="production").release
    now = timezone.now()
    done = 0
    while done < missing:
        count = min(BATCH, missing - done)
        documents = [
            {"subject": f"Ticket {done + i}", "draft": "Thanks for writing; we are on it.", "confidence": 0.5}
            for i in range(count)
        ]
        with transaction.atomic():
            runs = Run.objects.bulk_create(
                Run(pipeline=pipeline, release=release, environment="production", input=doc,
                    input_sha256=hashlib.sha256(canonical_bytes(doc)).hexdigest(), trigger="cli", seed=1,
                    status=Run.Status.WAITING_REVIEW)
                for doc in documents
            )  # fmt: skip
            decision = {"passed": False, "reasons": ["always", "low_confidence"], "rule_hits": [], "confidence": 0.5,
                        "sampled": False, "review_mode": "always"}  # fmt: skip
            StepRun.objects.bulk_create(
                StepRun(run=run, position=1, name="gate", kind="gate", status=StepRun.Status.WAITING_REVIEW,
                        input=run.input, output=run.input, output_sha256=run.input_sha256, decision=decision)
                for run in runs
            )  # fmt: skip
            ReviewTask.objects.bulk_create(
                ReviewTask(run=run, pipeline=pipeline, position=1, kind=ReviewTask.Kind.PRE_PUBLICATION,
                           reasons=decision["reasons"], reason_codes=",always,low_confidence,", confidence=0.5,
                           deadline_at=now + timedelta(minutes=done + i), created_at=now,
                           second_deadline_at=now + timedelta(hours=8))
                for i, run in enumerate(runs)
            )  # fmt: skip
        done += count
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for table in ("pipelines_run", "pipelines_steprun", "reviews_reviewtask"):
                cursor.execute(f"ANALYZE {table}")
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
