"""Keel's benchmarks: ``python -m tests.bench [NAME ...]`` (``make bench [ONLY=NAME]``)
and ``python -m tests.bench --compare PATH`` (``make bench-compare BASE=PATH``).

Runs every benchmark, or those named, prints each figure, and writes
``var/bench/<name>.json``: the figures (each the median of its repeats, with
``_min`` and ``_max``), the machine, its load and the UTC time. Exits non-zero,
naming them, when any benchmark failed; the others still run.

Every benchmark has a database of its own (``keel_bench_<name>`` on the
PostgreSQL server at 127.0.0.1:5432 when one answers, created and migrated when
missing; else ``var/bench/keel_bench_<name>.sqlite3``) and a Redis database of
its own for its broker, which it passes to every process it starts, whatever
``CELERY_BROKER_URL`` the caller's environment holds. They keep what they seed
between runs, so only the first run on a fresh database pays it.

Two kinds of benchmark:

- Driven from outside (``OUTSIDE``: api, e2e, queue): the servers of a checkout
  run as subprocesses of its own virtualenv, measured over HTTP and the broker
  (``outside.py``). ``--compare PATH`` runs these for the checkout at PATH
  ("before") and this one ("after") in turn, and writes both sides' figures
  with their spread and the after÷before change to ``var/bench/compare.json``.
- In-process (the rest): a module ``bench_<name>.py`` with ``run()`` returning
  ``{figure: number}``, run in a child process configured for its own database
  (``--one NAME``).

Benchmarks are not tests: pytest ignores this folder, and nothing here asserts
on time.
"""

import argparse
import json
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from importlib import import_module
from pathlib import Path

from tests.bench import outside

BENCH_DIR = outside.BENCH_DIR
OUTSIDE = ("api", "e2e", "queue")
# The in-process benchmarks' broker: the engine's workers take their messages
# from it; the others never reach a worker.
IN_PROCESS_BROKER = f"{outside.REDIS}/12"


def benchmark_names() -> list[str]:
    modules = pkgutil.iter_modules([str(Path(__file__).parent)])
    return sorted(m.name.removeprefix("bench_") for m in modules if m.name.startswith("bench_"))


def machine() -> dict:
    cpu, memory_gb = platform.processor() or platform.machine(), None
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
        pass
    database = "sqlite"
    if outside.postgres_answers():
        import psycopg

        with psycopg.connect(f"{outside.POSTGRES}/postgres") as conn:
            database = "postgresql " + conn.execute("SHOW server_version").fetchone()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": memory_gb, "python": platform.python_version(),
            "database": database}  # fmt: skip


def load_average() -> list[float] | None:
    try:
        return [float(n) for n in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def _show(figure: str, value) -> str:
    return f"{figure}: {value:,.3f}" if isinstance(value, float) else f"{figure}: {value:,}"


def _write(name: str, figures: dict, started_load) -> None:
    report = {**figures, "machine": machine(), "load_before": started_load, "load_after": load_average(),
              "time": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    path = BENCH_DIR / f"{name}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}", flush=True)


# Driven from outside


def run_outside(name: str) -> None:
    """One side: this checkout. Figures are medians of the repeats."""
    started_load = load_average()
    module = import_module(f"tests.bench.bench_{name}")
    (values,) = module.measure(outside.checkouts(None)).values()
    figures = {}
    for figure, samples in values.items():
        spread = outside.spread(samples)
        figures[figure] = round(spread["median"], 4)
        figures[f"{figure}_min"] = round(spread["min"], 4)
        figures[f"{figure}_max"] = round(spread["max"], 4)
        print(_show(figure, figures[figure]) + f"  (min {spread['min']:,.3f}, max {spread['max']:,.3f})", flush=True)
    _write(name, figures, started_load)


def compare(base: Path, names: list[str]) -> list[str]:
    """The outside benchmarks for BASE's servers and this checkout's, in turn;
    both sides' spreads, the after÷before change of the medians, and the
    spread of each repeat's own after÷before."""
    sides = outside.checkouts(base)
    report = {"before": str(sides[0].path), "after": str(sides[1].path), "machine": machine(),
              "load_before": load_average(), "benchmarks": {}}  # fmt: skip
    failed = []
    for name in names:
        print(f"== {name} (before: {sides[0].path}, after: {sides[1].path})", flush=True)
        try:
            values = import_module(f"tests.bench.bench_{name}").measure(sides)
        except Exception:  # noqa: BLE001 - report it, run the others, exit non-zero at the end
            traceback.print_exc()
            failed.append(name)
            continue
        figures = {}
        for figure in values["head"]:
            before, after = outside.spread(values["base"][figure]), outside.spread(values["head"][figure])
            change = after["median"] / before["median"] if before["median"] else None
            # Each repeat measured both sides moments apart: its own after/before
            # is what drift on a shared machine moves least.
            pairs = [a / b for a, b in zip(values["head"][figure], values["base"][figure], strict=True) if b]
            figures[figure] = {"before": before, "after": after, "change": change,
                               "change_by_repeat": outside.spread(pairs) if pairs else None}  # fmt: skip
            line = (f"{figure}: before {before['median']:,.3f} ({before['min']:,.3f}-{before['max']:,.3f}), "
                    f"after {after['median']:,.3f} ({after['min']:,.3f}-{after['max']:,.3f})")  # fmt: skip
            if change is not None:
                line += f", after/before {change:.3f}"
            if pairs:
                line += f" (by repeat {min(pairs):.3f}-{max(pairs):.3f})"
            print(line, flush=True)
        report["benchmarks"][name] = figures
    report["load_after"] = load_average()
    report["time"] = datetime.now(UTC).isoformat(timespec="seconds")
    path = BENCH_DIR / "compare.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return failed


# In-process


def run_in_child(name: str) -> bool:
    """The benchmark in a child process on its own database and broker."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "KEEL_BENCH_DATABASE_URL")}
    env["DATABASE_URL"] = outside.Checkout("head", outside.ROOT).database_url(name)
    env["CELERY_BROKER_URL"] = env["KEEL_BENCH_BROKER_URL"] = IN_PROCESS_BROKER
    env.pop("KEEL_CACHE_URL", None)
    child = subprocess.run([sys.executable, "-m", "tests.bench", "--one", name], cwd=outside.ROOT, env=env)
    return child.returncode == 0


def run_one(name: str) -> int:
    """In the child: configure Django for the database in DATABASE_URL, migrate, run."""
    started_load = load_average()
    url = os.environ["DATABASE_URL"]
    outside.database_ensure(url)
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    # The engine benchmark's model server listens on 127.0.0.1 (its workers inherit this).
    os.environ.setdefault("KEEL_EGRESS_ALLOW_PRIVATE", "127.0.0.1/32")
    sys.path.insert(0, str(outside.ROOT))

    import django
    from django.conf import settings
    from django.core.management import call_command

    from tests.bench import database_maintained

    django.setup()
    # DEBUG keeps every query in memory; a benchmark runs millions of them.
    settings.DEBUG = False
    call_command("migrate", verbosity=0, interactive=False)
    print(f"database: {url}", flush=True)
    database_maintained()  # as autovacuum would leave it
    figures = import_module(f"tests.bench.bench_{name}").run()
    for figure, value in figures.items():
        print(_show(figure, value), flush=True)
    _write(name, figures, started_load)
    return 0


def main(argv: list[str] | None = None) -> int:
    names = benchmark_names()
    parser = argparse.ArgumentParser(prog="python -m tests.bench", description="Run Keel's benchmarks.")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {names}")
    parser.add_argument(
        "--compare",
        metavar="PATH",
        type=Path,
        help="compare the api, e2e and queue figures of the checkout at PATH (before) with this one",
    )
    parser.add_argument("--one", metavar="NAME", choices=names, help=argparse.SUPPRESS)  # the child's
    args = parser.parse_args(argv)
    # Every benchmark names the broker of each process it starts. A Celery app
    # in this process would read the caller's CELERY_BROKER_URL before the
    # broker it is given (Celery's settings look at the variable first).
    os.environ.pop("CELERY_BROKER_URL", None)
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if args.one:
        return run_one(args.one)
    unknown = sorted(set(args.names) - set(names))
    if unknown:
        parser.error(f"no benchmark {', '.join(unknown)}; there are: {', '.join(names)}")
    chosen = args.names or (list(OUTSIDE) if args.compare else names)
    started = time.monotonic()
    if args.compare:
        not_outside = sorted(set(chosen) - set(OUTSIDE))
        if not_outside:
            parser.error(f"--compare measures {', '.join(OUTSIDE)} only, not {', '.join(not_outside)}")
        failed = compare(args.compare, chosen)
    else:
        failed = []
        for name in chosen:
            print(f"== {name}", flush=True)
            if name in OUTSIDE:
                try:
                    run_outside(name)
                except Exception:  # noqa: BLE001 - report it, run the others, exit non-zero at the end
                    traceback.print_exc()
                    failed.append(name)
            elif not run_in_child(name):
                failed.append(name)
    print(f"took {time.monotonic() - started:,.0f} s", flush=True)
    if failed:
        print(f"FAILED: {', '.join(failed)} (see above)", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
