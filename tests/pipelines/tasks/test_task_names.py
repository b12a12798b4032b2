"""Task names are an API (messages in flight and beat's schedule use them), and services
enqueue tasks by name: every name a service sends is a registered task, and the names
the pipelines app registers are the ones it always had."""

import ast
from pathlib import Path

import pytest
from celery.exceptions import NotRegistered
from django.conf import settings

from config.celery import app
from pipelines import broker

ROOT = Path(__file__).resolve().parents[3]

# The names as released; a message queued by an older Keel names one of these.
STABLE = {
    "pipelines.execute_run",
    "pipelines.recover_runs",
    "pipelines.resend_runs",
    "pipelines.heartbeat",
    "pipelines.redeliver",
    "pipelines.scheduled_run",
    "pipelines.resend_delivery",
    "pipelines.watch_canaries",
    "pipelines.send_notice",
    "pipelines.evaluate_release",
    "pipelines.apply_retention",
}


def _names_sent_by_services() -> set[str]:
    """The task names pipelines' modules pass to the broker's helpers or to a signature."""
    names = set()
    for path in (ROOT / "pipelines").rglob("*.py"):
        tree = ast.parse(path.read_text())
        constants = {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value.value, str)
        }
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if func not in ("enqueue", "enqueue_on_commit", "signature"):
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant):
                names.add(first.value)
            elif isinstance(first, ast.Name) and first.id in constants:
                names.add(constants[first.id])
    return names


def test_the_pipelines_tasks_keep_their_names():
    assert {name for name in app.tasks if name.startswith("pipelines.")} == STABLE


def test_every_task_a_service_enqueues_by_name_is_registered():
    sent = _names_sent_by_services()
    assert {"pipelines.execute_run", "pipelines.send_notice", "pipelines.redeliver"} <= sent
    assert sent <= set(app.tasks)


def test_beat_schedules_only_registered_pipelines_tasks():
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {name for name in scheduled if name.startswith("pipelines.")} <= set(app.tasks)


def test_a_name_no_task_has_is_refused_before_anything_is_sent():
    with pytest.raises(NotRegistered):
        broker.enqueue("pipelines.no_such_task", 1)


def test_no_service_module_imports_a_task_module():
    for path in (ROOT / "pipelines").rglob("*.py"):
        if "tasks" in path.relative_to(ROOT).parts or path.name == "apps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("pipelines.tasks"), path
                assert not (node.module == "pipelines" and any(a.name == "tasks" for a in node.names)), path
