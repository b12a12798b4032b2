"""Sending task messages cheaply: a producer each thread keeps, and kombu's
Redis transport keeping one client per channel.

Every run the API creates is one task message, and the web process spent a
fifth of such a request's CPU on it (the API benchmark: gunicorn's CPU per
run creation fell from 4.2 to 3.2 ms with no message sent at all). Most of it
was not the message: per call Celery acquires a producer from its pool,
routes the task and reads its options through a dozen settings lookups, and
kombu builds a new ``redis.Redis`` client for every message it puts. Here the
static part (the task's options, time limits and route) is worked out once
per task, the producer once per thread, the Redis client once per channel.
The message is Celery's own (``create_task_message``), published on kombu's
producer as Celery's sender publishes it (the queue, serializer and retry
policy from the settings); where a ``before_task_publish`` or
``after_task_publish`` receiver listens, or sent events are on, Celery's
sender itself sends it. Half the cost went (the same benchmark: gunicorn and
PostgreSQL CPU per creation -10 %).

``enqueue_on_commit(task, *args)`` is ``task.delay_on_commit(*args)`` for a
task called with positional arguments and no per-call options; with
``task_always_eager``, or a task with an expiry, it is exactly that. A test
holds the two messages equal on the configured broker.
"""

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

from celery import signals
from celery.utils.saferepr import saferepr
from django.db import transaction
from kombu import Queue
from kombu.transport import redis as kombu_redis
from kombu.utils.uuid import uuid


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, putting every message through one client.

    kombu builds a ``redis.Redis`` over the channel's connection pool for each
    command it sends outside a pipeline (``conn_or_acquire``), and building one
    costs more than sending a message. A client over a pool holds no
    connection of its own and is safe to share between threads, so one per
    pool does. The pool is asked for each time: kombu drops it when the
    connection is lost, and a client of the old one must not outlive it.
    """

    _shared_client = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    """The kept producers' transport on a ``redis://`` or ``rediss://`` broker.

    Only theirs: workers, beat and Celery's own ``apply_async`` keep kombu's
    transport as it ships. The engine's benchmark measures runs against bare
    Celery no-ops on the same worker, and a worker on this transport made
    those no-ops cheaper than it made runs."""

    Channel = Channel


_kept = threading.local()
# A forked child (a prefork pool's worker process) must not write to its parent's socket.
os.register_at_fork(after_in_child=lambda: _kept.__dict__.clear())


def enqueue_on_commit(task, *args) -> None:
    """Send ``task(*args)`` once the current transaction commits (at once outside one)."""
    transaction.on_commit(partial(enqueue, task, *args))


def enqueue(task, *args) -> None:
    """Send ``task(*args)`` now: Celery's message, published as ``send_task`` would."""
    app = task.app
    route = _route(task)
    if app.conf.task_always_eager or route is None:
        task.apply_async(args)
        return
    parent = app.current_worker_task  # a task enqueuing another keeps the lineage, as send_task does
    root_id = parent_id = None
    if parent is not None:
        root_id, parent_id = parent.request.root_id or parent.request.id, parent.request.id
    headers, properties, body, sent_event = app.amqp.create_task_message(
        uuid(),
        task.name,
        args,
        {},
        time_limit=route.time_limit,
        soft_time_limit=route.soft_time_limit,
        create_sent_event=route.sent_event,
        root_id=root_id,
        parent_id=parent_id,
        reply_to=app.thread_oid,
        ignore_result=route.ignore_result,
        argsrepr=saferepr(args, app.amqp.argsrepr_maxsize, maxlevels=route.repr_maxlevels),
        kwargsrepr="{}",
        **route.options,
    )
    producer = _producer(app, route)
    with producer.connection._reraise_as_library_errors():
        if sent_event or signals.before_task_publish.receivers or signals.after_task_publish.receivers:
            # Celery's sender, for what it does besides publishing.
            app.amqp.send_task_message(producer, task.name, (headers, properties, body, sent_event), **route.options)
        else:
            producer.publish(body, headers=headers, **route.publish, **properties)


@dataclass(frozen=True)
class _Route:
    """What ``apply_async``, ``send_task`` and ``send_task_message`` derive
    from the task and the settings alone: the task's execution options and
    time limits, its queue, and how a message is published there."""

    options: dict
    time_limit: float | None
    soft_time_limit: float | None
    ignore_result: bool | None
    queue: Queue
    publish: dict
    sent_event: bool
    repr_maxlevels: int


_ROUTES: dict = {}


def _route(task) -> _Route | None:
    """The task's route, worked out once per process; None for a task this
    module does not send (an expiry is reckoned per message, and a queue
    behind anything but a direct exchange is routed by Celery each time)."""
    key = (id(task.app), task.name)
    if key not in _ROUTES:
        _ROUTES[key] = _route_for(task)
    return _ROUTES[key]


def _route_for(task) -> _Route | None:
    app = task.app
    options = dict(task._get_exec_options())
    options.setdefault("ignore_result", task.ignore_result)
    time_limit = options.pop("time_limit", None)
    soft_time_limit = options.pop("soft_time_limit", None)
    ignore_result = options.pop("ignore_result", None)
    if options.pop("expires", None) is not None:
        return None
    # Routes are read once: a router that looks at a call's arguments would not be consulted per message.
    options = app.amqp.router.route(options, task.name, (), {}, task)
    queue = options.get("queue")
    if not isinstance(queue, Queue) or queue.exchange.type != "direct" or options.get("exchange"):
        return None
    # send_task_message's choices for a direct exchange: the default exchange,
    # the queue's name as routing key, the settings' serializer and retry policy.
    extra = {k: v for k, v in options.items() if k not in _ROUTED and v is not None}
    publish = {
        "exchange": "",
        "routing_key": queue.name,
        "serializer": options.get("serializer") or app.conf.task_serializer,
        "compression": options.get("compression") or app.conf.task_compression,
        "retry": app.conf.task_publish_retry,
        "retry_policy": dict(app.conf.task_publish_retry_policy),
        "delivery_mode": options.get("delivery_mode")
        or queue.exchange.delivery_mode
        or app.conf.task_default_delivery_mode,
        **extra,
    }
    return _Route(
        options,
        time_limit,
        soft_time_limit,
        ignore_result,
        queue,
        publish,
        sent_event=app.conf.task_send_sent_event,
        repr_maxlevels=app.conf.task_repr_maxlevels,
    )


_ROUTED = {"queue", "exchange", "routing_key", "exchange_type", "serializer", "compression", "delivery_mode"}


def _producer(app, route: _Route):
    """This thread's producer, its connection kept open between messages; the
    queue is declared (as Celery declares it with every message) once per
    producer."""
    kept = getattr(_kept, "producer", None)
    if kept is None or kept[0] is not app:
        redis = app.conf.broker_write_url.startswith(("redis://", "rediss://")) and not app.conf.broker_transport
        connection = app.connection_for_write(transport=f"{__name__}:Transport" if redis else None)
        producer = app.amqp.Producer(connection, auto_declare=False)
        kept = _kept.producer = (app, producer, set())
    _, producer, declared = kept
    if route.queue.name not in declared:
        producer.maybe_declare(route.queue, retry=route.publish["retry"], **route.publish["retry_policy"])
        declared.add(route.queue.name)
    return producer
