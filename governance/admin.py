from django.contrib import admin
from django.core.exceptions import PermissionDenied
from guardian.shortcuts import assign_perm

from governance import admin_accounts  # noqa: F401 - registers the service account admin
from governance.admin_base import WORKSPACE_FILTER, GovernedModelAdmin
from governance.credentials import can_manage_credentials, credential_delete, credential_save
from governance.models import ApprovalPolicy, ChangePolicy, Credential, Workspace
from governance.permissions import can_change_change_policy, workspaces_for_user
from governance.roles import GOVERNANCE_LEADS, ROLES


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

            for permission in ROLES[GOVERNANCE_LEADS][1]:
                assign_perm(permission, request.user, obj)


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(GovernedModelAdmin):
    list_display = ("name", "workspace", "review_mode", "confidence_threshold", "sample_rate", "required_approvals")
    list_filter = (WORKSPACE_FILTER, "review_mode")
    list_select_related = ("workspace",)
    search_fields = ("name", "workspace__name")


@admin.register(ChangePolicy)
class ChangePolicyAdmin(GovernedModelAdmin):
    list_display = ("__str__", "workspace", "pipeline", "approvals_required", "min_pass_rate", "block_regressions",
                    "canary_max_failure_rate", "canary_max_rejection_rate", "canary_min_runs")  # fmt: skip
    list_filter = (WORKSPACE_FILTER,)
    list_select_related = ("workspace", "pipeline")

    # Only a lead of the policy's workspace adds, changes or deletes one.
    def has_add_permission(self, request, *args):
        return super().has_add_permission(request) and any(
            can_change_change_policy(request.user, w) for w in workspaces_for_user(request.user, "change")
        )

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or can_change_change_policy(request.user, obj.workspace))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or can_change_change_policy(request.user, obj.workspace))

    def save_model(self, request, obj, form, change):
        # The form's workspace choices include any the user may change; leading it is checked here.
        if not can_change_change_policy(request.user, obj.workspace):
            raise PermissionDenied("Only a governance lead of the workspace changes its change policies.")
        super().save_model(request, obj, form, change)


@admin.register(Credential)
class CredentialAdmin(GovernedModelAdmin):
    """Names and sources only: a value is never asked for, stored or shown."""

    list_display = ("name", "slug", "workspace", "source", "env_name", "file_name")
    list_filter = (WORKSPACE_FILTER, "source")
    list_select_related = ("workspace",)
    search_fields = ("name", "slug", "env_name", "file_name")
    prepopulated_fields = {"slug": ("name",)}
    fields = ("workspace", "name", "slug", "source", "env_name", "file_name", "description")

    # Only a lead of the credential's workspace (or a superuser) adds, changes or deletes one.
    def has_add_permission(self, request, *args):
        return super().has_add_permission(request) and any(
            can_manage_credentials(request.user, w) for w in workspaces_for_user(request.user, "change")
        )

    def has_change_permission(self, request, obj=None):
        allowed = super().has_change_permission(request, obj)
        return allowed and (obj is None or can_manage_credentials(request.user, obj.workspace))

    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or can_manage_credentials(request.user, obj.workspace))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        formfield = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "workspace" and not request.user.is_superuser:
            led = [w.pk for w in formfield.queryset if can_manage_credentials(request.user, w)]
            formfield.queryset = formfield.queryset.filter(pk__in=led)
        return formfield

    def save_model(self, request, obj, form, change):
        credential_save(credential=obj, actor=request.user, reason="Edited in the admin")

    def delete_model(self, request, obj):
        credential_delete(credential=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for credential in queryset:
            credential_delete(credential=credential, actor=request.user)
