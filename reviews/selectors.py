"""Reads for the reviewer app, filtered by object permission."""

import hashlib
import json
import logging
import math
import secrets
from datetime import timedelta

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from governance.permissions import filter_for_user
from pipelines.models import Pipeline, StepRun
from reviews.models import PendingApproval, ReviewDecision, ReviewTask
from reviews.presentation import title_and_excerpt

logger = logging.getLogger(__name__)


def pipelines_reviewable_by(user) -> QuerySet[Pipeline]:
    return filter_for_user(user, "review_output", Pipeline.objects.all())


def review_tasks_for_user(*, user) -> QuerySet[ReviewTask]:
    """Every review task on a pipeline the user holds review_output on
    (directly or through its workspace); nothing else, ever."""
    return ReviewTask.objects.filter(pipeline__in=pipelines_reviewable_by(user)).select_related(
        "pipeline", "run", "run__release", "claimed_by"
    )


def review_queue_for_user(
    *, user, pipeline: str = "", reason: str = "", age_hours: int | None = None, now=None, reviewable=None
):
    """The open tasks this user may decide, soonest deadline first (QA samples,
    which have none, last), narrowed by pipeline slug, reason and minimum age.
    ``reviewable``, when given, must be the keys of
    ``pipelines_reviewable_by(user)`` as the caller read them in this request
    (the queue view, which lists them anyway): it spares the permission subquery.
    (A blocking task whose run was cancelled meanwhile stays until someone
    opens it, which closes it: the queue joins no run rows, so it stays fast.)"""
    now = now or timezone.now()
    # A queue row shows the pipeline's name and the claim, never the run's
    # documents or the release snapshot: those stay in the database.
    tasks = (
        review_tasks_for_user(user=user)
        if reviewable is None
        else ReviewTask.objects.filter(pipeline_id__in=list(reviewable))
    )
    tasks = (
        tasks.filter(status=ReviewTask.Status.OPEN)
        .select_related(None)
        .select_related("pipeline", "claimed_by")
        .defer("pipeline__input_schema", "pipeline__runbook", "pipeline__description")
    )
    if pipeline:
        tasks = tasks.filter(pipeline__slug=pipeline)
    if reason:
        tasks = tasks.filter(reason_codes__contains=f",{reason},")
    if age_hours:
        tasks = tasks.filter(created_at__lte=now - timedelta(hours=age_hours))
    return tasks.order_by(F("deadline_at").asc(nulls_last=True), "created_at", "pk")


def review_queue_counts(tasks: QuerySet[ReviewTask]) -> dict:
    """Counts of a queue: in all, how many are overdue, and per pipeline; one
    grouped scan of the task table, no join."""
    now = timezone.now()
    rows = list(
        tasks.order_by()
        .values("pipeline_id")
        .annotate(n=Count("pipeline_id"), overdue=Count("pipeline_id", filter=Q(deadline_at__lt=now)))
    )
    pipelines = {
        pk: (slug, name)
        for pk, slug, name in Pipeline.objects.filter(pk__in=[r["pipeline_id"] for r in rows]).values_list(
            "pk", "slug", "name"
        )
    }
    by_pipeline = sorted(
        ({"pipeline__slug": pipelines[r["pipeline_id"]][0], "pipeline__name": pipelines[r["pipeline_id"]][1],
          "n": r["n"]} for r in rows),
        key=lambda row: row["pipeline__name"],
    )  # fmt: skip
    return {
        "total": sum(r["n"] for r in rows),
        "overdue": sum(r["overdue"] for r in rows),
        "by_pipeline": by_pipeline,
    }


# A queue's counts are a scan of every open task (100,000 of them: tens of ms),
# so they are kept briefly, under a version that every opening or closing of a
# task through reviews.services changes at once. Anything else (a task loaded in
# bulk, a deadline passing, a cache outage while resetting the version) shows
# within COUNTS_SECONDS; the queue's rows themselves are always read live.
COUNTS_SECONDS = 10
_COUNTS_VERSION = "reviews:queue-counts:version"


def _new_counts_version() -> None:
    try:
        cache.set(_COUNTS_VERSION, secrets.token_hex(8), None)
    except Exception:  # noqa: BLE001 - a cache outage must not fail a decision or a gate; counts age out
        logger.warning("Could not reset the review queue counts' version", exc_info=True)


def review_queue_counts_changed() -> None:
    """Forget every cached queue count: a task was opened or closed. Now, and
    again after the commit, so that a count read between the two (still
    without this change) is not kept under the new version."""
    _new_counts_version()
    transaction.on_commit(_new_counts_version)


def review_queue_counts_cached(tasks: QuerySet[ReviewTask], *, pipeline_ids, filters: dict) -> dict:
    """``review_queue_counts(tasks)`` for a queue of the pipelines
    ``pipeline_ids`` (all the user may review) narrowed by ``filters``. The
    key is that set and those filters, never the user: whoever may review the
    same pipelines reads the same counts, and nobody reads counts of a
    pipeline they may not review."""
    shape = json.dumps([sorted(pipeline_ids), sorted((k, str(v)) for k, v in filters.items() if v)])
    try:
        version = cache.get(_COUNTS_VERSION)
        if version is None:
            cache.add(_COUNTS_VERSION, secrets.token_hex(8), None)
            version = cache.get(_COUNTS_VERSION)
        key = f"reviews:queue-counts:{version}:{hashlib.sha256(shape.encode()).hexdigest()}"
        counts = cache.get(key) if version is not None else None
    except Exception:  # noqa: BLE001 - no cache: count every time, as before
        logger.warning("Review queue counts: cache unavailable", exc_info=True)
        return review_queue_counts(tasks)
    if counts is None:
        counts = review_queue_counts(tasks)
        if version is not None:
            try:
                cache.set(key, counts, COUNTS_SECONDS)
            except Exception:  # noqa: BLE001
                logger.warning("Review queue counts: cache unavailable", exc_info=True)
    return counts


def review_decisions_by(*, user) -> QuerySet[ReviewDecision]:
    """The user's own decisions, newest first, on pipelines they may still review."""
    return (
        ReviewDecision.objects.filter(reviewer=user, task__pipeline__in=pipelines_reviewable_by(user))
        .select_related("task", "task__pipeline", "task__run")
        .order_by("-created_at", "-pk")
    )


def review_queue_titles(tasks) -> dict[int, tuple[str, str]]:
    """Each task's title and excerpt, read from the output it holds for
    review (after any redaction, like the task page): one query for a page of
    the queue, never for the whole queue."""
    tasks = list(tasks)
    if not tasks:
        return {}
    # Held runs share few positions (their gates): one IN list each, not an OR per task,
    # whose compiling cost more than the query; a row at another task's position is ignored.
    rows = StepRun.objects.filter(run_id__in={t.run_id for t in tasks}, position__in={t.position for t in tasks})
    held = {(r, p): i for r, p, i in rows.values_list("run_id", "position", "input")}
    return {
        task.pk: title_and_excerpt(held.get((task.run_id, task.position)), task.pipeline.title_field) for task in tasks
    }


def review_approvals_pending(*, user, now=None) -> list[PendingApproval]:
    """The user's approvals still in their undo window, newest first, each
    with ``seconds_left`` (counted here, so a browser's clock does not matter)."""
    now = now or timezone.now()
    pending = list(PendingApproval.objects.filter(reviewer=user, due_at__gt=now).order_by("-due_at"))
    for approval in pending:
        approval.seconds_left = math.ceil((approval.due_at - now).total_seconds())
    return pending
