"""Task messages sent by pipelines/broker.py: the message Celery itself would
send, on the configured broker (Redis in CI's first run, kombu's filesystem
transport in its second), after the commit and never after a rollback."""

import os

import pytest
from django.conf import settings
from django.db import transaction

from config.celery import app
from pipelines import broker
from pipelines.tasks import run_execute_task
from tests.services import require_redis

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
    broker.enqueue(run_execute_task, 42)
    by_celery, by_keel = _received(queue, 2)
    assert by_keel == by_celery
    assert by_keel["headers"]["task"] == "pipelines.execute_run"
    assert by_keel["body"][0] == [42]


def test_every_message_has_an_id_of_its_own(queue):
    broker.enqueue(run_execute_task, 1)
    broker.enqueue(run_execute_task, 1)
    first, second = queue.get(timeout=5), queue.get(timeout=5)
    assert first.headers["id"] != second.headers["id"]
    assert first.headers["root_id"] == first.headers["id"] == first.properties["correlation_id"]


@pytest.mark.django_db(transaction=True)
def test_enqueue_on_commit_sends_after_the_commit_and_nothing_after_a_rollback(queue):
    with pytest.raises(RuntimeError), transaction.atomic():
        broker.enqueue_on_commit(run_execute_task, 7)
        raise RuntimeError("rolled back")
    with transaction.atomic():
        broker.enqueue_on_commit(run_execute_task, 8)
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
    broker.enqueue(run_execute_task, 5)
    assert called == [5]


def test_a_forked_child_keeps_no_producer_of_its_parent(queue):
    broker.enqueue(run_execute_task, 1)  # this process now keeps a producer
    assert getattr(broker._kept, "producer", None) is not None
    pid = os.fork()
    if pid == 0:  # the child: its socket to the broker would be the parent's
        os._exit(0 if getattr(broker._kept, "producer", None) is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.services
def test_the_redis_channel_puts_every_message_through_one_client():
    from kombu import Connection

    url = require_redis()
    with Connection(url, transport="pipelines.broker:Transport") as connection:
        channel = connection.default_channel
        assert isinstance(channel, broker.Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second
            assert first.connection_pool is channel.pool
            assert first.ping()
        # kombu drops the pool when the connection is lost: a client of the old one is not used again.
        channel._disconnect_pools()
        with channel.conn_or_acquire() as third:
            assert third is not first and third.connection_pool is channel.pool
            assert third.ping()
        with channel.conn_or_acquire(client=first) as given:
            assert given is first  # a caller's own client is used as it is


def test_on_redis_the_kept_producer_shares_one_client_and_celery_keeps_its_own_transport(queue):
    broker.enqueue(run_execute_task, 1)
    producer = broker._kept.producer[1]
    with app.connection_for_write() as connection:
        celerys = connection.default_channel
        if settings.CELERY_BROKER_URL.startswith("redis://"):
            assert isinstance(producer.channel, broker.Channel)
        else:
            assert not isinstance(producer.channel, broker.Channel)
        # Workers, beat and apply_async: kombu's transport as it ships.
        assert not isinstance(celerys, broker.Channel)


@pytest.mark.services
def test_a_kept_producer_sends_again_after_the_broker_drops_its_connection(queue):
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        pytest.skip("the configured broker is not Redis")
    import redis

    broker.enqueue(run_execute_task, 1)
    # The server closes the connection the kept producer's channel put that message through.
    channel = broker._kept.producer[1].channel
    with channel.conn_or_acquire() as client:
        connection_id = client.client_id()
    assert redis.Redis.from_url(settings.CELERY_BROKER_URL).client_kill_filter(_id=connection_id) == 1
    broker.enqueue(run_execute_task, 2)
    assert [message["body"][0] for message in _received(queue, 2)] == [[1], [2]]
