"""PDFs built to cost minutes of parsing, posted to a real gunicorn whose
worker timeout is 5 seconds: the request only stores the bytes, so it is
answered before that timeout for any upload up to the size limit (no worker is
killed), and the run fails on a Celery worker with the reason, after limits
checked before any text is extracted."""

import os
import signal
import socket
import subprocess
import sys

import httpx
import pytest
from django.conf import settings

from audit.context import acting_as
from pipelines.integration.tokens import token_create
from pipelines.models import Document, Run
from tests import factories
from tests.pipelines.integration.api.conftest import deploy
from tests.pipelines.integration.api.pdfs import pdf_bomb, pdf_with_lone_surrogate, pdf_with_pages, pdf_with_text
from tests.workers import ROOT, celery_worker, database_url, wait_for

WORKER_TIMEOUT = 5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def gunicorn(tmp_path):
    """``gunicorn config.wsgi`` with one sync worker and a 5-second worker timeout, on the test database."""
    port = _free_port()
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "KEEL_VAR_DIR": str(settings.VAR_DIR)}
    args = [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
            "--workers", "1", "--timeout", str(WORKER_TIMEOUT), "--log-level", "info"]  # fmt: skip
    with open(log, "w") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{base}/health/live", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        assert wait_for(up, timeout=60), log.read_text()[-3000:]
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.django_db(transaction=True)
def test_pdf_bombs_are_answered_at_once_by_gunicorn_and_fail_their_runs_on_the_worker(
    gunicorn, acme, author, superuser, tmp_path
):
    base, log = gunicorn
    with acting_as(superuser):
        pipeline = factories.PipelineFactory(workspace=acme, slug="contracts", input_schema={"type": "object"})
        factories.StepFactory(pipeline=pipeline, position=1, name="ingest", kind="ingest",
                              config={"text_field": "document.text"})  # fmt: skip
        factories.StepFactory(pipeline=pipeline, position=2, name="store", kind="deliver",
                              config={"channel": "stored"})  # fmt: skip
        _, token = token_create(user=author, name="dms", pipeline=deploy(pipeline, superuser), actor=author)
    uploads = {
        # 999 pages drawing one 150 KB content stream: minutes of pypdf in the request, before.
        "bomb": (pdf_bomb(), "of content streams"),
        # 50,000 pages (about 8 MB, under the 10 MB limit): seconds of walking the page tree, before.
        "many-pages": (pdf_with_pages(50_000), "The PDF has 50000 pages; the limit is 1000."),
        "lone-surrogate": (pdf_with_lone_surrogate(), "lone surrogate (U+D83D)"),
        "fine": (pdf_with_text("Clause 1. Payment within 30 days."), None),
    }
    runs = {}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for name, (content, _) in uploads.items():
            files = {"document": (f"{name}.pdf", content, "application/pdf")}
            response = client.post(f"/api/v1/pipelines/{pipeline.slug}/runs", files=files)
            # Under the worker timeout: a worker killed mid-request would have closed the connection instead.
            assert response.status_code == 201, (name, response.text, log.read_text()[-3000:])
            runs[name] = response.json()["id"]
    served = log.read_text()
    assert "WORKER TIMEOUT" not in served and served.count("Booting worker") == 1, served[-3000:]
    queued = Run.objects.filter(pk__in=runs.values())
    assert {run.status for run in queued} == {Run.Status.QUEUED} and Document.objects.count() == len(uploads)

    broker = settings.CELERY_BROKER_URL
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                       log_path=tmp_path / "worker.log"):  # fmt: skip
        settled = wait_for(lambda: not queued.filter(status__in=["queued", "running"]).exists(), timeout=120)
    assert settled, (tmp_path / "worker.log").read_text()[-3000:]

    for name, (_, reason) in uploads.items():
        run = Run.objects.get(pk=runs[name])
        if reason is None:
            assert run.status == Run.Status.COMPLETED, run.failure_reason
            assert "Payment within 30 days" in run.output["document"]["text"]
        else:
            assert run.status == Run.Status.FAILED and run.failure_reason.startswith("document: "), name
            assert reason in run.failure_reason, (name, run.failure_reason)
