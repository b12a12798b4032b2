"""Sending task messages, on Celery's public API alone.

``enqueue_on_commit("pipelines.execute_run", *args)`` sends the task of that
name once the current transaction commits; ``enqueue(name, *args)`` sends it
now. Services name the task (its stable ``name=``) and never import a task
module: the task is found in the app's registry (``app.tasks``; every process
imports pipelines.tasks when Django starts) and sent with its own
``apply_async``, so its options and ``task_always_eager`` apply, with a short
retry policy of our own, on Celery's producer pool and kombu's transport as
they ship (the same for the web process, workers and beat).

Invariants:

- A send that fails never poisons the next one: Celery's pool hands out a
  producer whose connection kombu re-establishes (``retry=True``), and nothing
  is kept between sends here.
- A send that fails does not raise into the caller: a run was already
  committed and its creator is told it was created. ``on_failure`` is called
  instead (the engine records the run as unsent; the recovery beat task sends
  it again within seconds, pipelines/runs/engine.py ``runs_resend``).
- ``broker_down()`` says whether this process's producer can publish right
  now, for ``/health/ready``.
"""

import logging
from collections.abc import Callable
from functools import partial

from celery import Celery, current_app
from django.db import transaction
from kombu.exceptions import OperationalError as BrokerError

logger = logging.getLogger(__name__)

# A web request waits at most about a second for a broker that is down:
# three tries, 0.2 s then 0.4 s apart (connection refused is immediate; a
# connection that hangs is bounded by CELERY_BROKER_CONNECTION_TIMEOUT).
RETRY_POLICY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.2, "interval_max": 0.5}

__all__ = ["BrokerError", "RETRY_POLICY", "broker_down", "enqueue", "enqueue_on_commit", "waiting_messages"]


def enqueue_on_commit(
    task_name: str,
    *args,
    on_failure: Callable[[BaseException], None] | None = None,
    app: Celery | None = None,
    countdown: float | None = None,
) -> None:
    """Send the task named ``task_name`` with ``args`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(partial(enqueue, task_name, *args, on_failure=on_failure, app=app, countdown=countdown))


def enqueue(
    task_name: str,
    *args,
    on_failure: Callable[[BaseException], None] | None = None,
    app: Celery | None = None,
    countdown: float | None = None,
) -> bool:
    """Send the task named ``task_name`` with ``args`` now; True if the broker took the message.
    ``app`` is the project's app unless given (a test's own app); ``countdown``
    delays the task by that many seconds (at most KEEL_MAX_COUNTDOWN).

    With ``on_failure``, a broker that cannot be reached is reported to it and
    this returns False; without, the error propagates (a task that must know).
    With ``task_always_eager`` the task runs here, and its errors propagate.
    """
    task = (app or current_app).tasks[task_name]  # NotRegistered (a KeyError) for a name no task has
    try:
        task.apply_async(args, countdown=countdown, retry=True, retry_policy=RETRY_POLICY)
    except BrokerError as error:
        if on_failure is None:
            raise
        logger.warning("Could not send %s%r: %s", task.name, args, type(error).__name__)
        on_failure(error)
        return False
    return True


def broker_down() -> str | None:
    """None when a producer from this process's pool can reach the broker
    through the channel it publishes on; else the kind of failure (never its
    text, which may hold the broker's address)."""
    app = current_app  # the project's app (config/celery.py), loaded with Django
    try:
        with app.producer_or_acquire() as producer:
            connection = _connected(producer)
            # Declaring the default queue is what every send does first: it
            # exercises the producer's own channel, not a fresh connection.
            queue = app.amqp.queues[app.conf.task_default_queue]
            connection.ensure(producer, lambda: queue(producer.channel).declare(), max_retries=1, interval_start=0)()
    except Exception as exc:  # any failure means the producer cannot publish; its kind says why
        return type(exc).__name__
    return None


def waiting_messages() -> int | None:
    """How many messages wait in the default queue, not yet taken by a worker
    (None if the broker cannot say right now)."""
    app = current_app  # the project's app (config/celery.py), loaded with Django
    try:
        with app.producer_or_acquire() as producer:
            _connected(producer)
            queue = app.amqp.queues[app.conf.task_default_queue](producer.channel)
            _, count, _ = queue.queue_declare()
    except Exception:  # the broker is away: the caller decides without the count
        logger.warning("Could not count the messages waiting on the broker", exc_info=True)
        return None
    return count


def _connected(producer):
    # One quick try: a probe must answer in about a second, not wait out
    # kombu's default reconnection schedule.
    connection = producer.connection
    connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    return connection
