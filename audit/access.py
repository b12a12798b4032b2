"""Who may read which part of the audit timeline.

Part of the outer shell (views and commands), so it reads from the apps above
``audit``: the timeline itself names workspaces and pipelines by plain ids
only, and a reader sees the events of the workspaces and pipelines on which
they hold ``view_audit``.
"""

from audit.exports import AuditScope


def audit_scope_for(user) -> AuditScope:
    from governance.permissions import filter_for_user, workspaces_for_user
    from pipelines.models import Pipeline

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
    from django.contrib.auth import get_user_model
    from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

    from pipelines.models import Pipeline

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
