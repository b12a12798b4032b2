"""Task messages sent by pipelines/broker.py: the message Celery itself would
send, on the configured broker (Redis in CI's first run, kombu's filesystem
transport in its second), after the commit and never after a rollback; a
send to a broker that is away is reported and never poisons the next one
(a Redis server of the test's own, stopped and started)."""

import pytest
from celery import Celery
from django.contrib.auth.models import User
from django.db import transaction

from config.celery import app
from pipelines import broker
from pipelines.tasks.runs import run_execute_task
from tests.own_servers import RedisServer

# The parts of a message that differ on every send: its id and kombu's delivery tag.
PER_MESSAGE = {"headers": ("id", "root_id"), "properties": ("correlation_id", "delivery_tag")}


@pytest.fixture
def queue():
    """The task queue on the configured broker, emptied before and after."""
    with app.connection_for_read() as connection:
        simple = connection.SimpleQueue(app.conf.task_default_queue)
        simple.clear()
        yield simple
        simple.clear()
        simple.close()


def _received(queue, count: int) -> list[dict]:
    """The next ``count`` messages as the broker holds them, less what is new in each."""
    messages = []
    for _ in range(count):
        message = queue.get(timeout=5)
        message.ack()
        headers = {k: v for k, v in message.headers.items() if k not in PER_MESSAGE["headers"]}
        properties = {k: v for k, v in message.properties.items() if k not in PER_MESSAGE["properties"]}
        messages.append({"headers": headers, "properties": properties, "body": message.decode()})
    return messages


def test_enqueue_sends_the_message_apply_async_sends(queue):
    run_execute_task.apply_async((42,))
    broker.enqueue("pipelines.execute_run", 42)
    by_celery, by_keel = _received(queue, 2)
    assert by_keel == by_celery
    assert by_keel["headers"]["task"] == "pipelines.execute_run"
    assert by_keel["body"][0] == [42]


def test_every_message_has_an_id_of_its_own(queue):
    broker.enqueue("pipelines.execute_run", 1)
    broker.enqueue("pipelines.execute_run", 1)
    first, second = queue.get(timeout=5), queue.get(timeout=5)
    assert first.headers["id"] != second.headers["id"]
    assert first.headers["root_id"] == first.headers["id"] == first.properties["correlation_id"]


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_sends_after_the_commit_and_nothing_after_a_rollback(queue):
    with pytest.raises(RuntimeError), transaction.atomic():
        broker.enqueue_on_commit("pipelines.execute_run", 7)
        raise RuntimeError("rolled back")
    with transaction.atomic():
        broker.enqueue_on_commit("pipelines.execute_run", 8)
        with pytest.raises(queue.Empty):  # not before the commit
            queue.get(block=False)
    (message,) = _received(queue, 1)
    assert message["body"][0] == [8]
    with pytest.raises(queue.Empty):  # and nothing of the rolled-back transaction
        queue.get(block=False)


def test_with_eager_tasks_enqueue_runs_the_task_in_process(settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    called = []
    monkeypatch.setattr(run_execute_task, "run", lambda run_id: called.append(run_id))
    broker.enqueue("pipelines.execute_run", 5)
    assert called == [5]


@pytest.fixture
def own_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_app(own_redis, monkeypatch):
    """A Celery app on the test's own Redis, with a task to send: the stock
    transport and Celery's producer pool, as the project's app has them."""
    monkeypatch.setenv("CELERY_BROKER_URL", own_redis.url())  # Celery reads the environment before its settings
    own = Celery("outage", broker=own_redis.url(), set_as_current=False)
    own.conf.broker_connection_timeout = 2

    @own.task(name="outage.echo", shared=False)  # this app only: no other test's app inherits it
    def echo(value):
        return value

    yield own, echo
    own.close()


def _waiting(own, name: str = "celery") -> list:
    with own.connection_for_read() as connection:
        simple = connection.SimpleQueue(name)
        try:
            return [simple.get(timeout=5).decode()[0] for _ in range(len(simple))]
        finally:
            simple.close()


@pytest.mark.services
def test_a_send_that_fails_is_reported_and_the_next_send_after_the_broker_returns_goes_through(own_redis, own_app):
    own, _ = own_app
    assert broker.enqueue("outage.echo", 1, on_failure=pytest.fail, app=own)
    own_redis.stop()  # the pool's producer now holds a connection to a server that is gone
    failures = []
    assert broker.enqueue("outage.echo", 2, on_failure=failures.append, app=own) is False
    assert broker.enqueue("outage.echo", 3, on_failure=failures.append, app=own) is False
    assert [type(error) for error in failures] == [broker.BrokerError, broker.BrokerError]
    own_redis.start()  # without persistence: message 1 is gone with the old server
    assert broker.enqueue("outage.echo", 4, on_failure=pytest.fail, app=own)
    assert broker.enqueue("outage.echo", 5, on_failure=pytest.fail, app=own)
    assert _waiting(own) == [[4], [5]]


@pytest.mark.services
def test_without_a_failure_callback_a_send_to_a_broker_that_is_away_raises(own_redis, own_app):
    own, _ = own_app
    own_redis.stop()
    with pytest.raises(broker.BrokerError):
        broker.enqueue("outage.echo", 1, app=own)


@pytest.mark.django_db(transaction=True)
def test_a_failed_send_on_commit_leaves_the_transaction_committed(own_redis, own_app):
    own, _ = own_app
    own_redis.stop()
    failures = []
    with transaction.atomic():
        user = User.objects.create(username="committed-anyway")
        broker.enqueue_on_commit("outage.echo", user.pk, on_failure=failures.append, app=own)
    assert len(failures) == 1
    assert User.objects.filter(username="committed-anyway").exists()


def test_the_producers_health_is_none_on_a_reachable_broker():
    assert broker.broker_down() is None
