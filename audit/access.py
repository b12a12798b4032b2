"""Who may read which part of the audit timeline.

Part of the outer shell (views and commands), so it reads from the apps above
``audit``: the timeline itself names workspaces and pipelines by plain ids
only, and a reader sees the events of the workspaces and pipelines on which
they hold ``view_audit``.
"""

import hashlib

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db.models import Max, Q
from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

from audit.canonical import canonical_bytes
from audit.exports import AuditFilter, AuditScope, audit_events_for
from audit.models import AuditEvent
from governance.models import Workspace
from governance.permissions import filter_for_user, workspaces_for_user
from pipelines.models import Pipeline

CHOICES_SECONDS = 24 * 3600  # how long the filter's actor and action choices stay cached per scope


def audit_scope_for(user) -> AuditScope:
    if not user.is_authenticated or not user.is_active:
        return AuditScope()
    if user.is_superuser:
        return AuditScope(everything=True)
    workspaces = frozenset(workspaces_for_user(user, "view_audit", inside=False).values_list("pk", flat=True))
    pipelines = frozenset(filter_for_user(user, "view_audit", Pipeline.objects.all()).values_list("pk", flat=True))
    return AuditScope(workspace_ids=workspaces, pipeline_ids=pipelines)


def access_review_rows(workspace) -> list[dict]:
    """Every holder of every right on a workspace and on each of its
    pipelines, as they stand now: for periodic sign-off. Rights held through
    a group name the group; superusers, who hold everything, are listed too.
    A deactivated user holds nothing (``user_can`` refuses them) and is not
    listed, as rights as of a moment (audit/rights.py) leaves them out."""

    rows = []
    objects = [("workspace", workspace), *(("pipeline", p) for p in Pipeline.objects.filter(workspace=workspace))]
    for kind, obj in objects:
        for user, perms in get_users_with_perms(obj, attach_perms=True, with_group_users=False).items():
            if not user.is_active:
                continue
            rows += [
                {"on": f"{kind} {obj}", "right": perm, "holder": user.get_username(), "via": "direct"} for perm in perms
            ]
        for group, perms in get_groups_with_perms(obj, attach_perms=True).items():
            for member in group.user_set.filter(is_active=True).order_by("username"):
                rows += [
                    {
                        "on": f"{kind} {obj}",
                        "right": perm,
                        "holder": member.get_username(),
                        "via": f"group {group.name}",
                    }
                    for perm in perms
                ]
    for user in get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("username"):
        rows.append(
            {"on": f"workspace {workspace}", "right": "every right", "holder": user.get_username(), "via": "superuser"}
        )
    return sorted(rows, key=lambda row: (row["on"], row["right"], row["holder"]))


def visible_workspaces_and_pipelines(scope: AuditScope):
    """The workspaces and pipelines a reader may audit, by name: what the
    desk's filter offers and names. A pipeline is visible when its workspace
    or the pipeline itself is in the scope."""

    workspaces, pipelines = Workspace.objects.order_by("name"), Pipeline.objects.select_related("workspace")
    if not scope.everything:
        workspaces = workspaces.filter(pk__in=scope.workspace_ids)
        pipelines = pipelines.filter(Q(pk__in=scope.pipeline_ids) | Q(workspace_id__in=scope.workspace_ids))
    return workspaces, pipelines.order_by("workspace__name", "name")


def names_for(scope: AuditScope, *, workspace_ids, pipeline_ids) -> dict[str, str]:
    """``{"workspace:1": "Northwind Traders", "pipeline:3": "Support ticket
    triage"}`` for those of the ids the reader may see; any other id (a
    deleted row, or one outside the scope) is left out, so a page shows its
    bare id and never a name that is not the reader's to see."""
    workspaces, pipelines = visible_workspaces_and_pipelines(scope)
    workspaces = workspaces.filter(pk__in=set(workspace_ids) - {None})
    names = {f"workspace:{pk}": name for pk, name in workspaces.values_list("pk", "name")}
    for pk, name in pipelines.filter(pk__in=set(pipeline_ids) - {None}).values_list("pk", "name"):
        names[f"pipeline:{pk}"] = name
    return names


def visible_names(scope: AuditScope) -> dict[str, str]:
    """The names of every workspace and pipeline the reader may see, keyed
    as ``names_for`` keys them: what an export names its events with."""
    workspaces, pipelines = visible_workspaces_and_pipelines(scope)
    names = {f"workspace:{pk}": name for pk, name in workspaces.values_list("pk", "name")}
    names.update((f"pipeline:{pk}", name) for pk, name in pipelines.values_list("pk", "name"))
    return names


def _scope_key(scope: AuditScope) -> str:
    if scope.everything:
        return "everything"
    ids = canonical_bytes({"w": sorted(scope.workspace_ids), "p": sorted(scope.pipeline_ids)})
    return hashlib.sha256(ids).hexdigest()


def actors_and_actions(scope: AuditScope) -> tuple[list[str], list[str]]:
    """Every actor name and every action on the events a reader may see,
    sorted: the choices of the desk's filter, so they never name what the
    reader cannot see.

    Kept in the cache per scope with the newest seq they cover, so a page
    reads only the events appended since (seq is the key, and an append
    commits before the next one takes the head, so the covered seqs are a
    prefix); a chain shorter than the cached seq (an emptied test database)
    starts over."""
    key = f"audit-desk-choices:{_scope_key(scope)}"
    cached = cache.get(key) or {"seq": 0, "actors": [], "actions": []}
    head = AuditEvent.objects.aggregate(head=Max("seq"))["head"] or 0
    if head < cached["seq"]:
        cached = {"seq": 0, "actors": [], "actions": []}
    if head > cached["seq"]:
        newer = audit_events_for(scope=scope, audit_filter=AuditFilter()).filter(seq__gt=cached["seq"], seq__lte=head)
        pairs = set(newer.order_by().values_list("actor_name", "action").distinct())
        cached = {
            "seq": head,
            "actors": sorted(set(cached["actors"]) | {actor for actor, _ in pairs}),
            "actions": sorted(set(cached["actions"]) | {action for _, action in pairs}),
        }
        cache.set(key, cached, timeout=CHOICES_SECONDS)
    return cached["actors"], cached["actions"]
