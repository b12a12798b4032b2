"""The API example the documentation gives for the demo works as written:
every shell block of README.md and docs/home-and-demo.md that creates a token
and calls the API is run with bash against a live server holding the demo
(only the address changes), and the runs it starts are the ones it says."""

import re
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command

from pipelines.models import Document, Run
from pipelines.runs.engine import run_execute
from tests.workers import ROOT, database_url

SOURCES = ("README.md", "docs/home-and-demo.md")


def api_examples() -> list[tuple[str, str]]:
    """(source, block) for each ```sh block that makes a token and calls the runs API;
    a block repeated word for word in a later source is run once (its idempotency keys
    would return the runs the first one made)."""
    found: dict[str, str] = {}
    for source in SOURCES:
        text = (ROOT / source).read_text()
        for block in re.findall(r"```sh\n(.*?)```", text, re.S):
            if "token_create" in block and "/api/v1/pipelines/" in block:
                found.setdefault(block, source)
    return [(source, block) for block, source in found.items()]


def test_the_docs_hold_an_api_example():
    assert api_examples()


def test_the_api_example_runs_as_written_against_the_demo(live_server, tmp_path, transactional_db):
    call_command("keel_demo")
    for source, block in api_examples():
        script = block.replace("http://127.0.0.1:8000", live_server.url).replace(
            ".venv/bin/python manage.py", f"{sys.executable} {ROOT / 'manage.py'}"
        )
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "DATABASE_URL": database_url(),
               "KEEL_VAR_DIR": str(settings.VAR_DIR)}  # fmt: skip
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, f"{source}: {done.stderr}"

        ticket = Run.objects.get(pipeline__slug="support-triage", idempotency_key="ticket-1001")
        letter = Run.objects.get(pipeline__slug="customer-letters", idempotency_key="letter-1001")
        assert ticket.input["subject"] == "Where is my parcel?"
        assert Document.objects.get(run=letter).filename == "letter.txt"
        assert f'"id":{letter.pk}' in done.stdout.replace(" ", "")  # the listing shows the letter's run
        # Worked here (no worker in this test): the ticket completes, the refund letter waits for a reviewer.
        assert run_execute(ticket.pk).status == Run.Status.COMPLETED
        letter = run_execute(letter.pk)
        assert letter.status == Run.Status.WAITING_REVIEW, letter.failure_reason
        assert letter.steps.get(kind="parse").output["label"] == "refund"
