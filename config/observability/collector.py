"""What /metrics exposes: the event counters and histograms that every
process wrote to PROMETHEUS_MULTIPROC_DIR, added up, and gauges of stored
state read from the database at scrape time (so they are right however many
processes there are): runs in progress, open and overdue reviews, dead
letters, canary shares, the audit chain's head and the age of its last
verification and checkpoint, and budget use against each limit.
"""

import json
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone
from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.core import GaugeMetricFamily

from audit.models import AuditEvent
from pipelines.models import Budget, DeadLetter, Deployment, Run
from pipelines.runs.budgets import budget_spend
from reviews.models import ReviewTask

ACTIVE = (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING_REVIEW)


def metrics_registry() -> CollectorRegistry:
    """A registry for one scrape: the processes' files and the database."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(settings.KEEL_METRICS_DIR))
    registry.register(StoredStateCollector())
    return registry


def _newest_checkpoint_time() -> datetime | None:
    """When the newest checkpoint file (by its zero-padded seq) was written.
    Only its time is read: checking its signature is the nightly check's job
    (audit_chain_check), and reading every file at each scrape would grow
    with the folder."""
    names = sorted(Path(settings.KEEL_CHECKPOINT_DIR).glob("checkpoint-*.json"))
    if not names:
        return None
    try:
        written_at = json.loads(names[-1].read_text())["written_at"]
        return datetime.fromisoformat(written_at.replace("Z", "+00:00"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _age(now: datetime, then: datetime | None) -> float | None:
    return None if then is None else max((now - then).total_seconds(), 0.0)


class StoredStateCollector:
    """Gauges computed from the database at each scrape."""

    def collect(self):
        now = timezone.now()
        yield from self._runs()
        yield from self._reviews(now)
        yield from self._deliveries()
        yield from self._canaries()
        yield from self._chain(now)
        yield from self._budgets(now)

    def _runs(self):
        gauge = GaugeMetricFamily("keel_runs_active", "Runs not yet finished.", labels=["pipeline", "status"])
        rows = Run.objects.filter(status__in=ACTIVE).values_list("pipeline__slug", "status").annotate(n=Count("pk"))
        for slug, status, count in rows.order_by():
            gauge.add_metric([slug, status], count)
        yield gauge

    def _reviews(self, now):
        open_ = GaugeMetricFamily("keel_review_tasks_open", "Open review tasks.", labels=["pipeline", "kind"])
        overdue = GaugeMetricFamily(
            "keel_review_tasks_overdue", "Open review tasks that hold a run, past their deadline.", labels=["pipeline"]
        )
        oldest = GaugeMetricFamily(
            "keel_review_task_oldest_age_seconds", "Age of the oldest open review holding a run.", labels=["pipeline"]
        )
        rows = (
            ReviewTask.objects.filter(status=ReviewTask.Status.OPEN)
            .values_list("pipeline__slug", "kind")
            .annotate(n=Count("pk"), late=Count("pk", filter=Q(deadline_at__lt=now)), first=Min("created_at"))
            .order_by()
        )
        # Overdue and oldest count the reviews that hold a run (not QA samples, which hold nothing).
        late: dict[str, int] = {}
        first: dict[str, datetime] = {}
        for slug, kind, count, late_count, created in rows:
            open_.add_metric([slug, kind], count)
            if kind in ReviewTask.BLOCKING:
                late[slug] = late.get(slug, 0) + late_count
                first[slug] = min(first.get(slug, created), created)
        for slug in sorted(late):
            overdue.add_metric([slug], late[slug])
            oldest.add_metric([slug], _age(now, first[slug]))
        yield from (open_, overdue, oldest)

    def _deliveries(self):
        gauge = GaugeMetricFamily(
            "keel_dead_letters", "Deliveries that exhausted their retries and wait for a resend.", labels=["pipeline"]
        )
        rows = DeadLetter.objects.values_list("run__pipeline__slug").annotate(n=Count("pk")).order_by()
        for slug, count in rows:
            gauge.add_metric([slug], count)
        yield gauge

    def _canaries(self):
        share = GaugeMetricFamily(
            "keel_canary_share_ratio", "Share of new runs sent to the canary release (0 to 1).",
            labels=["pipeline", "environment"],
        )  # fmt: skip
        paused = GaugeMetricFamily("keel_pipeline_paused", "1 while a deployment is paused.",
                                   labels=["pipeline", "environment"])  # fmt: skip
        rows = Deployment.objects.values_list("pipeline__slug", "environment", "canary_release_id", "canary_share",
                                              "paused").order_by("pipeline__slug", "environment")  # fmt: skip
        for slug, environment, canary_id, canary_share, is_paused in rows:
            share.add_metric([slug, environment], float(canary_share) / 100 if canary_id else 0.0)
            paused.add_metric([slug, environment], 1.0 if is_paused else 0.0)
        yield from (share, paused)

    def _chain(self, now):
        head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        yield GaugeMetricFamily("keel_audit_chain_head_seq", "Sequence number of the newest audit event.", value=head)
        checks = AuditEvent.objects.filter(action__in=["audit.verified", "audit.broken"]).order_by("-seq")
        last = checks.values_list("action", "ts").first()
        verified = (
            AuditEvent.objects.filter(action="audit.verified").order_by("-seq").values_list("ts", flat=True).first()
        )
        if verified is not None:
            yield GaugeMetricFamily(
                "keel_audit_verification_age_seconds",
                "Age of the newest audit chain check that found the chain intact.",
                value=_age(now, verified),
            )
        yield GaugeMetricFamily(
            "keel_audit_chain_broken",
            "1 when the newest audit chain check found the chain broken.",
            value=1.0 if last and last[0] == "audit.broken" else 0.0,
        )
        written = _newest_checkpoint_time()
        if written is not None:
            yield GaugeMetricFamily(
                "keel_audit_checkpoint_age_seconds", "Age of the newest signed checkpoint.", value=_age(now, written)
            )

    def _budgets(self, now):
        gauge = GaugeMetricFamily(
            "keel_budget_used_ratio",
            "This month's spend as a share of each budget limit.",
            labels=["scope", "name", "unit", "limit"],
        )
        budgets = Budget.objects.select_related("pipeline", "workspace").order_by("pk")
        for budget in budgets:
            if budget.pipeline_id:
                scope, name = "pipeline", budget.pipeline.slug
            else:
                scope, name = "workspace", budget.workspace.slug
            spend = budget_spend(budget=budget, now=now)
            for limit, value in (("soft", budget.soft_limit), ("hard", budget.hard_limit)):
                if value:
                    gauge.add_metric([scope, name, budget.unit, limit], float(spend / value))
        yield gauge
