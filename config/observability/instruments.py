"""The event metrics, and the one-call hooks that measure a step and a model
call (a histogram, a span, the log context).

Counters and histograms are written by whichever process sees the event (a
gunicorn worker, a Celery child) into PROMETHEUS_MULTIPROC_DIR, which the
settings point at KEEL_METRICS_DIR before this module is first imported; the
/metrics view adds the files up (``collector.metrics_registry``). Labels are
bounded: pipeline slugs, step kinds, providers and model names come from the
configuration, statuses from fixed lists; never a run id or a user.
"""

import logging
import time
from contextlib import contextmanager

from opentelemetry import trace
from prometheus_client import Counter, Histogram

from config.logcontext import log_context_bind

# Seconds: a builtin model answers in microseconds, a remote one in seconds,
# a run that waits for review in hours.
_STEP_BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120, 600)
_RUN_BUCKETS = (0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)

RUNS_STARTED = Counter("keel_runs_started", "Runs started (run.started committed).", ["pipeline"])
RUNS_FINISHED = Counter("keel_runs_finished", "Runs that reached a final status, committed.", ["pipeline", "status"])
RUN_DURATION = Histogram(
    "keel_run_duration_seconds",
    "From a run's creation to its final status (queue, steps and review wait included).",
    ["pipeline", "status"],
    buckets=_RUN_BUCKETS,
)
STEP_DURATION = Histogram(
    "keel_step_duration_seconds", "One execution of one step, by kind.", ["kind", "outcome"], buckets=_STEP_BUCKETS
)
MODEL_CALLS = Counter("keel_model_calls", "Model calls, by outcome.", ["provider", "model", "outcome"])
MODEL_CALL_DURATION = Histogram(
    "keel_model_call_duration_seconds",
    "One model call, its retries included.",
    ["provider", "model"],
    buckets=_STEP_BUCKETS,
)
MODEL_TOKENS = Counter("keel_model_tokens", "Tokens of model calls.", ["provider", "model", "direction"])
MODEL_COST = Counter("keel_model_cost", "Cost of model calls, in the model config's currency.", ["provider", "model"])
DELIVERY_ATTEMPTS = Counter(
    "keel_delivery_attempts", "Delivery attempts (webhooks, notices), by outcome.", ["pipeline", "outcome"]
)
ROLLBACKS = Counter(
    "keel_rollbacks", "Rollbacks, by kind (deployment, canary) and trigger (automatic, manual).",
    ["pipeline", "kind", "trigger"],
)  # fmt: skip
CHAIN_VERIFICATIONS = Counter("keel_audit_verifications", "Audit chain checks, by result.", ["result"])

_tracer = trace.get_tracer("keel")
logger = logging.getLogger("keel.runs")


@contextmanager
def step_observed(*, kind: str, position: int, pipeline: str, release: int):
    """Around one step's execution: its span, its duration by kind and
    outcome, and ``step`` in the log context. Inputs and outputs never become
    attributes."""
    log_context_bind(step=position)
    attributes = {"keel.pipeline": pipeline, "keel.release": release, "keel.step.kind": kind,
                  "keel.step.position": position}  # fmt: skip
    began = time.perf_counter()
    outcome = "error"
    try:
        with _tracer.start_as_current_span(f"step {kind}", attributes=attributes):
            yield
        outcome = "ok"
    finally:
        seconds = time.perf_counter() - began
        STEP_DURATION.labels(kind, outcome).observe(seconds)
        logger.debug("step %s (%s): %s in %.3f s", position, kind, outcome, seconds)
        log_context_bind(step=None)


class ModelCall:
    """What a finished model call reports: its tokens and cost."""

    def __init__(self, span):
        self.span = span
        self.input_tokens = self.output_tokens = 0
        self.cost = 0.0

    def record(self, *, input_tokens: int, output_tokens: int, cost: float) -> None:
        self.input_tokens, self.output_tokens, self.cost = input_tokens, output_tokens, cost
        self.span.set_attribute("gen_ai.usage.input_tokens", input_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", output_tokens)


@contextmanager
def model_call_observed(*, provider: str, model: str):
    """Around one model call: its span (provider, model, tokens; never the
    prompt or the reply), latency, tokens, cost and outcome."""
    began = time.perf_counter()
    with _tracer.start_as_current_span(
        f"model {provider}", attributes={"gen_ai.system": provider, "gen_ai.request.model": model}
    ) as span:
        call = ModelCall(span)
        try:
            yield call
        except Exception:
            MODEL_CALLS.labels(provider, model, "error").inc()
            raise
        finally:
            MODEL_CALL_DURATION.labels(provider, model).observe(time.perf_counter() - began)
    MODEL_CALLS.labels(provider, model, "ok").inc()
    logger.debug("model call %s/%s: %s+%s tokens", provider, model, call.input_tokens, call.output_tokens)
    MODEL_TOKENS.labels(provider, model, "input").inc(call.input_tokens)
    MODEL_TOKENS.labels(provider, model, "output").inc(call.output_tokens)
    MODEL_COST.labels(provider, model).inc(call.cost)
