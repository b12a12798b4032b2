"""Background work runs on a real Celery worker process: on kombu's filesystem
transport with no server at all (the local default), and on Redis."""

import pytest
from celery import Celery
from django.conf import settings

from audit.models import AuditEvent
from config.settings import filesystem_broker_options
from tests.servers import require_redis
from tests.workers import celery_worker, wait_for


def _sender(broker_url: str, transport_options: dict, monkeypatch) -> Celery:
    # Celery lets CELERY_BROKER_URL in the environment override the app's broker.
    monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    app = Celery("keel-test-sender", broker=broker_url, set_as_current=False)
    app.conf.broker_transport_options = transport_options
    return app


def _run_verify_through(sender: Celery, tmp_path, broker_url: str | None):
    before = AuditEvent.objects.filter(action="audit.verified").count()
    with celery_worker(var_dir=tmp_path, broker_url=broker_url, log_path=tmp_path / "worker.log") as worker:
        sender.send_task("audit.verify_chain")
        done = wait_for(lambda: AuditEvent.objects.filter(action="audit.verified").count() > before)
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
    assert done, (tmp_path / "worker.log").read_text()
    event = AuditEvent.objects.filter(action="audit.verified").latest("seq")
    assert event.actor_name == "system:worker"
    assert event.payload_data["broken_seq"] is None


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_background_work_on_the_filesystem_broker_with_no_server(tmp_path, monkeypatch):
    sender = _sender("filesystem://", filesystem_broker_options(tmp_path), monkeypatch)
    _run_verify_through(sender, tmp_path, broker_url=None)


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_background_work_on_redis(tmp_path, monkeypatch):
    broker_url = require_redis()
    import redis

    redis.Redis.from_url(broker_url).flushdb()
    sender = _sender(
        broker_url, {"visibility_timeout": settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]}, monkeypatch
    )
    _run_verify_through(sender, tmp_path, broker_url=broker_url)


def test_the_visibility_timeout_outlasts_any_task_and_countdown():
    timeout = settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    assert timeout > settings.CELERY_TASK_TIME_LIMIT + settings.KEEL_MAX_COUNTDOWN


def test_tasks_are_safe_by_default():
    import audit.tasks  # noqa: F401  (registers the task)
    from config.celery import app

    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_acks_late is False
    assert app.tasks["audit.verify_chain"].acks_late is True
    assert app.conf.result_expires.total_seconds() > 0
    assert hasattr(app.tasks["audit.verify_chain"], "delay_on_commit")
