"""What the audit chain tells the layers above it.

``events_committed`` is sent once the transaction that appended events has
committed (never for one that rolled back), with ``events``: the fields as
stored (action, object type and id, workspace_id, pipeline_id, actor_name,
seq, ts, and the payload as its canonical JSON text) of those events whose
action a receiver asked for with ``events_committed_watch``, and an event's
``hints`` when its writer gave some (``audit_append``); other appends ask for
no callback at all. The operations metrics count from it
(config/observability/events.py), so a counter never counts what did not happen.
"""

from django.dispatch import Signal

events_committed = Signal()

# The actions some receiver of events_committed reads.
WATCHED_ACTIONS: set[str] = set()


def events_committed_watch(actions) -> None:
    """Ask for ``events_committed`` after each commit that appends one of ``actions``."""
    WATCHED_ACTIONS.update(actions)
