import json

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.models import AuditEvent

# The admin is the outer shell: it may read governance's rules, while audit's
# models and services stay free of them.
from governance.permissions import filter_for_user, workspaces_for_user
from pipelines.models import Pipeline


def _audit_scope(user) -> Q | None:
    """The events ``user`` may read: those of pipelines and workspaces they hold
    ``view_audit`` on (directly or through the workspace). None means all."""
    if user.is_superuser:
        return None
    pipelines = filter_for_user(user, "view_audit", Pipeline.objects.all()).values("pk")
    workspaces = workspaces_for_user(user, "view_audit").values("pk")
    return Q(pipeline_id__in=pipelines) | Q(workspace_id__in=workspaces)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The timeline, read-only: nobody adds, changes or deletes an event here,
    and each user sees only the events of what they may audit."""

    list_display = ("seq", "ts", "actor_name", "action", "object_type", "object_id", "pipeline_id")
    list_filter = ("action", "object_type")
    search_fields = ("action", "actor_name", "object_id", "hash")
    date_hierarchy = "ts"
    # seq is the primary key: a total order the index serves, newest first,
    # and no COUNT(*) over millions of rows on every page.
    ordering = ("-seq",)
    sortable_by = ("seq",)
    show_full_result_count = False
    readonly_fields = [f.name for f in AuditEvent._meta.fields] + ["payload_pretty"]
    exclude = ("payload",)
    actions = None  # no bulk delete, nor any other bulk action

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        queryset = super().get_queryset(request)
        scope = _audit_scope(request.user)
        return queryset if scope is None else queryset.filter(scope)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return self.has_view_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        if not self._may_audit_anything(request):
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    @admin.display(description="payload")
    def payload_pretty(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload_data, indent=2, ensure_ascii=False))

    def _may_audit_anything(self, request: HttpRequest) -> bool:
        """Superusers, and whoever holds view_audit on some workspace or pipeline;
        asked several times per page, so answered once per request."""
        if not hasattr(request, "_keel_may_audit"):
            user = request.user
            request._keel_may_audit = user.is_active and (
                user.is_superuser
                or workspaces_for_user(user, "view_audit").exists()
                or filter_for_user(user, "view_audit", Pipeline.objects.all()).exists()
            )
        return request._keel_may_audit
