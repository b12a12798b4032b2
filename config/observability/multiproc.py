"""The metrics directory's housekeeping (PROMETHEUS_MULTIPROC_DIR).

Every process writes its counters and histograms to files named by its pid.
When a web server or worker starts, the files of processes no longer alive are
removed (their counts leave with them, which Prometheus reads as a counter
reset); a running process's files are never touched, so the web server and
the worker of one host may share the folder and start in any order. Gunicorn
also tells prometheus_client when one of its workers exits (``child_exit``).
"""

import os
import re
from pathlib import Path

_PID = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def metrics_dir_prepare(directory: str | os.PathLike | None = None) -> list[Path]:
    """Create the folder and remove the files of dead processes; returns those removed."""
    folder = Path(directory or os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    removed = []
    for path in folder.glob("*.db"):
        match = _PID.search(path.name)
        if match and not _alive(int(match.group(1))):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# Gunicorn's server hooks: `gunicorn config.wsgi -c python:config.observability.multiproc`.
# This module is loaded by gunicorn's master before Django: prometheus_client
# decides at its import whether to write files, from PROMETHEUS_MULTIPROC_DIR,
# which the settings set. So the master reads the settings first (on_starting)
# and imports prometheus_client only afterwards (child_exit), and every worker
# it forks writes its files.
def on_starting(server) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    metrics_dir_prepare(settings.KEEL_METRICS_DIR)


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess  # after on_starting: see above

    multiprocess.mark_process_dead(worker.pid)
