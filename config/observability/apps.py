from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    """Connects the counters to the audit chain's commits, the request id to
    Celery's task messages, and (with OTEL_EXPORTER_OTLP_ENDPOINT set) the
    OpenTelemetry instrumentations."""

    name = "config.observability"
    label = "observability"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.conf import settings

        from config.observability import events, propagation, tracing  # noqa: F401 - their receivers connect

        if settings.KEEL_TRACING:
            tracing.tracing_setup()
