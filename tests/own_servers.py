"""Servers a test starts, stops and starts again on ports of its own: a Redis,
a PostgreSQL, gunicorn and Celery processes pointed at them.

The outage tests (tests/pipelines/runs/test_outages.py) stop a server under a
stream of requests; the shared servers on the default ports are never touched.
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import pytest

from tests.servers import REQUIRED

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} is not installed and KEEL_REQUIRE_SERVICES=1")
    pytest.skip(f"{what} is not installed")


def _wait_port(port: int, *, up: bool, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                reachable = True
        except OSError:
            reachable = False
        if reachable == up:
            return
        time.sleep(0.1)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} within {timeout} s")


class RedisServer:
    """``redis-server`` on a free port, without persistence: a restart loses
    every message it held, the worst a broker restart can do."""

    def __init__(self, folder: Path):
        if shutil.which("redis-server") is None:
            _missing("redis-server")
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        with open(self.folder / "redis.log", "a") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--dir", str(self.folder)],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        _wait_port(self.port, up=False)


class PostgresServer:
    """A PostgreSQL cluster of its own (``initdb`` into a temporary folder),
    served on a free port; as root, run as the ``postgres`` OS user."""

    def __init__(self):
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            _missing("PostgreSQL's server binaries (/usr/lib/postgresql/*/bin)")
        self.bin = Path(found[-1]).parent
        self.port = free_port()
        # Not under pytest's tmp_path: its parent folders are the root user's alone.
        self.folder = Path(tempfile.mkdtemp(prefix="keel-pg-"))
        self.data = self.folder / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, user="postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync",
                  "--no-instructions")  # fmt: skip

    def url(self, name: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, cwd=self.folder)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.folder / "postgres.log"), "-w", "start")  # fmt: skip
        _wait_port(self.port, up=True)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        _wait_port(self.port, up=False)

    def create_database(self, name: str) -> None:
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)

    def remove(self) -> None:
        with suppress(subprocess.CalledProcessError, RuntimeError):  # already stopped
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def service_env(*, database_url: str, broker_url: str, var_dir: Path, **extra: str) -> dict:
    """The environment of a Keel process on the given database and broker, as production runs it."""
    env = {**os.environ, "DATABASE_URL": database_url, "CELERY_BROKER_URL": broker_url, "KEEL_VAR_DIR": str(var_dir),
           "DEBUG": "false", "SECRET_KEY": "outage-" + uuid.uuid4().hex, "ALLOWED_HOSTS": "127.0.0.1",
           "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("KEEL_CACHE_URL", None)
    env.update(extra)
    return env


@contextmanager
def processes(commands: list[list[str]], *, env: dict, log_dir: Path, restart: bool = False):
    """Each command as a subprocess in the repository (its output in
    ``log_dir``), stopped with SIGTERM (then SIGKILL) on exit.

    ``restart``: a process that exits while the block runs is started again,
    as the production guide's service manager does (systemd ``Restart=always``);
    the list yielded holds the running ones, and its log a line per restart."""
    started, stopping = [], threading.Event()

    def start(index: int) -> subprocess.Popen:
        with open(log_dir / f"process-{index}.log", "a") as log:
            return subprocess.Popen([sys.executable, "-m", *commands[index]], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)  # fmt: skip

    def supervise() -> None:
        while not stopping.wait(0.5):
            for index, process in enumerate(started):
                if process.poll() is not None and not stopping.is_set():
                    with open(log_dir / f"process-{index}.log", "a") as log:
                        log.write(f"\n== exited with {process.returncode}: started again (Restart=always)\n")
                    started[index] = start(index)

    supervisor = threading.Thread(target=supervise, daemon=True)
    try:
        for index in range(len(commands)):
            started.append(start(index))
        if restart:
            supervisor.start()
        yield started
    finally:
        stopping.set()
        if restart:
            supervisor.join()
        for process in started:
            process.send_signal(signal.SIGTERM)
        for process in started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def keel_processes(port: int) -> list[list[str]]:
    """gunicorn as the production guide runs it, a Celery worker and beat."""
    return [
        ["gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "2", "--log-level", "warning"],
        ["celery", "-A", "config", "worker", "--pool=prefork", "--concurrency=2", "--loglevel=WARNING",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        ["celery", "-A", "config", "beat", "--loglevel=WARNING"],
    ]  # fmt: skip


def wait_until_up(base: str, started: list[subprocess.Popen], log_dir: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in started):
            raise RuntimeError(f"a process exited early; see {log_dir}")
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer within {timeout} s")
