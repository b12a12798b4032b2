"""`make demo` as the README promises it, on the embedded default (SQLite and
the filesystem broker in a var directory of its own): it migrates, loads the
demo, runs the web server, a Celery worker and Celery beat together, answers
/health/ready with 200 while they run, and Ctrl-C stops all three."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.workers import ROOT, wait_for

# Variables that would point the demo at this test run's database, broker or make.
NOT_PASSED = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "KEEL_CACHE_URL", "MAKEFLAGS",
              "MAKELEVEL", "MFLAGS", "DJANGO_SETTINGS_MODULE")  # fmt: skip


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _processes_of(var_dir: Path) -> dict[int, str]:
    """Every process whose environment names ``var_dir`` as KEEL_VAR_DIR, by pid, with its command line."""
    marker = f"KEEL_VAR_DIR={var_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _ready(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as response:
            return json.loads(response.read()) if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


def _kinds(processes: dict[int, str]) -> set[str]:
    kinds = set()
    for command in processes.values():
        if "manage.py runserver" in command:
            kinds.add("web")
        elif "celery -A config worker" in command:
            kinds.add("worker")
        elif "celery -A config beat" in command:
            kinds.add("beat")
    return kinds


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the demo's processes through /proc")
def test_make_demo_runs_web_worker_and_beat_until_ctrl_c(tmp_path):
    var_dir = tmp_path / "var"
    port = _free_port()
    env = {key: value for key, value in os.environ.items() if key not in NOT_PASSED}
    env["KEEL_VAR_DIR"] = str(var_dir)
    log_path = tmp_path / "demo.log"
    with open(log_path, "w") as log:
        # A session of its own, as a terminal's foreground job: Ctrl-C reaches its whole process group.
        demo = subprocess.Popen(["make", "demo", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        ready = wait_for(lambda: demo.poll() is None and _ready(port), timeout=400, interval=1)
        assert ready, f"/health/ready never answered 200:\n{log_path.read_text()[-3000:]}"
        assert ready["status"] == "ok" and ready["down"] == []
        assert {"web", "worker", "beat"} <= _kinds(_processes_of(var_dir)), _processes_of(var_dir)
        output = log_path.read_text()
        assert "Keel demo ready." in output and "approver" in output
        assert f"Serving http://127.0.0.1:{port}/" in output and "/audit/" in output

        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C sends
        demo.wait(timeout=60)
        assert wait_for(lambda: not _processes_of(var_dir), timeout=30), _processes_of(var_dir)
        assert "SIGINT received" in log_path.read_text()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in _processes_of(var_dir):  # only what this test started, should any be left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
