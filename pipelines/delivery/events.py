"""The audit events of a delivery, whatever its channel (webhook, e-mail, notice).

They are recorded against the run, beside its step events, so that the run's
timeline tells the whole story; they name the delivery by its id and position,
never by its URL's credentials or a recipient's address.
"""

from audit.services import audit_record
from pipelines.models import Delivery, Run


def delivery_event(run: Run, action: str, delivery: Delivery, payload: dict) -> None:
    audit_record(
        action=action,
        object_type="run",
        object_id=run.pk,
        payload={"delivery_id": str(delivery.delivery_id), "position": delivery.position, **payload},
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
    )
