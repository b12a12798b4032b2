"""The auditor's desk at scale, over the 1,000,000 events bench_audit seeds
(and keeps between runs).

- ``export_events_per_s``: a whole-chain JSONL export (``export_jsonl``), bytes
  written to a sink, in events per second. Target: at least 50,000.
- ``export_peak_mb``: the peak resident memory of a process doing only that
  export (forked, so the parent's own history does not count). Target: under 200.
- ``timeline_p95_ms``: the timeline page (view and template, a superuser's
  scope) for a spread of filters and pages deep into the chain, 95th
  percentile. Target: under 150.
"""

import json
import os
import resource
import statistics
import time

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory

from audit.exports import AuditFilter, AuditScope, export_jsonl, export_plan
from audit.views import timeline
from tests.bench.bench_audit import SEED_COUNT, _ensure_seeded

TIMELINE_ROUNDS = 5


def run() -> dict[str, float]:
    _ensure_seeded()
    figures = _export_figures()
    figures["timeline_p95_ms"] = _timeline_p95()
    return figures


def _export_once() -> dict:
    plan = export_plan(scope=AuditScope(everything=True), audit_filter=AuditFilter())
    started = time.perf_counter()
    written = 0
    for chunk in export_jsonl(plan):
        written += len(chunk)
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"events": plan.last_seq - plan.first_seq + 1, "seconds": seconds, "bytes": written, "peak_kb": peak_kb}


def _export_figures() -> dict[str, float]:
    # The child opens its own connection; neither may share the other's.
    connection.close()
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover
        try:
            os.close(reader)
            outcome = _export_once()
            connection.close()
            with os.fdopen(writer, "w") as pipe:
                json.dump(outcome, pipe)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        outcome = json.loads(pipe.read())
    os.waitpid(pid, 0)
    print(f"exported {outcome['events']:,} events, {outcome['bytes'] / 1e6:.0f} MB, in {outcome['seconds']:.1f} s")
    return {
        "export_events_per_s": round(outcome["events"] / outcome["seconds"]),
        "export_peak_mb": round(outcome["peak_kb"] / 1024, 1),
    }


def _timeline_p95() -> float:
    user = get_user_model()(username="bench-auditor", is_superuser=True, is_active=True, is_staff=True)
    factory = RequestFactory()
    deep = SEED_COUNT // 3
    queries = [
        {},
        {"action": "review"},
        {"action": "delivery.sent"},
        {"actor": "ada"},
        {"run": str(deep // 5)},
        {"object": f"run:{deep // 5}"},
        {"before": str(deep)},
        {"action": "run", "before": str(deep)},
        {"since": "2026-01-01T00:01:00", "until": "2026-01-01T00:01:30"},
    ]
    samples = []
    for _ in range(TIMELINE_ROUNDS):
        for query in queries:
            request = factory.get("/audit/", query)
            request.user = user
            started = time.perf_counter()
            response = timeline(request)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (query, response.status_code)
    return round(statistics.quantiles(samples, n=20)[-1], 1)
