"""Keel's benchmarks: ``python -m tests.bench [NAME]`` (or ``make bench [ONLY=NAME]``).

Runs every benchmark, or the one named, prints each figure, and writes
``var/bench/<name>.json``: one JSON object with the figures, the machine they
were measured on and the UTC time.

A benchmark is a module ``tests/bench/bench_<name>.py`` with a ``run()``
returning ``{figure: number}``. It runs against a dedicated database, never
the one a developer or a test works in:

- ``KEEL_BENCH_DATABASE_URL`` when set (``postgres://...`` or ``sqlite:///...``);
- else PostgreSQL ``keel_bench`` when a server answers on 127.0.0.1:5432
  (created when missing, then migrated);
- else the SQLite file ``var/bench/bench.sqlite3``.

Benchmarks are not tests: pytest ignores this folder, and nothing here asserts
on time. They keep what they seed between runs, so only the first run pays it;
before each one the database is vacuumed and analysed, as autovacuum keeps a
production database (``database_maintained``).
"""

import argparse
import json
import os
import pkgutil
import platform
import socket
import sys
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

from tests.bench import database_maintained

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(os.environ.get("KEEL_VAR_DIR", BASE_DIR / "var"))
BENCH_DIR = VAR_DIR / "bench"
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/keel_bench"


def benchmark_names() -> list[str]:
    modules = pkgutil.iter_modules([str(Path(__file__).parent)])
    return sorted(m.name.removeprefix("bench_") for m in modules if m.name.startswith("bench_"))


def _postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            return True
    except OSError:
        return False


def _ensure_postgres_database(url: str) -> None:
    """CREATE DATABASE when it is missing; the server's maintenance database
    is where that statement runs."""
    import dj_database_url
    import psycopg

    config = dj_database_url.parse(url)
    params = {
        "host": config["HOST"] or "127.0.0.1",
        "port": config["PORT"] or 5432,
        "user": config["USER"] or "postgres",
        "password": config["PASSWORD"] or None,
        "dbname": "postgres",
        "autocommit": True,
    }
    with psycopg.connect(**params) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{config["NAME"]}"')


def database_url() -> str:
    if url := os.environ.get("KEEL_BENCH_DATABASE_URL"):
        return url
    if _postgres_answers():
        return POSTGRES_URL
    return f"sqlite:///{BENCH_DIR / 'bench.sqlite3'}"


def setup_django() -> str:
    """Point Django at the benchmark database, migrate it, and return its URL."""
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    url = database_url()
    if url.startswith(("postgres://", "postgresql://")):
        _ensure_postgres_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    # The engine benchmark's model server listens on 127.0.0.1 (its workers inherit this).
    os.environ.setdefault("KEEL_EGRESS_ALLOW_PRIVATE", "127.0.0.1/32")
    sys.path.insert(0, str(BASE_DIR))

    import django
    from django.conf import settings
    from django.core.management import call_command

    django.setup()
    # DEBUG keeps every query in memory; a benchmark runs millions of them.
    settings.DEBUG = False
    call_command("migrate", verbosity=0, interactive=False)
    return url


def machine() -> dict:
    from django.db import connection

    cpu = "unknown"
    memory_gb = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:  # not Linux: the platform module's word will do
        cpu = platform.processor() or platform.machine()
    connection.ensure_connection()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    else:
        import sqlite3

        version = sqlite3.sqlite_version
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": memory_gb,
        "python": platform.python_version(),
        "database": f"{connection.vendor} {version}",
    }


def run_one(name: str) -> dict:
    module = import_module(f"tests.bench.bench_{name}")
    print(f"== {name}", flush=True)
    database_maintained()  # what the earlier benchmarks wrote, as autovacuum would leave it
    figures = module.run()
    for figure, value in figures.items():
        print(f"{figure}: {value:,.3f}" if isinstance(value, float) else f"{figure}: {value:,}", flush=True)
    report = {**figures, "machine": machine(), "time": datetime.now(UTC).isoformat(timespec="seconds")}
    path = BENCH_DIR / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    names = benchmark_names()
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description="Run Keel's benchmarks.")
    parser.add_argument("name", nargs="?", choices=names, help="one benchmark (default: all)")
    args = parser.parse_args(argv)
    url = setup_django()
    print(f"database: {url}", flush=True)
    for name in [args.name] if args.name else names:
        run_one(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
