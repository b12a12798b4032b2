"""Traces (optional): with a tracer provider set up, a run's Celery task holds a
span per step, and each model step a span per model call naming the provider,
model and tokens but never an input or an output; requests get server spans."""

import io
import json

import pytest
from django.core.management import call_command
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from audit.context import acting_as
from config.observability.tracing import tracing_setup, tracing_teardown
from pipelines.models import Pipeline
from pipelines.runs.engine import run_start
from pipelines.tasks.runs import run_execute_task

TICKET = {
    "subject": "Where is my parcel?",
    "body": "Hello, Jane Doe here: the tracking has not moved since Monday.",
    "customer_email": "jane.doe@example.com",
}


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing_setup(processor=SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        tracing_teardown()
        exporter.shutdown()  # later spans of this process are not kept


# The task closes its connection before and after (close_old_connections), as on a worker.
@pytest.mark.django_db(transaction=True)
def test_a_runs_task_holds_its_steps_and_their_model_calls(spans):
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    with acting_as("keel_demo"):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli", enqueue=False)
    spans.clear()  # the demo's own evaluation made model calls too
    assert run_execute_task.apply(args=[run.pk]).get() == "completed"

    finished = spans.get_finished_spans()
    [task] = [s for s in finished if s.kind == SpanKind.CONSUMER and "pipelines.execute_run" in s.name]
    steps = sorted(
        (s for s in finished if s.name.startswith("step ")), key=lambda s: s.attributes["keel.step.position"]
    )
    assert [s.attributes["keel.step.kind"] for s in steps] == [
        "validate", "redact", "model", "parse", "model", "gate", "deliver",
    ]  # fmt: skip
    for step in steps:
        assert step.parent.span_id == task.context.span_id and step.context.trace_id == task.context.trace_id
        assert step.attributes["keel.pipeline"] == "support-triage"
        assert step.attributes["keel.release"] == run.release.number
    models = [s for s in finished if s.name.startswith("model ")]
    assert len(models) == 2
    model_steps = {s.context.span_id: s for s in steps if s.attributes["keel.step.kind"] == "model"}
    for call in models:
        assert call.parent.span_id in model_steps
        assert call.attributes["gen_ai.system"] == "builtin"
        assert call.attributes["gen_ai.request.model"] in ("keyword-classifier", "template-drafter")
        assert call.attributes["gen_ai.usage.input_tokens"] > 0 and call.attributes["gen_ai.usage.output_tokens"] > 0
    # No attribute of any span holds the ticket or a reply.
    every_value = json.dumps([dict(s.attributes) for s in finished], default=str)
    for fragment in ("Jane Doe", "jane.doe", "tracking has not moved", "parcel"):
        assert fragment not in every_value


def test_a_request_gets_a_server_span(client, db, spans):
    assert client.get("/health/live").status_code == 200
    [server] = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    assert server.attributes.get("http.route") == "health/live" or "health" in server.name
