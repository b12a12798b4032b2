"""End to end: runs posted over the API until every one has settled on a worker,
against a bare Celery app draining no-op tasks.

- ``e2e_runs_per_s``: demo tickets posted to ``POST
  /api/v1/pipelines/support-triage/runs`` by ``wrk`` for ``SECONDS`` (a workspace
  token of the demo's prompt engineer, a fresh idempotency key each), timed
  from the first request until every run created has settled (completed, or
  waiting for review at the demo's gate) on the worker. Creating the runs is
  inside the window, as it is for a user.
- ``bare_celery_tasks_per_s``: ``NOOP_TASKS`` no-op tasks of a bare Celery app
  (``bare_celery.py``: no Django, Celery's default settings and transport),
  sent from this process and timed until its broker holds none.
- ``e2e_vs_bare_celery``: the first over the second, each repeat's own.

Keel's web server and worker run as the production guide runs them (gunicorn
``config.wsgi`` and ``celery -A config worker``, one process more than cores,
DEBUG off), from the checkout measured; the bare worker has the same
concurrency. Whether the runs have settled is read from the side's database
by key range every ``SETTLED_POLL`` seconds (``pipelines_run``: the one table
name this benchmark knows). Each repeat measures every side in turn, the
order rotating.
"""

import socket
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

from celery import Celery

from tests.bench import outside
from tests.bench.bench_api import CREATE_PATH, TICKET
from tests.bench.outside import Checkout

REPEATS = 3
SECONDS = 5.0
NOOP_TASKS = 1000
WARM_SECONDS = 2.0
SETTLED_POLL = 0.05
TIMEOUT = 600
# Celery's default transport (AMQP) when a broker answers on its default
# address; else the bare app shares Redis like Keel (noted in the figures).
AMQP_DEFAULT = ("127.0.0.1", 5672)
# Celery's default broker URL, spelled out for the bare app in this process and
# its worker alike (the runner drops the caller's CELERY_BROKER_URL).
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def measure(checkouts: list[Checkout]) -> dict[str, dict[str, list[float]]]:
    envs, tokens = {}, {}
    for checkout in checkouts:
        envs[checkout.side] = outside.env_for(checkout, "e2e")
        outside.redis_flush(checkout.redis_url)
        tokens[checkout.side] = outside.demo_ready(checkout, envs[checkout.side])
    head = checkouts[-1]
    amqp = _answers(AMQP_DEFAULT)
    if not amqp:
        print("  no AMQP broker on 127.0.0.1:5672: the bare Celery app uses Redis instead", flush=True)
    bare_broker = AMQP_URL if amqp else f"{outside.REDIS}/{outside.REDIS_DB['bare']}"
    bare_env = {**envs[head.side], "CELERY_BROKER_URL": bare_broker}
    bare_app = Celery("bare", broker=bare_broker)
    try:
        with ExitStack() as stack:
            bases = {}
            for checkout in checkouts:
                env = envs[checkout.side]
                bases[checkout.side] = stack.enter_context(outside.keel_server(checkout, env, "e2e"))
                stack.enter_context(outside.keel_worker(checkout, env, "e2e"))
            stack.enter_context(
                outside.celery_worker(
                    head.python,
                    "bare_celery",
                    cwd=outside.HERE,
                    env=bare_env,
                    log=head.var_dir("e2e") / "bare-worker.log",
                )  # fmt: skip
            )
            _purge(bare_app)
            for checkout in checkouts:  # every process of each side has served runs
                _warm(bases[checkout.side], tokens[checkout.side], envs[checkout.side]["DATABASE_URL"])
            _noop_rate(bare_app, 50)
            loads = {"bare": lambda: _noop_rate(bare_app, NOOP_TASKS)}
            for checkout in checkouts:
                side = checkout.side
                loads[side] = lambda side=side: _e2e_rate(bases[side], tokens[side], envs[side]["DATABASE_URL"])
            figures = {c.side: {"e2e_vs_bare_celery": [], "e2e_runs_per_s": [], "bare_celery_tasks_per_s": []}
                       for c in checkouts}  # fmt: skip
            for repeat in range(REPEATS):
                results = {name: loads[name]() for name in outside.rotations(list(loads), repeat)}
                for side, values in figures.items():
                    values["e2e_vs_bare_celery"].append(results[side] / results["bare"])
                    values["e2e_runs_per_s"].append(results[side])
                    values["bare_celery_tasks_per_s"].append(results["bare"])
                print(f"  repeat {repeat + 1}/{REPEATS}: bare {results['bare']:.0f} tasks/s, " + ", ".join(
                    f"{side} {results[side]:.1f} runs/s" for side in figures
                ), flush=True)  # fmt: skip
    finally:
        for checkout in checkouts:
            outside.redis_flush(checkout.redis_url)
    for values in figures.values():
        values["bare_celery_amqp"] = [1.0 if amqp else 0.0] * REPEATS
    return figures


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=1):
            return True
    except OSError:
        return False


# Keel


class _Runs:
    """The runs past a key, read from the side's database."""

    def __init__(self, database_url: str) -> None:
        if database_url.startswith("postgres"):
            import psycopg

            self.connection = psycopg.connect(database_url, autocommit=True)
            self.marker = "%s"
        else:
            import sqlite3

            self.connection = sqlite3.connect(urlsplit(database_url).path, isolation_level=None)
            self.marker = "?"

    def last_id(self) -> int:
        return self.connection.execute("SELECT coalesce(max(id), 0) FROM pipelines_run").fetchone()[0]

    def counts(self, after: int) -> tuple[int, int, int]:
        """(created, unsettled, failed) among the runs past ``after``."""
        row = self.connection.execute(
            "SELECT count(*), coalesce(sum(CASE WHEN status IN ('queued', 'running') THEN 1 ELSE 0 END), 0),"
            " coalesce(sum(CASE WHEN status IN ('failed', 'cancelled') THEN 1 ELSE 0 END), 0)"
            f" FROM pipelines_run WHERE id > {self.marker}",
            [after],
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def close(self) -> None:
        self.connection.close()


def _settle(runs: _Runs, after: int) -> int:
    deadline = time.monotonic() + TIMEOUT
    while True:
        created, unsettled, failed = runs.counts(after)
        if failed:
            raise RuntimeError(f"{failed} of the benchmark's runs failed; see the worker's log under var/bench/")
        if not unsettled:
            return created
        if time.monotonic() > deadline:
            raise RuntimeError(f"{unsettled} of {created} runs did not settle within {TIMEOUT} s")
        time.sleep(SETTLED_POLL)


def _warm(base: str, token: str, database_url: str) -> None:
    """Load the side as the measurement will (every web and worker process
    serves some runs: imports, connections and caches made) until settled."""
    runs = _Runs(database_url)
    try:
        after = runs.last_id()
        outside.wrk(f"{base}{CREATE_PATH}", seconds=WARM_SECONDS, post=TICKET, token=token)
        _settle(runs, after)
    finally:
        runs.close()


def _e2e_rate(base: str, token: str, database_url: str) -> float:
    runs = _Runs(database_url)
    try:
        after = runs.last_id()
        started = time.perf_counter()
        outside.wrk(f"{base}{CREATE_PATH}", seconds=SECONDS, post=TICKET, token=token)
        created = _settle(runs, after)
        return created / (time.perf_counter() - started)
    finally:
        runs.close()


# The bare Celery app


def _purge(app: Celery) -> None:
    """Once the bare worker has declared its queue: empty it."""
    deadline = time.monotonic() + 90
    while True:
        try:
            with app.connection_for_write() as connection:
                connection.default_channel.queue_purge("celery")
                return
        except Exception:  # noqa: BLE001 - the queue is not declared yet: the worker is starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _waiting(app: Celery) -> int:
    """Messages the broker holds for the queue; the worker's few prefetched
    ones (a no-op each) are not counted."""
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        if connection.transport.driver_type == "redis":
            return channel.client.llen("celery")
        return channel.queue_declare(queue="celery", passive=True).message_count


def _noop_rate(app: Celery, count: int) -> float:
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            app.send_task("bare.noop", producer=producer)
    deadline = time.monotonic() + TIMEOUT
    while _waiting(app):
        if time.monotonic() > deadline:
            raise RuntimeError("the bare Celery worker did not drain its no-op tasks")
        time.sleep(SETTLED_POLL)
    return count / (time.perf_counter() - started)
