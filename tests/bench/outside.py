"""Keel driven from outside, as a user and an operator meet it: the servers of a
chosen checkout (its own ``.venv``) run as subprocesses, set up through its
``manage.py`` commands, and are measured over HTTP and through the broker.

Nothing here imports Keel: the same benchmark measures today's checkout and any
other (``--compare``) whatever their modules are called inside. What this
module relies on is what an operator relies on: ``manage.py migrate``,
``keel_demo`` and ``token_create``, ``config.wsgi`` under gunicorn, ``celery -A
config worker``, the settings' environment variables, and the table names of
the ``pipelines`` and ``reviews`` apps (read through ``apps.get_model``).
"""

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VAR_DIR = Path(os.environ.get("KEEL_VAR_DIR", ROOT / "var"))
BENCH_DIR = VAR_DIR / "bench"
POSTGRES = "postgres://postgres@127.0.0.1:5432"
CORES = os.cpu_count() or 1
# The production guide's web and worker processes: one more than cores.
PROCESSES = CORES + 1
# The Redis databases the benchmarks own. Each side of a comparison has its
# own (its broker and its cache, flushed before and after each benchmark), and
# the bare Celery app has one of its own.
REDIS = os.environ.get("KEEL_BENCH_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = {"head": 2, "base": 9, "bare": 11}


@dataclass(frozen=True)
class Checkout:
    """One side of a measurement: a Keel checkout with its own virtualenv."""

    side: str  # "head" (this checkout) or "base" (the one compared with)
    path: Path

    @property
    def python(self) -> str:
        return str(self.path / ".venv" / "bin" / "python")

    @property
    def redis_url(self) -> str:
        return f"{REDIS}/{REDIS_DB[self.side]}"

    def database_url(self, benchmark: str) -> str:
        """The benchmark's own database for this side: PostgreSQL when a
        server answers on 127.0.0.1:5432, else an SQLite file."""
        name = f"keel_bench_{benchmark}" + ("" if self.side == "head" else f"_{self.side}")
        if postgres_answers():
            return f"{POSTGRES}/{name}"
        return f"sqlite:///{BENCH_DIR / (name + '.sqlite3')}"

    def var_dir(self, benchmark: str) -> Path:
        path = BENCH_DIR / f"{benchmark}-{self.side}"
        path.mkdir(parents=True, exist_ok=True)
        return path


def checkouts(base: Path | None) -> list[Checkout]:
    """This checkout, and the one to compare with first when given."""
    head = Checkout("head", ROOT)
    if base is None:
        return [head]
    base = base.resolve()
    if not (base / "manage.py").exists() or not Path(Checkout("base", base).python).exists():
        raise SystemExit(f"--compare {base}: not a Keel checkout with its own .venv (manage.py, .venv/bin/python)")
    return [Checkout("base", base), head]


def postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def redis_flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def database_ensure(url: str) -> None:
    """CREATE DATABASE when it is missing (PostgreSQL); SQLite makes its file."""
    if not url.startswith("postgres"):
        return
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def env_for(checkout: Checkout, benchmark: str) -> dict:
    """The environment of every process of one side: its database, its broker
    and cache (whatever CELERY_BROKER_URL the caller's environment holds),
    production's DEBUG off, warnings-only logging."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHON", "DJANGO_"))}
    env.update(
        DATABASE_URL=checkout.database_url(benchmark),
        CELERY_BROKER_URL=checkout.redis_url,
        KEEL_CACHE_URL=checkout.redis_url,
        KEEL_VAR_DIR=str(checkout.var_dir(benchmark)),
        DEBUG="false",
        SECRET_KEY="keel-bench-" + uuid.uuid4().hex,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        KEEL_API_RATE_PER_MINUTE="100000000",
        LOG_LEVEL="WARNING",
    )
    return env


def manage(checkout: Checkout, env: dict, *args: str, timeout: float = 1800) -> str:
    """``manage.py ARGS`` of the checkout; its standard output, or an error
    carrying its standard error."""
    done = subprocess.run(
        [checkout.python, "manage.py", *args], cwd=checkout.path, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{checkout.side}: manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def demo_ready(checkout: Checkout, env: dict) -> str:
    """Migrate the side's database, collect its static files (as the
    production guide does), load the demo (idempotent) and return a
    fresh API token of the demo's prompt engineer for its workspace: not a
    superuser's, so every request pays the object-permission checks that
    production pays."""
    database_ensure(env["DATABASE_URL"])
    manage(checkout, env, "migrate", "--no-input")
    manage(checkout, env, "collectstatic", "--no-input")  # pages name their static files by the manifest
    manage(checkout, env, "keel_demo")
    output = manage(checkout, env, "token_create", "engineer", "--by", "engineer", "--workspace", "northwind",
                    "--name", "benchmark")  # fmt: skip
    return output.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gunicorn(python: str, app: str, *, cwd: Path, env: dict, log: Path):
    """``gunicorn APP`` as the production guide runs it (sync workers, one
    more than cores); yields its base URL once /health/live answers."""
    port = free_port()
    with open(log, "a") as out:
        process = subprocess.Popen(
            [python, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}", "--workers", str(PROCESSES),
             "--log-level", "warning"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn ({app}) exited before answering; see {log}")
            try:
                if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn ({app}) did not answer within 90 s; see {log}")
            time.sleep(0.2)
        yield base
    finally:
        _stop(process)


@contextmanager
def celery_worker(python: str, app: str, *, cwd: Path, env: dict, log: Path):
    """``celery -A APP worker`` as the production guide runs it: the default
    (prefork) pool, one process more than cores."""
    with open(log, "a") as out:
        process = subprocess.Popen(
            [python, "-m", "celery", "-A", app, "worker", f"--concurrency={PROCESSES}", "--loglevel=WARNING"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield process
    finally:
        _stop(process)


def keel_server(checkout: Checkout, env: dict, benchmark: str):
    return gunicorn(checkout.python, "config.wsgi", cwd=checkout.path, env=env,
                    log=checkout.var_dir(benchmark) / "gunicorn.log")  # fmt: skip


def keel_worker(checkout: Checkout, env: dict, benchmark: str):
    return celery_worker(checkout.python, "config", cwd=checkout.path, env=env,
                         log=checkout.var_dir(benchmark) / "worker.log")  # fmt: skip


# wrk: the load generator. Its Lua script reports one JSON line.

WRK_THREADS = CORES
WRK_CONNECTIONS = 8


def wrk_installed() -> str:
    """The wrk binary; installed from the system's packages when missing."""
    if path := shutil.which("wrk"):
        return path
    print("wrk is missing: apt-get install -y wrk", flush=True)
    subprocess.run(["apt-get", "install", "-y", "wrk"], check=False)
    if path := shutil.which("wrk"):
        return path
    raise RuntimeError("wrk is not installed and could not be installed: apt-get install -y wrk")


def wrk(url: str, *, seconds: float, post: dict | None = None, token: str = "") -> dict:
    """Load ``url`` for ``seconds`` from WRK_CONNECTIONS connections. With
    ``post``, each request is ``POST url`` of ``{"input": post, "idempotency_key":
    <fresh>, "source": "bench"}`` with the bearer token, and anything but 201 is
    counted as bad; else GET, and anything but 2xx/3xx is bad. Returns
    requests/s, latency percentiles in ms and the bad count."""
    args = [wrk_installed(), "-t", str(WRK_THREADS), "-c", str(WRK_CONNECTIONS), "-d", f"{seconds:g}s",
            "--timeout", "30s", "-s", str(HERE / "wrk.lua"), url, "--"]  # fmt: skip
    if post is not None:
        args += ["post", uuid.uuid4().hex, token, json.dumps(post)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH_JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-1000:]} {done.stderr[-1000:]}")
    report = json.loads(lines[-1].removeprefix("BENCH_JSON "))
    if report["bad"] or report["socket_errors"]:
        raise RuntimeError(f"{url}: {report['bad']} bad answers, {report['socket_errors']} socket errors; "
                           f"first: {report['first_bad']!r}")  # fmt: skip
    return {
        "rps": report["requests"] / (report["duration_us"] / 1e6),
        "requests": report["requests"],
        "p50_ms": report["p50_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
    }


# Figures


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def rotations(items: list, repeat: int) -> list:
    """``items`` in a different order each repeat (rotated, and reversed every
    other repeat), so that drift on a shared machine falls on each alike."""
    shift = repeat % len(items)
    order = items[shift:] + items[:shift]
    return order[::-1] if repeat % 2 else order


def p95_ms(seconds: list[float]) -> float:
    ordered = sorted(seconds)
    return ordered[max(0, int(len(ordered) * 0.95 + 0.5) - 1)] * 1000
