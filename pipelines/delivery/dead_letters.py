"""Sending a delivery again: dead letters (deliveries that exhausted their retries) on a
person's request, and deliveries held while their pipeline was paused.

Every resend posts the very body the delivery was made for, under the same delivery id,
so a receiver that already processed it drops the repeat (``delivery_send_again``).
``dead_letter_resend`` records who asked (the audit event) and queues the send; the
worker's ``delivery_redeliver`` makes it, with the usual attempts and their events. No
request waits on a slow receiver. ``delivery_send_held`` is the worker's side of
``pipeline_unpause``: a held delivery goes out as it would have.
"""

import contextlib

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from audit.services import audit_record
from governance.permissions import filter_for_user, user_can
from pipelines.broker import enqueue_on_commit
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.notices import notice_send
from pipelines.delivery.webhooks import delivery_send
from pipelines.models import DeadLetter, Delivery, StepRun


def dead_letters_for_user(*, user) -> QuerySet[DeadLetter]:
    return filter_for_user(user, "view", DeadLetter.objects.all()).select_related("run", "run__pipeline")


@transaction.atomic
def dead_letter_resend(*, delivery: Delivery, actor) -> Delivery:
    """Queue a dead letter to be sent again under its delivery id."""
    delivery = Delivery.objects.select_for_update().select_related("run", "run__pipeline").get(pk=delivery.pk)
    run = delivery.run
    if not user_can(actor, "deploy_pipeline", run.pipeline):
        raise PermissionDenied("Resending a delivery needs the deploy right on its pipeline.")
    if not DeadLetter.objects.filter(pk=delivery.pk).exists():
        raise ValidationError(f"Delivery {delivery.delivery_id} is {delivery.status}, not a dead letter.")
    audit_record(
        action="delivery.resend",
        object_type="run",
        object_id=run.pk,
        payload={
            "delivery_id": str(delivery.delivery_id),
            "position": delivery.position,
            "attempts_so_far": delivery.attempts,
            "last_error": delivery.last_error or None,
        },
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=actor,
    )
    enqueue_on_commit("pipelines.redeliver", delivery.pk)
    return delivery


def delivery_redeliver(*, delivery_pk: int) -> Delivery:
    """Send a delivery's recorded body again: the step's config from the
    release snapshot, the document from the step's recorded input."""
    delivery = Delivery.objects.select_related("run", "run__release").get(pk=delivery_pk)
    if delivery.status == Delivery.Status.DELIVERED:
        return delivery  # delivered since the resend was asked for: nothing to repeat
    # A failure leaves its attempts and errors on the row and in the audit trail: still a dead letter.
    with contextlib.suppress(DeliveryError):
        delivery_send_again(delivery)
    delivery.refresh_from_db()
    return delivery


def delivery_send_held(delivery_pk: int) -> dict | None:
    """Send a delivery held during a pause, with its own id and the document
    its step recorded; None when it is no longer waiting to be sent."""
    delivery = Delivery.objects.select_related("run__release").filter(pk=delivery_pk).first()
    if delivery is None or delivery.status not in (Delivery.Status.PENDING, Delivery.Status.HELD):
        return None
    return delivery_send_again(delivery)


def delivery_send_again(delivery: Delivery) -> dict:
    """Send a delivery once more, exactly as its step would: the step's config
    from the release snapshot and the document the step recorded as its input,
    so the body and the delivery id are the ones already sent or held. A
    notice is sent as it was recorded (pipelines/delivery/notices.py)."""
    if delivery.event:
        return notice_send(delivery)
    step = delivery.run.release.snapshot_data["steps"][delivery.position - 1]
    document = StepRun.objects.get(run_id=delivery.run_id, position=delivery.position).input
    return delivery_send(step["config"], document, run_id=delivery.run_id, position=delivery.position)
