"""Canary releases: a share of production's runs (and every run from allow-listed sources)
go to a candidate release; the canary is promoted, or stopped by hand or by the watcher
when its failure or rejection rate crosses the change policy's limits.

The bucket rule (``canary_bucket``) is a pure function of the pipeline and the run's key,
so a repeated key lands on the same release and raising the share keeps earlier keys in.
"""

import hashlib
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from governance.models import ChangePolicy, change_policy_for
from governance.permissions import user_can
from pipelines.models import (
    Deployment,
    Pipeline,
    Release,
    Run,
)
from pipelines.releases.base import PRODUCTION, deployment_locked, deployment_save, event_record, pipeline_lock
from pipelines.releases.gate import deployment_guard

BUCKETS = 10_000
# canaries_watch records its rollbacks as this system component (system:canary-watch).
WATCHER = "canary-watch"


def _share(value) -> Decimal:
    try:
        share = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError({"share": f"{value!r} is not a number."}) from None
    if not share.is_finite() or share < 0 or share > 100:
        raise ValidationError({"share": "The canary share is a percentage between 0 and 100."})
    return share.quantize(Decimal("0.01"))


@transaction.atomic
def canary_set(*, release: Release, share, actor, sources: list[str] | None = None) -> Deployment:
    """Send ``share`` percent of production traffic (and every run from
    ``sources``) to ``release``. The release must pass the production gate.
    Raising the share keeps earlier keys in the canary (the bucket rule)."""
    pipeline = release.pipeline
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Starting a canary needs the deploy right on the pipeline.")
    share = _share(share)
    sources = [s.strip() for s in (sources or []) if s and s.strip()]
    pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline)
    if deployment.release_id is None:
        raise ValidationError("A canary needs a release already live in production; deploy one first.")
    if deployment.release_id == release.pk:
        raise ValidationError(f"Release #{release.number} is already live in production.")
    deployment_guard(release, PRODUCTION)
    # A new canary, or one started again after it was stopped (share 0, no
    # sources), is judged on a new window: the runs that stopped it must not
    # stop it again at once. Changing a running canary's share keeps its window.
    running = deployment.canary_share > 0 or bool(deployment.canary_sources)
    if deployment.canary_release_id != release.pk or not running:
        deployment.canary_started_at = timezone.now()
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = release, share, sources
    deployment_save(deployment, actor, f"Canary #{release.number} at {share}%")
    event_record(pipeline, "deployment.canary_set", deployment, {
        "release": release.number, "share": str(share), "sources": sources, "stable_release": deployment.release.number,
        "window_started_at": deployment.canary_started_at.isoformat(),
    }, actor)  # fmt: skip
    return deployment


@transaction.atomic
def canary_promote(*, pipeline: Pipeline, actor) -> Deployment:
    """The canary release becomes production's release for all traffic."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Promoting a canary needs the deploy right on the pipeline.")
    pipeline = pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline)
    canary = deployment.canary_release
    if canary is None or (deployment.canary_share == 0 and not deployment.canary_sources):
        raise ValidationError(f"{pipeline.slug} has no running canary to promote.")
    deployment_guard(canary, PRODUCTION)  # the policy may have changed since the canary began
    previous = deployment.release
    deployment.release = canary
    deployment.canary_release, deployment.canary_share, deployment.canary_sources = None, Decimal("0"), []
    deployment.canary_started_at = None
    deployment_save(deployment, actor, f"Promoted canary #{canary.number}")
    event_record(pipeline, "deployment.promoted", deployment,
           {"release": canary.number, "previous_release": previous.number}, actor)  # fmt: skip
    return deployment


@transaction.atomic
def canary_rollback(*, pipeline: Pipeline, actor, reason: str, figures: dict | None = None) -> Deployment:
    """Set the canary to 0% (its release stays named, for the record) and tell
    the owner, the escalation contact and the policy's notify list. ``actor`` is
    a user with the deploy right on the pipeline."""
    if not user_can(actor, "deploy_pipeline", pipeline):
        raise PermissionDenied("Stopping a canary needs the deploy right on the pipeline.")
    return _canary_stop(pipeline=pipeline, actor=actor, reason=reason, figures=figures)


@transaction.atomic
def _canary_stop(*, pipeline: Pipeline, actor, reason: str, figures: dict | None) -> Deployment:
    # What canary_rollback does once the right is checked; canaries_watch calls it
    # directly, as Keel itself (system:canary-watch) applying the change policy's limits.
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why the canary is stopped."})
    pipeline = pipeline_lock(pipeline)
    deployment = deployment_locked(pipeline)
    canary = deployment.canary_release
    if canary is None or (deployment.canary_share == 0 and not deployment.canary_sources):
        raise ValidationError(f"{pipeline.slug} has no running canary.")
    deployment.canary_share, deployment.canary_sources = Decimal("0"), []
    deployment_save(deployment, actor, f"Canary #{canary.number} stopped: {reason}")
    policy = change_policy_for(pipeline)
    recipients = sorted({a for a in [pipeline.owner.email, pipeline.escalation_contact, *policy.notify] if a})
    event_record(pipeline, "deployment.canary_rolled_back", deployment, {
        "release": canary.number, "reason": reason, "figures": figures or {}, "notified": recipients,
    }, actor)  # fmt: skip
    if recipients:
        subject = f"[Keel] {pipeline.slug}: canary #{canary.number} rolled back"
        body = f"The canary of release #{canary.number} was set to 0%.\n\nWhy: {reason}\n"
        transaction.on_commit(lambda: send_mail(subject, body, None, recipients, fail_silently=True))
    return deployment


def canary_figures(deployment: Deployment, *, now: datetime | None = None) -> dict:
    """Finished production runs of the canary and of the stable release since
    the canary began: counts and failure and rejection rates."""
    now = now or timezone.now()
    window = Run.objects.filter(
        pipeline_id=deployment.pipeline_id, environment=PRODUCTION, status__in=Run.FINISHED,
        created_at__gte=deployment.canary_started_at, created_at__lte=now,
    )  # fmt: skip
    figures = {}
    for name, release_id in (("canary", deployment.canary_release_id), ("stable", deployment.release_id)):
        counts = window.filter(release_id=release_id).aggregate(
            runs=Count("pk"),
            failed=Count("pk", filter=Q(status=Run.Status.FAILED)),
            rejected=Count("pk", filter=Q(status=Run.Status.REJECTED)),
        )
        runs = counts["runs"]
        figures[name] = {**counts, "failure_rate": counts["failed"] / runs if runs else 0.0,
                         "rejection_rate": counts["rejected"] / runs if runs else 0.0}  # fmt: skip
    return figures


def canary_verdict(figures: dict, policy: ChangePolicy) -> str | None:
    """Why the canary should roll back, or None while it may go on."""
    canary, stable = figures["canary"], figures["stable"]
    if canary["runs"] < policy.canary_min_runs:
        return None
    for rate, limit in (("failure_rate", policy.canary_max_failure_rate),
                        ("rejection_rate", policy.canary_max_rejection_rate)):  # fmt: skip
        name = rate.replace("_", " ")
        if canary[rate] > float(limit):
            return f"{name} {canary[rate]:.3f} over {canary['runs']} runs exceeds the limit {limit}"
        if canary[rate] - stable[rate] > float(limit):
            return (
                f"{name} {canary[rate]:.3f} is worse than the stable release's {stable[rate]:.3f} by more than {limit}"
            )
    return None


def canaries_watch(*, now: datetime | None = None) -> list[int]:
    """The beat task's work: roll back every production canary whose figures
    cross its pipeline's current limits. Returns the pipelines rolled back."""
    rolled = []
    live = Deployment.objects.filter(environment=PRODUCTION, canary_release__isnull=False).filter(
        Q(canary_share__gt=0) | ~Q(canary_sources=[])
    )
    for deployment in live.select_related("pipeline"):
        figures = canary_figures(deployment, now=now)
        reason = canary_verdict(figures, change_policy_for(deployment.pipeline))
        if reason is None:
            continue
        try:
            _canary_stop(pipeline=deployment.pipeline, actor=WATCHER, reason=reason, figures=figures)
        except ValidationError:
            continue  # stopped by someone else meanwhile
        rolled.append(deployment.pipeline_id)
    return rolled


def canary_bucket(pipeline_slug: str, key: str) -> int:
    """The bucket rule: SHA-256 of ``slug:key`` mod 10,000. A run is in the
    canary when its bucket is below share × 100, so a repeated key lands on
    the same release and raising the share keeps earlier keys in."""
    digest = hashlib.sha256(f"{pipeline_slug}:{key}".encode()).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def deployment_release_for(deployment: Deployment, *, pipeline_slug: str, key: str, source: str = "") -> Release:
    """The release a new run of this deployment executes: the canary's for an
    allow-listed source or a key in its band, else the live one."""
    if deployment.canary_release_id is not None:
        if source and source in (deployment.canary_sources or []):
            return deployment.canary_release
        if canary_bucket(pipeline_slug, key) < int(deployment.canary_share * 100):
            return deployment.canary_release
    return deployment.release
