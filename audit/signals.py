"""What the audit chain tells the layers above it.

``events_committed`` is sent once the transaction that appended events has
committed (never for one that rolled back), with ``events``: their fields as
stored (action, object type and id, workspace_id, pipeline_id, actor_name,
seq, ts, and the payload as its canonical JSON text). The operations metrics
count from it (config/observability/events.py), so a counter never counts what
did not happen.
"""

from django.dispatch import Signal

events_committed = Signal()
