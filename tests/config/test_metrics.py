"""/metrics: who may scrape it, and what it says after demo runs on a real worker."""

import io
import logging
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Sum
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from config.observability.multiproc import metrics_dir_prepare
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.engine import run_execute, run_start
from reviews.models import ReviewTask
from tests.config.scrape import TOKEN, scrape, value
from tests.workers import celery_worker

PIPELINE = "support-triage"
FINAL = ("completed", "failed", "rejected", "cancelled")
TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved since Monday.",
          "customer_email": "ada@example.com"}  # fmt: skip


@pytest.fixture
def metrics_token(settings):
    settings.KEEL_METRICS_TOKEN = TOKEN
    settings.KEEL_METRICS_ALLOWED_NETWORKS = []


def test_metrics_are_off_until_a_token_or_a_network_is_set(client, db, settings):
    settings.KEEL_METRICS_TOKEN, settings.KEEL_METRICS_ALLOWED_NETWORKS = None, []
    assert client.get("/metrics", headers={"Authorization": "Bearer anything"}).status_code == 404


def test_a_scraper_needs_the_token_and_the_token_is_never_logged(client, db, metrics_token, caplog):
    caplog.set_level(logging.DEBUG)
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 403
    assert client.post("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
    assert client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert any("path=/metrics status=403" in r.getMessage() for r in caplog.records)
    assert not any(TOKEN in r.getMessage() for r in caplog.records)


def test_an_allowed_network_may_scrape_without_the_token(client, db, settings):
    settings.KEEL_METRICS_TOKEN, settings.KEEL_METRICS_ALLOWED_NETWORKS = None, ["10.1.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1").status_code == 403
    # A forwarded address counts only through a trusted proxy (config.security.client_ip).
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 403
    settings.KEEL_TRUSTED_PROXIES = ["10.2.0.1"]
    assert client.get("/metrics", REMOTE_ADDR="10.2.0.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 200


def _broker():
    broker = django_settings.CELERY_BROKER_URL
    return None if broker.startswith("filesystem") else broker


@pytest.mark.django_db(transaction=True)
def test_a_scrape_after_demo_runs_on_a_worker_counts_what_the_database_holds(client, metrics_token, tmp_path):
    call_command("keel_demo", stdout=io.StringIO())  # the configuration, and its release's evaluation
    # The files of processes gone (earlier tests' workers) go now, not when this test's worker starts.
    metrics_dir_prepare()
    before = scrape(client)
    with celery_worker(var_dir=django_settings.VAR_DIR, broker_url=_broker(), log_path=tmp_path / "worker.log"):
        call_command("keel_demo", "--runs", "20", stdout=io.StringIO())
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    runs = Run.objects.filter(pipeline__slug=PIPELINE)
    by_status = dict(runs.values_list("status").annotate(n=Count("pk")).order_by())
    assert sum(by_status.values()) == 20 and by_status.get("waiting_review", 0) >= 1
    # Counted once each, in the process that committed them (run.started here, the rest on the worker).
    assert delta("keel_runs_started_total", pipeline=PIPELINE) == 20
    for status in FINAL:
        assert delta("keel_runs_finished_total", pipeline=PIPELINE, status=status) == by_status.get(status, 0)
        assert delta("keel_run_duration_seconds_count", pipeline=PIPELINE, status=status) == by_status.get(status, 0)
    assert delta("keel_run_duration_seconds_sum", pipeline=PIPELINE, status="completed") > 0
    # Stored state, read at the scrape.
    assert value(after, "keel_runs_active", pipeline=PIPELINE, status="waiting_review") == by_status["waiting_review"]
    for kind, count in ReviewTask.objects.filter(status="open").values_list("kind").annotate(n=Count("pk")):
        assert value(after, "keel_review_tasks_open", pipeline=PIPELINE, kind=kind) == count
    assert value(after, "keel_review_tasks_overdue", pipeline=PIPELINE) == 0
    assert value(after, "keel_review_task_oldest_age_seconds", pipeline=PIPELINE) >= 0
    assert value(after, "keel_audit_chain_head_seq") == AuditEvent.objects.order_by("-seq").first().seq
    # Every run executed its seven steps up to the gate; both model steps called their model once.
    steps = StepRun.objects.filter(run__in=runs)
    for kind, count in steps.values_list("kind").annotate(n=Count("pk")).order_by():
        assert delta("keel_step_duration_seconds_count", kind=kind, outcome="ok") == count
    for position, model in ((3, "keyword-classifier"), (5, "template-drafter")):
        calls = steps.filter(position=position)
        tokens = calls.aggregate(i=Sum("input_tokens"), o=Sum("output_tokens"))
        labels = {"provider": "builtin", "model": model}
        assert delta("keel_model_calls_total", outcome="ok", **labels) == calls.count() == 20
        assert delta("keel_model_calls_total", outcome="error", **labels) == 0
        assert delta("keel_model_call_duration_seconds_count", **labels) == 20
        assert delta("keel_model_tokens_total", direction="input", **labels) == tokens["i"] > 0
        assert delta("keel_model_tokens_total", direction="output", **labels) == tokens["o"] > 0
    # No run id, user or input ever becomes a label.
    labels = {name for _, pairs in after for name, _ in pairs}
    assert labels <= {"pipeline", "status", "kind", "outcome", "provider", "model", "direction", "le", "environment",
                      "scope", "name", "unit", "limit", "trigger", "result"}  # fmt: skip


def test_a_run_the_engine_ends_is_timed_from_what_it_holds_not_read_back(
    client, db, metrics_token, django_capture_on_commit_callbacks
):
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug=PIPELINE)
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
    before = scrape(client)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = run_execute(run.pk)
    assert run.status == "completed"  # a parcel question passes the demo's gate
    with CaptureQueriesContext(connection) as queries:
        for callback in callbacks:  # after the commit: the counters and the duration
            callback()
    assert [q["sql"] for q in queries.captured_queries if "pipelines_run" in q["sql"]] == []
    after = scrape(client)
    stored = Run.objects.get(pk=run.pk)
    count = value(after, "keel_run_duration_seconds_count", pipeline=PIPELINE, status="completed") - value(
        before, "keel_run_duration_seconds_count", pipeline=PIPELINE, status="completed"
    )
    seconds = value(after, "keel_run_duration_seconds_sum", pipeline=PIPELINE, status="completed") - value(
        before, "keel_run_duration_seconds_sum", pipeline=PIPELINE, status="completed"
    )
    assert count == 1
    assert seconds == pytest.approx((stored.finished_at - stored.created_at).total_seconds(), abs=1e-6)


def test_preparing_the_folder_removes_only_the_files_of_processes_gone(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    files = {name: tmp_path / name for name in (f"counter_{os.getpid()}.db", f"histogram_{os.getpid()}.db",
                                                f"counter_{gone.pid}.db", f"histogram_{gone.pid}.db")}  # fmt: skip
    for path in files.values():
        path.write_bytes(b"")
    removed = metrics_dir_prepare(tmp_path)
    assert sorted(p.name for p in removed) == [f"counter_{gone.pid}.db", f"histogram_{gone.pid}.db"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"counter_{os.getpid()}.db", f"histogram_{os.getpid()}.db"]
