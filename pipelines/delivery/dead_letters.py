"""Dead letters: deliveries that exhausted their retries, and resending them.

A resend posts the very body the delivery was made for, under the same
delivery id, so a receiver that already processed it drops the repeat.
``delivery_resend`` records who asked (the audit event) and queues the send;
the worker's ``delivery_redeliver`` makes it, with the usual attempts and
their events. No request waits on a slow receiver.
"""

import contextlib

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import QuerySet

from audit.services import audit_record
from governance.permissions import filter_for_user, user_can
from pipelines.delivery.webhooks import delivery_send_again
from pipelines.models import DeadLetter, Delivery
from pipelines.steps.base import StepError


def dead_letters_for_user(*, user) -> QuerySet[DeadLetter]:
    return filter_for_user(user, "view", DeadLetter.objects.all()).select_related("run", "run__pipeline")


@transaction.atomic
def delivery_resend(*, delivery: Delivery, actor) -> Delivery:
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
    from pipelines.tasks import delivery_redeliver_task

    delivery_redeliver_task.delay_on_commit(delivery.pk)
    return delivery


def delivery_redeliver(*, delivery_pk: int) -> Delivery:
    """Send a delivery's recorded body again: the step's config from the
    release snapshot, the document from the step's recorded input."""
    delivery = Delivery.objects.select_related("run", "run__release").get(pk=delivery_pk)
    if delivery.status == Delivery.Status.DELIVERED:
        return delivery  # delivered since the resend was asked for: nothing to repeat
    # A failure leaves its attempts and errors on the row and in the audit trail: still a dead letter.
    with contextlib.suppress(StepError):
        delivery_send_again(delivery)
    delivery.refresh_from_db()
    return delivery
