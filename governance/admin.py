from django.contrib import admin

from governance.admin_base import WORKSPACE_FILTER, GovernedModelAdmin
from governance.models import ApprovalPolicy, Workspace


@admin.register(Workspace)
class WorkspaceAdmin(GovernedModelAdmin):
    list_display = ("name", "slug", "owner", "created_at")
    list_select_related = ("owner",)
    search_fields = ("name", "slug", "owner__username")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ()

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if not change and not request.user.is_superuser:
            # Whoever creates a workspace leads it; recorded like any grant.
            from guardian.shortcuts import assign_perm

            from governance.roles import GOVERNANCE_LEADS, ROLES

            for permission in ROLES[GOVERNANCE_LEADS][1]:
                assign_perm(permission, request.user, obj)


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(GovernedModelAdmin):
    list_display = ("name", "workspace", "review_mode", "confidence_threshold", "sample_rate", "required_approvals")
    list_filter = (WORKSPACE_FILTER, "review_mode")
    list_select_related = ("workspace",)
    search_fields = ("name", "workspace__name")
