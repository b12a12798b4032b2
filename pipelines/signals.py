"""What the engine tells the apps above it (reviews): pipelines never imports
them (reviews → pipelines → governance → audit), so it sends a signal instead.

Both are sent inside the transaction that records what happened, so a handler's
writes (a review task and its audit event) commit or roll back with it.
"""

from django.dispatch import Signal

# A gate held the run for review: sent with ``run``, ``position`` (the gate
# step's) and ``decision`` (the gate's verdict: reasons, rule hits, confidence),
# inside the transaction that marks the run waiting_review. Also ``events``: the
# audit events (``audit_record`` keyword arguments) the engine appends to the
# chain right after the signal, where a handler adds its own; and ``fresh``:
# True when this is the run's first execution, so nothing of it is stored yet.
run_held = Signal()

# A gate passed the output but it falls in the policy's QA sample: same
# arguments, inside the transaction that records the gate step's completion.
run_sampled = Signal()
