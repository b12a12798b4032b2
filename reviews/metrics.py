"""Whether a pipeline pays: what its gates passed, held and sampled, what
reviewers did and how fast, how often the sampled outputs were wrong, and the
time saved."""

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, F, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from pipelines.models import Pipeline, Release, Run, StepRun
from reviews.models import PipelineReviewSettings, ReviewDecision, ReviewTask


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default); None for no trials."""
    if n == 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile (share 0.5: the median's upper middle)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class ReviewMetrics:
    gated: int
    passed: int
    held: int
    sampled: int
    decided: int
    approved: int
    edited: int
    rejected: int
    median_seconds: float | None
    p95_seconds: float | None
    breaches: int
    qa_checked: int
    qa_incorrect: int
    qa_interval: tuple[float, float] | None
    delivered_unedited: int
    minutes_per_item: int

    @property
    def passed_share(self):
        return _share(self.passed, self.gated)

    @property
    def held_share(self):
        return _share(self.held, self.gated)

    @property
    def sampled_share(self):
        return _share(self.sampled, self.gated)

    @property
    def approval_rate(self):
        return _share(self.approved - self.edited, self.decided)

    @property
    def edit_rate(self):
        return _share(self.edited, self.decided)

    @property
    def rejection_rate(self):
        return _share(self.rejected, self.decided)

    @property
    def qa_error_rate(self):
        return _share(self.qa_incorrect, self.qa_checked)

    @property
    def hours_saved(self) -> float:
        return self.delivered_unedited * self.minutes_per_item / 60


def review_metrics(*, pipeline: Pipeline, release: Release | None = None, now=None) -> ReviewMetrics:
    now = now or timezone.now()
    runs = Run.objects.filter(pipeline=pipeline, **({"release": release} if release else {}))
    gates = StepRun.objects.filter(run__in=runs, kind="gate").exclude(status=StepRun.Status.RUNNING)
    counts = gates.aggregate(
        gated=Count("pk"),
        held=Count("pk", filter=Q(decision__passed=False)),
        sampled=Count("pk", filter=Q(decision__sampled=True)),
    )
    blocking = ReviewTask.objects.filter(run__in=runs, kind__in=ReviewTask.BLOCKING)
    decided = blocking.exclude(status__in=[ReviewTask.Status.OPEN, ReviewTask.Status.CLOSED])
    edited = decided.filter(status=ReviewTask.Status.APPROVED, decisions__decision=ReviewDecision.Decision.EDIT)
    waits = [
        (decided_at - created_at).total_seconds()
        for created_at, decided_at in decided.values_list("created_at", "decided_at")
        if decided_at is not None
    ]
    breaches = blocking.filter(
        Q(decided_at__gt=F("deadline_at")) | Q(status=ReviewTask.Status.OPEN, deadline_at__lt=now)
    ).count()
    qa = ReviewDecision.objects.filter(task__run__in=runs, task__kind=ReviewTask.Kind.QA_SAMPLE)
    qa_checked = qa.count()
    qa_incorrect = qa.filter(decision=ReviewDecision.Decision.INCORRECT).count()
    completed = runs.filter(status=Run.Status.COMPLETED)
    delivered_edited = StepRun.objects.filter(run__in=completed, kind="gate", decision__review__outcome="edited")
    settings = PipelineReviewSettings.objects.filter(pipeline=pipeline).first()
    return ReviewMetrics(
        gated=counts["gated"],
        passed=counts["gated"] - counts["held"],
        held=counts["held"],
        sampled=counts["sampled"],
        decided=decided.count(),
        approved=decided.filter(status=ReviewTask.Status.APPROVED).count(),
        edited=edited.distinct().count(),
        rejected=decided.filter(status=ReviewTask.Status.REJECTED).count(),
        median_seconds=percentile(waits, 0.5),
        p95_seconds=percentile(waits, 0.95),
        breaches=breaches,
        qa_checked=qa_checked,
        qa_incorrect=qa_incorrect,
        qa_interval=wilson_interval(qa_incorrect, qa_checked),
        delivered_unedited=completed.count() - delivered_edited.values("run").distinct().count(),
        minutes_per_item=settings.minutes_per_item if settings else 0,
    )


@dataclass(frozen=True)
class Day:
    """One UTC day of a pipeline's gate and reviews, for the metrics charts."""

    date: date
    gated: int
    held: int
    decided: int
    approved: int
    edited: int
    rejected: int
    median_seconds: float | None

    @property
    def held_share(self):
        return _share(self.held, self.gated)

    @property
    def approval_rate(self):
        return _share(self.approved - self.edited, self.decided)

    @property
    def edit_rate(self):
        return _share(self.edited, self.decided)

    @property
    def rejection_rate(self):
        return _share(self.rejected, self.decided)


def review_metrics_daily(*, pipeline: Pipeline, release: Release | None = None, days: int = 30, now=None) -> list[Day]:
    """The last ``days`` UTC days, oldest first: outputs through the gate and
    held (by when the gate finished), and blocking reviews decided, how, and
    their median time to decision (by when they were decided). Two grouped
    reads of the rows of the period; the days are filled in here."""
    now = now or timezone.now()
    first = (now.astimezone(UTC) - timedelta(days=days - 1)).date()
    start = datetime.combine(first, time.min, tzinfo=UTC)
    runs = Run.objects.filter(pipeline=pipeline, **({"release": release} if release else {}))
    gates = StepRun.objects.filter(run__in=runs, kind="gate", finished_at__gte=start)
    gated = {
        row["day"]: row
        for row in gates.annotate(day=TruncDate("finished_at", tzinfo=UTC))
        .values("day")
        .annotate(n=Count("pk"), held=Count("pk", filter=Q(decision__passed=False)))
    }
    decided: dict[date, list] = {}
    tasks = ReviewTask.objects.filter(
        run__in=runs,
        kind__in=ReviewTask.BLOCKING,
        status__in=[ReviewTask.Status.APPROVED, ReviewTask.Status.REJECTED],
        decided_at__gte=start,
    ).annotate(
        edits=Count("decisions", filter=Q(decisions__decision=ReviewDecision.Decision.EDIT)),
    )
    for status, created_at, decided_at, edits in tasks.values_list("status", "created_at", "decided_at", "edits"):
        decided.setdefault(decided_at.astimezone(UTC).date(), []).append((status, decided_at - created_at, edits))
    rows = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        cells = decided.get(day, [])
        row = gated.get(day, {"n": 0, "held": 0})
        rows.append(
            Day(
                date=day,
                gated=row["n"],
                held=row["held"],
                decided=len(cells),
                approved=sum(1 for status, _, _ in cells if status == ReviewTask.Status.APPROVED),
                edited=sum(1 for status, _, edits in cells if status == ReviewTask.Status.APPROVED and edits),
                rejected=sum(1 for status, _, _ in cells if status == ReviewTask.Status.REJECTED),
                median_seconds=percentile([wait.total_seconds() for _, wait, _ in cells], 0.5),
            )
        )
    return rows
