from django.contrib import admin
from django.utils.html import format_html

from audit.models import AuditEvent


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """The timeline, read-only: nobody adds, changes or deletes an event here."""

    list_display = ("seq", "ts", "actor_name", "action", "object_type", "object_id", "pipeline_id")
    list_filter = ("action", "object_type")
    search_fields = ("action", "actor_name", "object_id", "hash")
    date_hierarchy = "ts"
    ordering = ("-seq",)
    readonly_fields = [f.name for f in AuditEvent._meta.fields] + ["payload_pretty"]
    exclude = ("payload",)
    show_full_result_count = False

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        # Object-level audit rights (view_audit per pipeline) come with the
        # auditor's desk; until then the raw timeline is for superusers and
        # holders of the global audit permission.
        return request.user.is_active and request.user.has_perm("audit.view_auditevent")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        import json

        return format_html("<pre>{}</pre>", json.dumps(obj.payload_data, indent=2, ensure_ascii=False))
