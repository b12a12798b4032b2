"""Keel's home page: after sign-in, what needs this person's attention across
the admin, the reviewer app and the auditor's desk, with links to all three.

Part of the outer shell: it reads from every app through their selectors,
each already filtered by object permission, so every item is one the user may
see; a section the user has no right for is left out, and a user with no
rights at all sees a home that says so.
"""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.views.decorators.http import require_GET

from audit.access import audit_scope_for
from governance.permissions import filter_for_user, permission_cache
from pipelines.integration.health import readiness
from pipelines.integration.overview import (
    FAILED_RUNS_DAYS,
    budgets_use_for_user,
    dead_letters_open_for_user,
    deployments_live_for_user,
    pipelines_visible_to,
    releases_awaiting_approval_by,
    runs_failed_for_user,
)
from pipelines.models import Pipeline
from reviews.selectors import pipelines_reviewable_by, review_queue_counts, review_queue_for_user

# How many items of each list the home page shows; the counts cover them all.
SHOWN = 5


def _reviews(user) -> dict | None:
    if not pipelines_reviewable_by(user).exists():
        return None
    queue = review_queue_for_user(user=user)
    return {"counts": review_queue_counts(queue), "soonest": list(queue[:SHOWN])}


def _operations(user) -> dict | None:
    """Failed runs, dead letters, what is live and budgets: for whoever may view a pipeline."""
    if not pipelines_visible_to(user=user).exists():
        return None
    failed = runs_failed_for_user(user=user)
    dead = dead_letters_open_for_user(user=user)
    return {
        "failed_count": failed.count(),
        "failed": list(failed[:SHOWN]),
        "failed_days": FAILED_RUNS_DAYS,
        "dead_count": dead.count(),
        "dead": list(dead[:SHOWN]),
        "deployments": list(deployments_live_for_user(user=user)),
        "budgets": budgets_use_for_user(user=user),
    }


def _approvals(user) -> list | None:
    if not filter_for_user(user, "approve_release", Pipeline.objects.all()).exists():
        return None
    return releases_awaiting_approval_by(user=user)


def _health(user) -> dict | None:
    # Those who deploy and pause pipelines act on it; it shows no data, only what is up.
    if not filter_for_user(user, "deploy_pipeline", Pipeline.objects.all()).exists():
        return None
    return readiness()


@require_GET
@login_required(login_url="reviews-login")
def home(request):
    user = request.user
    with permission_cache():
        scope = audit_scope_for(user)
        sections = {
            "reviews": _reviews(user),
            "approvals": _approvals(user),
            "operations": _operations(user),
            "health": _health(user),
        }
    places = {
        "admin": user.is_staff,
        "review": sections["reviews"] is not None,
        "audit": bool(scope.everything or scope.workspace_ids or scope.pipeline_ids),
    }
    # Staff with no rights reach the admin, which shows them nothing either.
    nothing = not (places["review"] or places["audit"]) and all(section is None for section in sections.values())
    return render(request, "keel/home.html", {**sections, "places": places, "nothing": nothing})
