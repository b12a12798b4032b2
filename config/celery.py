"""The Celery app. Its settings live in config/settings.py under CELERY_*.

Tasks are enqueued with ``task.delay_on_commit(...)`` (Celery's Django task
class), so a worker never sees a row its transaction has not yet committed;
a run's message with ``pipelines.broker.enqueue_on_commit``, which is
``apply_async`` with a short retry policy that reports a broker it cannot
reach instead of raising (docs/outages.md).
"""

import logging
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("keel", task_cls="celery.contrib.django.task:DjangoTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger("keel.celery")


def log_eager_notice() -> None:
    from django.conf import settings

    if settings.CELERY_TASK_ALWAYS_EAGER:
        logger.warning(
            "CELERY_TASK_ALWAYS_EAGER is on: background work runs inline in the "
            "calling process. Use it only where no worker can run."
        )


@worker_init.connect
def _on_worker_init(**kwargs) -> None:
    logger.info("Keel worker starting on broker %s", app.conf.broker_url.split("@")[-1])
