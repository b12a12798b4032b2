"""Tasks that send webhooks and notices, and resend dead letters."""

from celery import shared_task
from django.db import close_old_connections

from pipelines.delivery.dead_letters import delivery_redeliver, delivery_send_held
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.notices import notice_give_up, notice_send_by_pk


@shared_task(name="pipelines.redeliver", acks_late=True, reject_on_worker_lost=True)
def delivery_redeliver_task(delivery_pk: int) -> str:
    close_old_connections()
    return delivery_redeliver(delivery_pk=delivery_pk).status


@shared_task(name="pipelines.resend_delivery", bind=True, acks_late=True, max_retries=5)
def delivery_resend_task(self, delivery_pk: int) -> str | None:
    close_old_connections()
    try:
        record = delivery_send_held(delivery_pk)
    except DeliveryError as error:
        if not error.transient:
            raise
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    finally:
        close_old_connections()
    return record["status"] if record else None


@shared_task(name="pipelines.send_notice", bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=5)
def notice_send_task(self, delivery_pk: int) -> str | None:
    """Send a notice (a rejected run's ``run.rejected``); when its retries are
    spent, it becomes a dead letter to resend from the admin."""
    close_old_connections()
    try:
        record = notice_send_by_pk(delivery_pk)
    except DeliveryError as error:
        if not error.transient:
            return "failed"  # refused, or no secret to sign with: already a dead letter
        if self.request.retries >= self.max_retries:
            notice_give_up(delivery_pk=delivery_pk, error=str(error))
            return "failed"
        raise self.retry(exc=error, countdown=2 ** (self.request.retries + 1)) from error
    finally:
        close_old_connections()
    return record["status"] if record else None
