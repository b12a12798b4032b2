"""Notices: signed events that tell a pipeline's consumer what became of a run
it will get no output for. Today one: ``run.rejected``.

Where it goes: the webhook of the release's first deliver step after the gate
that rejected the run, with that step's signing secret. The consumer that
would have received the output is told it will not. A release with no webhook
delivery there sends nothing; neither does a staging run (as for deliveries).

It travels as a delivery (pipelines/delivery/webhooks.py): a Delivery row made in the
rejection's transaction with a stable delivery id and the notice's fields, a
``delivery.created`` event, then, on commit, a task that POSTs it signed with
the same headers as a delivery plus ``X-Keel-Event``, retried, held while the
pipeline is paused, and a dead letter once it gives up. The body is the
canonical JSON of::

    {"delivery_id", "event": "run.rejected", "run_id", "pipeline",
     "release": {"number", "fingerprint"}, "position", "reason", "reviewer",
     "rejected_at"}

It never carries the output that was rejected.
"""

import hashlib
import uuid

from django.db import transaction

from audit.canonical import canonical_bytes
from pipelines.broker import enqueue_on_commit
from pipelines.delivery.errors import DeliveryError
from pipelines.delivery.events import delivery_event
from pipelines.delivery.webhooks import (
    delivery_hold,
    delivery_record,
    run_paused,
    signed_send,
    signing_secret,
)
from pipelines.models import Delivery, Deployment, Run

RUN_REJECTED = "run.rejected"


def _webhook_after(snapshot: dict, position: int) -> dict | None:
    """The config of the first webhook deliver step after ``position``, if any."""
    for step in snapshot["steps"]:
        config = step["config"]
        if step["position"] > position and step["kind"] == "deliver" and config.get("channel") == "webhook":
            return config
    return None


def _body(delivery_id: uuid.UUID, notice: dict) -> bytes:
    return canonical_bytes({"delivery_id": str(delivery_id), **notice})


def rejection_notice_prepare(*, run: Run, position: int, reason: str, reviewer, at) -> list[dict]:
    """Within the rejection's transaction: make the ``run.rejected`` notice's
    delivery row and queue its sending on commit; returns its audit event
    (``audit_record`` keyword arguments) for the caller to append with its own.
    Nothing, when the release has no webhook to tell."""
    if run.environment != Deployment.Environment.PRODUCTION:
        return []
    release = run.release
    config = _webhook_after(release.snapshot_data, position)
    if config is None:
        return []
    notice = {
        "event": RUN_REJECTED,
        "run_id": run.pk,
        "pipeline": run.pipeline.slug,
        "release": {"number": release.number, "fingerprint": release.fingerprint},
        "position": position,
        "reason": reason,
        "reviewer": reviewer.get_username() if getattr(reviewer, "is_authenticated", False) else None,
        "rejected_at": at.isoformat(),
    }
    delivery_id = uuid.uuid4()
    delivery = Delivery.objects.create(
        run=run,
        position=position,  # the gate's: the step that ended the run sends its notice
        delivery_id=delivery_id,
        channel=Delivery.Channel.WEBHOOK,
        url=config["url"],
        event=RUN_REJECTED,
        notice=notice,
        payload_sha256=hashlib.sha256(_body(delivery_id, notice)).hexdigest(),
    )
    enqueue_on_commit("pipelines.send_notice", delivery.pk)
    payload = {"delivery_id": str(delivery_id), "position": position, "event": RUN_REJECTED, "url": delivery.url,
               "payload_sha256": delivery.payload_sha256}  # fmt: skip
    return [{"action": "delivery.created", "object_type": "run", "object_id": run.pk, "payload": payload,
             "workspace_id": run.pipeline.workspace_id, "pipeline_id": run.pipeline_id, "actor": None}]  # fmt: skip


def notice_send(delivery: Delivery) -> dict:
    """Send a notice as recorded, under its delivery id; returns its record.
    Raises DeliveryError as a delivery does (``transient`` when worth retrying)."""
    run = Run.objects.select_related("pipeline", "release").get(pk=delivery.run_id)
    if delivery.status == Delivery.Status.DELIVERED:
        return delivery_record(delivery)
    if run_paused(run):
        return delivery_record(delivery_hold(delivery, run))
    config = _webhook_after(run.release.snapshot_data, delivery.position) or {}
    try:
        secret = signing_secret(config, run.pipeline.workspace_id)
    except DeliveryError as error:
        notice_give_up(delivery_pk=delivery.pk, error=str(error))
        raise
    body = _body(delivery.delivery_id, delivery.notice)
    if hashlib.sha256(body).hexdigest() != delivery.payload_sha256:
        error = f"Notice {delivery.delivery_id} no longer matches the body it was made for; it is not sent."
        notice_give_up(delivery_pk=delivery.pk, error=error)
        raise DeliveryError(error, transient=False)
    return signed_send(delivery, run, body, secret=secret, content_type="application/json",
                 headers={"X-Keel-Event": delivery.event})  # fmt: skip


def notice_send_by_pk(delivery_pk: int) -> dict | None:
    """The task's entry: None when the notice is no longer waiting to be sent."""
    delivery = Delivery.objects.filter(pk=delivery_pk).exclude(event="").first()
    if delivery is None or delivery.status not in (Delivery.Status.PENDING, Delivery.Status.HELD):
        return None
    return notice_send(delivery)


def notice_give_up(*, delivery_pk: int, error: str) -> None:
    """Its retries are spent (or it can never be sent): a dead letter now."""
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().select_related("run__pipeline").get(pk=delivery_pk)
        if delivery.status in (Delivery.Status.DELIVERED, Delivery.Status.FAILED):
            return
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.FAILED, last_error=error)
        delivery_event(delivery.run, "delivery.failed", delivery, {"event": delivery.event, "error": error})
