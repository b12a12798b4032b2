import logging

from celery import shared_task

from audit.checkpoints import CheckpointError, audit_checkpoint_write
from audit.services import audit_chain_check

logger = logging.getLogger(__name__)


# Verifying twice is harmless, so the task is acknowledged only once it is
# done and is redelivered if its worker dies.
@shared_task(name="audit.verify_chain", acks_late=True, reject_on_worker_lost=True)
def audit_verify_chain_task() -> dict:
    result = audit_chain_check(actor="worker")
    if not result.ok:
        logger.error("Audit chain broken at #%s: %s", result.broken_seq, result.reason)
    return {"ok": result.ok, "count": result.count, "broken_seq": result.broken_seq}


@shared_task(name="audit.write_checkpoint")
def audit_write_checkpoint_task() -> str | None:

    try:
        path = audit_checkpoint_write()
    except CheckpointError as error:
        # `manage.py check --deploy` warns of this too (keel.W001).
        logger.error("No audit checkpoint written: %s", error)
        return None
    return str(path) if path else None
