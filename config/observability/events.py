"""The event counters, counted from the audit chain after each commit.

Every service already records what happened as an audit event; counting from
``audit.signals.events_committed`` counts each fact once, in the process that
committed it, and never a write that rolled back. Only the few actions below
are read; everything here runs after the commit, outside any transaction.
"""

import json

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from audit.context import Actor
from audit.signals import events_committed, events_committed_watch
from config.observability import instruments as m
from pipelines.models import Pipeline, Run
from pipelines.releases.canary import WATCHER

# A run's final events and the status each records.
RUN_ENDS = {"run.completed": "completed", "run.failed": "failed", "run.rejected": "rejected",
            "run.cancelled": "cancelled"}  # fmt: skip
COUNTED = {"run.started", *RUN_ENDS, "delivery.attempted", "deployment.rolled_back",
           "deployment.canary_rolled_back", "audit.verified", "audit.broken"}  # fmt: skip
# The canary watch (pipelines.releases.canary.canaries_watch) rolls back as this component.
AUTOMATIC = Actor.of(WATCHER).name

events_committed_watch(COUNTED)

_slugs: dict[int, str] = {}


@receiver(post_save, sender=Pipeline, dispatch_uid="observability.pipeline_saved")
@receiver(post_delete, sender=Pipeline, dispatch_uid="observability.pipeline_deleted")
def pipeline_labels_forget(sender=None, instance=None, **kwargs) -> None:
    """Forget the slugs read so far (all of them without an instance): a renamed or
    deleted pipeline is labelled as it now is, and an id SQLite hands out again is
    read anew."""
    if instance is None:
        _slugs.clear()
    else:
        _slugs.pop(instance.pk, None)


def pipeline_label(pipeline_id: int | None) -> str:
    """A pipeline's slug, read once per process until the pipeline is saved or deleted."""
    if pipeline_id is None:
        return ""
    if pipeline_id not in _slugs:
        _slugs[pipeline_id] = Pipeline.objects.filter(pk=pipeline_id).values_list("slug", flat=True).first() or ""
    return _slugs[pipeline_id]


@receiver(events_committed, dispatch_uid="observability.count_events")
def count_events(sender, *, events: list[dict], **kwargs) -> None:
    finished: dict[int, tuple[str, str]] = {}  # run id -> labels, for the runs whose times are to be read
    for event in events:
        action = event["action"]
        if action not in COUNTED:
            continue
        pipeline = pipeline_label(event["pipeline_id"])
        if action == "run.started":
            m.RUNS_STARTED.labels(pipeline).inc()
        elif action in RUN_ENDS:
            m.RUNS_FINISHED.labels(pipeline, RUN_ENDS[action]).inc()
            hints = event.get("hints") or {}
            if "created_at" in hints:  # the engine ending a run knows its times
                _observe_duration(pipeline, RUN_ENDS[action], hints["created_at"], hints["finished_at"])
            else:
                finished[int(event["object_id"])] = (pipeline, RUN_ENDS[action])
        elif action == "delivery.attempted":
            payload = json.loads(event["payload"])
            delivered = payload.get("error") is None and 200 <= (payload.get("status_code") or 0) < 300
            m.DELIVERY_ATTEMPTS.labels(pipeline, "delivered" if delivered else "failed").inc()
        elif action in ("deployment.rolled_back", "deployment.canary_rolled_back"):
            kind = "canary" if action == "deployment.canary_rolled_back" else "deployment"
            trigger = "automatic" if event["actor_name"] == AUTOMATIC else "manual"
            m.ROLLBACKS.labels(pipeline, kind, trigger).inc()
        else:
            m.CHAIN_VERIFICATIONS.labels("intact" if action == "audit.verified" else "broken").inc()
    if finished:
        _observe_durations(finished)


def _observe_durations(finished: dict[int, tuple[str, str]]) -> None:
    # One read of the runs' creation times, after the commit that ended them.
    rows = Run.objects.filter(pk__in=finished).values_list("pk", "created_at", "finished_at")
    for run_id, created_at, finished_at in rows:
        _observe_duration(*finished[run_id], created_at, finished_at)


def _observe_duration(pipeline: str, status: str, created_at, finished_at) -> None:
    seconds = ((finished_at or timezone.now()) - created_at).total_seconds()
    m.RUN_DURATION.labels(pipeline, status).observe(max(seconds, 0.0))
