"""The API as a business system meets it: run creations a second, against the
same server answering ``/health/live`` and against a bare WSGI app.

- ``api_create_ratio``: ``POST /api/v1/pipelines/support-triage/runs`` (a demo
  ticket, JSON, a workspace token of the demo's prompt engineer, a fresh
  idempotency key each) per second, over ``GET /health/live`` per second.
- ``api_create_vs_bare_wsgi``: the same creations per second over a bare WSGI
  app's answers per second (``bare_wsgi.py``: no Django) under the same gunicorn.
- ``api_create_p99_ms``: the creations' 99th-percentile latency.

Keel runs under gunicorn as the production guide runs it (``config.wsgi``,
sync workers, one more than cores, DEBUG off, rate limits counted in Redis),
from the checkout measured and its own virtualenv; the load comes from
``wrk`` (a C load generator: ``WRK_CONNECTIONS`` connections on as many threads
as cores), so the client is not what limits the answers a second. Each
repeat measures every (server, request) in turn, the order rotating; a ratio
is the repeat's own. Runs are enqueued on the side's Redis database (flushed
before and after); no worker takes them, so the figures are the web side's.
"""

from contextlib import ExitStack

from tests.bench import outside
from tests.bench.outside import Checkout

REPEATS = 5
SECONDS = 5.0
WARM_UP_SECONDS = 2.0
TICKET = {
    "subject": "Where is my parcel?",
    "body": "The tracking has not moved since Monday; order 4711.",
    "customer_email": "ada@example.com",
}
CREATE_PATH = "/api/v1/pipelines/support-triage/runs"


def measure(checkouts: list[Checkout]) -> dict[str, dict[str, list[float]]]:
    tokens = {}
    envs = {}
    for checkout in checkouts:
        envs[checkout.side] = outside.env_for(checkout, "api")
        outside.redis_flush(checkout.redis_url)
        tokens[checkout.side] = outside.demo_ready(checkout, envs[checkout.side])
    head = checkouts[-1]
    try:
        with ExitStack() as stack:
            bases = {c.side: stack.enter_context(outside.keel_server(c, envs[c.side], "api")) for c in checkouts}
            bare = stack.enter_context(
                outside.gunicorn(
                    head.python,
                    "bare_wsgi:application",
                    cwd=outside.HERE,
                    env=envs[head.side],
                    log=head.var_dir("api") / "bare-gunicorn.log",
                )  # fmt: skip
            )
            loads = {"bare": lambda seconds: outside.wrk(f"{bare}/health/live", seconds=seconds)}
            for side, base in bases.items():
                loads[f"{side}:live"] = lambda seconds, base=base: outside.wrk(f"{base}/health/live", seconds=seconds)
                loads[f"{side}:create"] = lambda seconds, base=base, side=side: outside.wrk(
                    f"{base}{CREATE_PATH}", seconds=seconds, post=TICKET, token=tokens[side]
                )
            for load in loads.values():  # imports, connections, caches
                load(WARM_UP_SECONDS)
            figures = {c.side: {"api_create_ratio": [], "api_create_vs_bare_wsgi": [], "api_create_p99_ms": [],
                                "api_create_rps": [], "health_live_rps": [], "bare_wsgi_rps": []}
                       for c in checkouts}  # fmt: skip
            for repeat in range(REPEATS):
                results = {name: loads[name](SECONDS) for name in outside.rotations(list(loads), repeat)}
                for side, values in figures.items():
                    create, live, bare_rate = results[f"{side}:create"], results[f"{side}:live"], results["bare"]
                    values["api_create_ratio"].append(create["rps"] / live["rps"])
                    values["api_create_vs_bare_wsgi"].append(create["rps"] / bare_rate["rps"])
                    values["api_create_p99_ms"].append(create["p99_ms"])
                    values["api_create_rps"].append(create["rps"])
                    values["health_live_rps"].append(live["rps"])
                    values["bare_wsgi_rps"].append(bare_rate["rps"])
                print(f"  repeat {repeat + 1}/{REPEATS}: " + ", ".join(
                    f"{side} ratio {values['api_create_ratio'][-1]:.3f}" for side, values in figures.items()
                ), flush=True)  # fmt: skip
    finally:
        for checkout in checkouts:
            outside.redis_flush(checkout.redis_url)
    return figures
