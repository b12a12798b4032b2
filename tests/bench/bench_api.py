"""The API: how much of a web process's capacity run creation gets.

- ``api_create_rps``: ``POST /api/v1/pipelines/support-triage/runs`` (a demo
  ticket, JSON, the demo engineer's service token, a fresh idempotency key
  each) per second.
- ``health_live_rps``: ``GET /health/live`` per second: the same server doing
  nothing but answering.
- ``api_create_ratio``: the first over the second. Target: at least 0.3.

Both against one gunicorn (``GUNICORN_WORKERS`` sync workers, DEBUG off, as
production runs it) on 127.0.0.1, in the same run, each for ``SECONDS`` from
``CLIENTS`` client threads after a short warm-up; measured in turn
``REPEATS`` times, the order alternating. The figures are medians, the ratio
the median pair's (``_min`` and ``_max`` show the spread). Runs are enqueued on the
Redis database ``KEEL_BENCH_API_BROKER_URL`` (flushed before and after); no
worker takes them, so the figure is the web side alone. Rate limits are
counted in Redis (``KEEL_BENCH_API_CACHE_URL``), as in production.
"""

import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from io import StringIO
from pathlib import Path

import httpx
from django.core.management import call_command

from tests.bench import in_turn

ROOT = Path(__file__).resolve().parents[2]
BROKER_URL = os.environ.get("KEEL_BENCH_API_BROKER_URL", "redis://127.0.0.1:6379/12")
# Rate limits counted in Redis, as the production guide has them (KEEL_CACHE_URL).
CACHE_URL = os.environ.get("KEEL_BENCH_API_CACHE_URL", "redis://127.0.0.1:6379/11")
# One sync worker more than cores, as the production guide runs it: a worker
# waits on the database and the broker, so one more keeps the cores busy, and
# more than that only contend. Measured on 2 cores, each server answering in
# turn in 4-second windows (medians of six or eight): 3 workers made 8 % more
# run creations a second than gunicorn's rule of thumb (2 × cores + 1 = 5) and
# answered /health/live 3 % faster; 4 made as many as 3, 2 made 11 % fewer.
GUNICORN_WORKERS = (os.cpu_count() or 1) + 1
CLIENTS = 8
# Pairs of the two measurements; the figure is the median pair's ratio. Five
# short pairs rather than three long ones: a shared machine changes speed
# within seconds, and the two sides of a shorter pair are measured closer together.
REPEATS = 5
SECONDS = 5.0
WARM_UP_SECONDS = 2.0
TICKET = {
    "subject": "Where is my parcel?",
    "body": "The tracking has not moved since Monday; order 4711.",
    "customer_email": "ada@example.com",
}


def run() -> dict[str, float]:
    # The client's own per-request log lines would cost it CPU the server shares.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    token = _token()
    _flush()
    port = _free_port()
    server = _gunicorn(port)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base, server)
        headers = {"Authorization": f"Bearer {token}"}

        def live() -> float:
            return _rate(lambda client: client.get(f"{base}/health/live"), expect=200)

        def create() -> float:
            return _rate(
                lambda client: client.post(
                    f"{base}/api/v1/pipelines/support-triage/runs",
                    json={"input": TICKET, "idempotency_key": uuid.uuid4().hex, "source": "bench"},
                    headers=headers,
                ),
                expect=201,
            )

        lives, creates = in_turn(live, create, REPEATS)  # the ratio is each pair's
    finally:
        server.terminate()
        server.wait(timeout=30)
        _flush()
    ratios = [made / answered for made, answered in zip(creates, lives, strict=True)]
    return {
        "health_live_rps": statistics.median(lives),
        "api_create_rps": statistics.median(creates),
        "api_create_ratio": round(statistics.median(ratios), 4),
        "api_create_ratio_min": round(min(ratios), 4),
        "api_create_ratio_max": round(max(ratios), 4),
    }


def _token() -> str:
    from django.contrib.auth import get_user_model

    from pipelines.integration.tokens import token_create
    from pipelines.models import Pipeline

    if not Pipeline.objects.filter(slug="support-triage").exists():
        call_command("keel_demo", stdout=StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    # Not a superuser's token: the demo's prompt engineer's own, whose role
    # grants the change right that starting a run needs, so every request pays
    # the object-permission checks that production pays.
    engineer = get_user_model().objects.get(username="engineer")
    _, plain = token_create(user=engineer, name="api benchmark", pipeline=pipeline, actor=engineer)
    return plain


def _flush() -> None:
    import redis

    for url in (BROKER_URL, CACHE_URL):
        redis.Redis.from_url(url).flushdb()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _gunicorn(port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "bench-" + uuid.uuid4().hex,
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "CELERY_BROKER_URL": BROKER_URL,
        "KEEL_CACHE_URL": CACHE_URL,
        "KEEL_API_RATE_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}",
         "--workers", str(GUNICORN_WORKERS), "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip


def _wait_until_up(base: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("gunicorn exited before answering")
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


def _rate(request, *, expect: int) -> float:
    """Requests per second from CLIENTS threads over SECONDS, after a warm-up."""
    counts = [0] * CLIENTS
    failures: list[str] = []
    start_measuring = time.monotonic() + WARM_UP_SECONDS
    stop = start_measuring + SECONDS

    def client_loop(index: int) -> None:
        with httpx.Client(timeout=30) as client:
            while (now := time.monotonic()) < stop:
                response = request(client)
                if response.status_code != expect:
                    failures.append(f"{response.status_code}: {response.text[:200]}")
                    return
                if now >= start_measuring:
                    counts[index] += 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"unexpected answer: {failures[0]}")
    return sum(counts) / SECONDS
