"""/health/live and /health/ready: what is up, what is down, and nothing else."""

from datetime import timedelta

import pytest
from celery import Celery
from django.conf import settings
from django.utils import timezone

from config.celery import app
from pipelines.integration.health import heartbeat_record
from pipelines.models import Heartbeat
from tests.own_servers import RedisServer
from tests.workers import celery_beat, celery_worker, wait_for


def test_live_answers_from_the_process_alone(client):
    response = client.get("/health/live")  # no db fixture: any query would raise
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_is_200_when_everything_is_up(client, db):
    heartbeat_record("worker")
    heartbeat_record("beat")
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
    assert response.json()["down"] == []
    assert set(response.json()["checks"]) == {"database", "broker", "worker", "beat"}


@pytest.fixture
def broker_away(tmp_path, monkeypatch):
    """The project's app swapped, for the test, for one whose Redis (the
    test's own server) has gone away after a first message: its pool keeps a
    producer of the lost server, as a web process's does through an outage."""
    server = RedisServer(tmp_path)
    server.start()
    url = f"redis://:hunter2@127.0.0.1:{server.port}/0"
    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery reads the environment before its settings
    away = Celery("away", broker=url, set_as_current=False)
    away.conf.broker_connection_timeout = 2
    server.stop()
    away.set_current()
    try:
        yield server
    finally:
        app.set_current()
        away.close()


def test_ready_is_503_naming_the_broker_when_it_is_down(client, db, broker_away):
    heartbeat_record("worker")
    heartbeat_record("beat")
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["broker"] and body["checks"]["broker"]["reason"]
    assert "hunter2" not in response.content.decode() and "127.0.0.1" not in response.content.decode()


def test_ready_is_503_when_the_heartbeats_are_stale_or_missing(client, db):
    Heartbeat.objects.create(component="worker", seen_at=timezone.now() - timedelta(hours=1))
    response = client.get("/health/ready")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert response.json()["down"] == ["worker", "beat"]
    assert "ago" in checks["worker"]["reason"] and checks["beat"]["reason"] == "no heartbeat yet"


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_and_beat_make_ready_200(client, tmp_path):
    broker = settings.CELERY_BROKER_URL
    assert client.get("/health/ready").status_code == 503  # nothing has beaten yet
    with (
        celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                      log_path=tmp_path / "worker.log"),
        celery_beat(log_path=tmp_path / "beat.log"),
    ):  # fmt: skip
        both = wait_for(lambda: Heartbeat.objects.filter(component__in=["worker", "beat"]).count() == 2, timeout=60)
        assert both, (tmp_path / "beat.log").read_text()[-2000:] + (tmp_path / "worker.log").read_text()[-2000:]
        response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
