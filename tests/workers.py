"""A real Celery worker process for tests, pointed at the test database."""

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection
from kombu.exceptions import OperationalError

from config.celery import app

ROOT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    """The URL of the database this test process uses (the test database)."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def operator_env() -> dict:
    """The operator's credential and egress settings of this test process, for a worker to share."""
    return {
        "KEEL_CREDENTIAL_ENV_ALLOWLIST": ",".join(settings.KEEL_CREDENTIAL_ENV_ALLOWLIST),
        "KEEL_EGRESS_ALLOW_PRIVATE": ",".join(settings.KEEL_EGRESS_ALLOW_PRIVATE),
    }


@contextmanager
def celery_worker(
    *, var_dir: Path, broker_url: str | None, log_path: Path, extra_env: dict | None = None, pool: str = "solo",
    concurrency: int = 1,
):  # fmt: skip
    env = {**os.environ, "DATABASE_URL": database_url(), "KEEL_VAR_DIR": str(var_dir), "LOG_LEVEL": "INFO"}
    env.update(operator_env())
    env.update(extra_env or {})
    env.pop("CELERY_BROKER_URL", None)
    if broker_url:
        env["CELERY_BROKER_URL"] = broker_url
    args = ["worker", f"--pool={pool}", f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip",
            "--without-mingle", "--without-heartbeat"]  # fmt: skip
    with _celery(args, env, log_path) as worker:
        yield worker


@contextmanager
def celery_beat(*, log_path: Path):
    """``celery beat`` on the test database and the configured broker."""
    env = {**os.environ, "DATABASE_URL": database_url(), "KEEL_VAR_DIR": str(settings.VAR_DIR)}
    with _celery(["beat", "--loglevel=INFO"], env, log_path) as beat:
        yield beat


@contextmanager
def _celery(args: list[str], env: dict, log_path: Path):
    """A ``celery -A config ...`` subprocess, stopped with SIGTERM (then SIGKILL) on exit."""
    with open(log_path, "a") as log:
        process = subprocess.Popen([sys.executable, "-m", "celery", "-A", "config", *args], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def empty_queue() -> int:
    """Drop every message waiting on the configured broker's task queue; the
    number dropped. A test whose workers must see only its own messages starts
    here: a message another test left names a row id this test may reuse."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)
            return app.control.purge(connection=connection)
    except (OperationalError, OSError):
        return 0  # no broker: the tests that need one fail on it themselves


def wait_for(condition, *, timeout: float = 60.0, interval: float = 0.2):
    """Poll until ``condition()`` is truthy; the timeout only bounds a failure."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()
