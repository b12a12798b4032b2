"""Operations instruments: Prometheus metrics, structured-log context and
OpenTelemetry traces (docs/operations.md).

Two kinds of module live here. ``instruments`` and ``tracing`` import no Keel
app, so any layer (the engine, the providers) may call them: they are the
one-call hooks (with ``config.logcontext``, the log lines' context, which sits
beside the log formats it feeds). ``events``, ``collector``, ``views``,
``middleware`` and ``propagation`` are the outer shell: they read every app's
models, and nothing below them imports them.
"""
