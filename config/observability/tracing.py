"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: spans
for requests (Django), Celery tasks, outbound HTTP (httpx: model and webhook
calls), and Keel's own spans for each step and model call
(``instruments.step_observed`` and ``model_call_observed``), whose attributes
name the pipeline, release, step kind, provider, model and tokens, never an
input or an output.

The exporter reads the standard OTEL_* variables (endpoint, headers,
OTEL_SERVICE_NAME); spans leave in batches from a background thread, which
the SDK restarts in each forked worker process.
"""

from django.conf import settings
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.instrumentation.django import DjangoInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def tracing_setup(*, processor: SpanProcessor | None = None) -> TracerProvider:
    """Install Keel's tracer provider (once per process) with ``processor``
    (default: OTLP over HTTP in batches), and instrument Django, Celery and
    httpx. A later call adds its processor to the provider already set (a
    test's in-memory exporter)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        resource = Resource.create({SERVICE_NAME: settings.OTEL_SERVICE_NAME, SERVICE_VERSION: settings.KEEL_VERSION})
        provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(provider)
    if processor is None:
        # Imported here: the exporter pulls in protobuf, needed only where traces are sent.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processor = BatchSpanProcessor(OTLPSpanExporter())
    provider.add_span_processor(processor)
    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
    return provider


def tracing_teardown() -> None:
    """Undo the instrumentations (a test that set them up)."""
    for instrumentor in (DjangoInstrumentor(), CeleryInstrumentor(), HTTPXClientInstrumentor()):
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
