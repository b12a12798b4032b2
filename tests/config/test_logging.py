"""Structured logs: one JSON object per line (LOG_FORMAT=json) with the context
in force; the request id from the web request to the worker's lines of its run;
no personal data in any line."""

import io
import json
import logging

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

from audit.context import acting_as
from config.logcontext import log_context_bind, log_scope
from config.logformat import JsonFormatter, SingleLineFormatter, scrub
from pipelines.integration.tokens import token_create
from pipelines.models import Pipeline, Run
from tests.workers import celery_worker, wait_for

TICKET = {
    "subject": "Refund for order 7731",
    "body": "Hello, this is Jane Doe. Please call me back about my refund.",
    "customer_email": "jane.doe@example.com",
}
PERSONAL = ("Jane Doe", "jane.doe", "7731")


@pytest.fixture
def json_lines(caplog):
    """Every line this process logs while the test runs, formatted as LOG_FORMAT=json writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    caplog.set_level(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_json_line_holds_time_level_logger_message_and_the_context(json_lines):
    with log_scope(request_id="req-1"):
        log_context_bind(pipeline="support-triage", run_id=42, step=3, workspace=7, task_id="t-1")
        logging.getLogger("keel.test").warning("a line with\nan attempt at a second one")
    [line] = [entry for entry in json_lines() if entry["logger"] == "keel.test"]
    assert line["time"].endswith("Z") and line["level"] == "WARNING"
    assert line["message"] == "a line with\nan attempt at a second one"  # escaped by JSON, one physical line
    assert {k: line[k] for k in ("request_id", "pipeline", "run_id", "step", "workspace", "task_id", "user")} == {
        "request_id": "req-1", "pipeline": "support-triage", "run_id": 42, "step": 3, "workspace": 7,
        "task_id": "t-1", "user": "system",
    }  # fmt: skip


def test_a_request_id_is_taken_from_the_request_and_returned_in_the_response(client, outsider, json_lines):
    client.force_login(outsider)
    response = client.get(reverse("audit-timeline"), headers={"X-Request-ID": "4bf92f3577b34da6a3ce929d0e0e4736"})
    assert response.status_code == 403
    assert response["X-Request-ID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    [refused] = [entry for entry in json_lines() if entry["message"].startswith("access refused")]
    assert refused["request_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert refused["user"] == outsider.pk and "outsider" not in json.dumps(refused)


@pytest.mark.parametrize("given", ["x" * 129, "id with spaces", "id\r\nSet-Cookie: a=b", "", "ünïcode"])
def test_a_malformed_request_id_is_replaced_by_a_new_one(client, db, given):
    response = client.get("/health/live", headers={"X-Request-ID": given})
    returned = response["X-Request-ID"]
    assert returned != given and len(returned) == 32 and int(returned, 16) >= 0


def test_every_response_gets_a_request_id_of_its_own(client, db):
    first, second = client.get("/health/live")["X-Request-ID"], client.get("/health/live")["X-Request-ID"]
    assert first != second


def test_addresses_and_tokens_are_scrubbed_from_both_formats():
    text = "mail jane.doe@example.com with Authorization: Bearer abcdef123456 and password=hunter22"
    assert scrub(text) == "mail [email] with Authorization: Bearer [redacted] and password=[redacted]"
    record = logging.LogRecord("keel.test", logging.INFO, __file__, 1, "to %s", ("jane.doe@example.com",), None)
    assert "jane.doe" not in SingleLineFormatter("%(message)s").format(record)
    assert "jane.doe" not in JsonFormatter().format(record)


def _broker():
    broker = django_settings.CELERY_BROKER_URL
    return None if broker.startswith("filesystem") else broker


@pytest.mark.django_db(transaction=True)
def test_a_runs_request_id_reaches_its_worker_lines_and_no_line_holds_its_personal_data(client, tmp_path, json_lines):
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    lead = get_user_model().objects.get(username="lead")
    with acting_as(lead):
        _, token = token_create(user=lead, name="helpdesk", actor=lead, pipeline=pipeline)
    log_path = tmp_path / "worker.log"
    worker_env = {"LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG"}
    with celery_worker(var_dir=django_settings.VAR_DIR, broker_url=_broker(), log_path=log_path, extra_env=worker_env):
        response = client.post(
            f"/api/v1/pipelines/{pipeline.slug}/runs", json.dumps({"input": TICKET}), content_type="application/json",
            headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-e2e-42"},
        )  # fmt: skip
        assert response.status_code == 201, response.content
        assert response["X-Request-ID"] == "req-e2e-42"
        run = Run.objects.get(pk=response.json()["id"])
        settled = wait_for(lambda: Run.objects.get(pk=run.pk).status not in ("queued", "running"), timeout=90)
        assert settled, log_path.read_text()[-3000:]
    text = log_path.read_text()
    worker_lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    run_lines = [line for line in worker_lines if line.get("run_id") == run.pk]
    assert run_lines, text[-3000:]
    assert {line["request_id"] for line in run_lines} == {"req-e2e-42"}
    assert all(
        line["pipeline"] == "support-triage" and line["workspace"] == pipeline.workspace_id for line in run_lines
    )
    assert len({line["task_id"] for line in run_lines}) == 1
    assert {line["step"] for line in run_lines if "step" in line} == set(range(1, 7))  # held at the gate (6)
    assert any(line["message"].startswith("Task pipelines.execute_run[") for line in run_lines)
    # Neither the worker's lines nor this process's hold the customer's name, address or order.
    here = json.dumps(json_lines())
    for fragment in PERSONAL:
        assert fragment not in text and fragment not in here, fragment
