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
