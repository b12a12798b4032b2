"""What was live at a moment: read from the deployment history and the release transitions,
never from the current rows.
"""

from datetime import UTC, datetime

from django.core.exceptions import ValidationError
from django.utils import timezone

from pipelines.models import (
    Deployment,
    Pipeline,
    Release,
)
from pipelines.releases.base import State


def _history_at(pipeline: Pipeline, environment: str, at: datetime):
    return (
        Deployment.history.filter(pipeline_id=pipeline.pk, environment=environment, history_date__lte=at)
        .order_by("-history_date", "-history_id")
        .first()
    )


def _deployed_by(pipeline: Pipeline, environment: str, record) -> dict:
    """The record that put ``record``'s release live: the earliest of the
    unbroken run of records naming it."""
    earlier = (
        Deployment.history.filter(
            pipeline_id=pipeline.pk, environment=environment, history_date__lte=record.history_date
        )
        .exclude(release_id=record.release_id)
        .order_by("-history_date", "-history_id")
        .first()
    )
    since = Deployment.history.filter(pipeline_id=pipeline.pk, environment=environment, release_id=record.release_id,
                                      history_date__lte=record.history_date)  # fmt: skip
    if earlier is not None:
        since = since.filter(history_date__gt=earlier.history_date)
    first = since.order_by("history_date", "history_id").select_related("history_user").first()
    return {
        "by": first.history_user.get_username() if first.history_user else None,
        "at": first.history_date.isoformat(),
        "reason": first.history_change_reason or "",
    }


def pipeline_as_of(*, pipeline: Pipeline, at: datetime) -> dict:
    """For each environment at ``at``: the live release, its canary and share,
    whether paused, who approved and deployed the release, and its whole
    configuration — read from the deployment history and the transitions."""
    answer = {"pipeline": pipeline.slug, "at": at.isoformat(), "environments": {}}
    for environment in Deployment.Environment.values:
        record = _history_at(pipeline, environment, at)
        if record is None or record.history_type == "-" or record.release_id is None:
            answer["environments"][environment] = None
            continue
        release = Release.objects.get(pk=record.release_id)
        votes = release.transitions.filter(state=State.APPROVAL, created_at__lte=at).select_related("actor")
        canary = None
        if record.canary_release_id and (record.canary_share > 0 or record.canary_sources):
            canary_release = Release.objects.get(pk=record.canary_release_id)
            canary = {"release": canary_release.number, "fingerprint": canary_release.fingerprint,
                      "share": str(record.canary_share), "sources": record.canary_sources}  # fmt: skip
        answer["environments"][environment] = {
            "release": release.number,
            "fingerprint": release.fingerprint,
            "author": release.created_by.get_username() if release.created_by else None,
            "approved_by": [t.actor.get_username() for t in votes.order_by("pk") if t.actor],
            "deployed": _deployed_by(pipeline, environment, record),
            "canary": canary,
            "paused": record.paused,
            "pause_reason": record.pause_reason,
            "configuration": release.snapshot_data,
        }
    return answer


def parse_moment(text: str) -> datetime:
    """An ISO 8601 moment; one without a zone is read as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError({"at": f"{text!r} is not an ISO 8601 moment such as 2026-11-03T14:00Z."}) from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment
