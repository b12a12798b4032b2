"""The base of every Keel admin page for governed configuration.

Django's admin checks model-level permissions only, and guardian's
``GuardedModelAdmin`` does not filter change lists by itself. Here a page needs
both: the role's model permission (which kind of object) and an object right
on the object or its workspace (which objects). Lists, forms, foreign-key
choices and every object page are narrowed to what the user holds.
"""

from django.contrib import admin
from django.db import models

from governance.admin_history import HistoryAdminMixin
from governance.admin_permissions import ObjectPermissionsAdminMixin
from governance.models import Workspace
from governance.permissions import filter_for_user, user_can, workspaces_for_user


def _model_perm(request, model, action: str) -> bool:
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")


class GovernedModelAdmin(HistoryAdminMixin, ObjectPermissionsAdminMixin, admin.ModelAdmin):
    # URLs typed without a scheme are taken as https (Django 6's default, today).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    # Foreign keys whose choices are narrowed to objects the user may view.
    scoped_foreign_keys: tuple[str, ...] = ("prompt", "model_config", "approval_policy", "pipeline")

    def get_queryset(self, request):
        return filter_for_user(request.user, "view", super().get_queryset(request))

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        if not (_model_perm(request, self.model, "view") or _model_perm(request, self.model, "change")):
            return False
        return obj is None or user_can(request.user, "view", obj)

    def has_change_permission(self, request, obj=None):
        if not _model_perm(request, self.model, "change"):
            return False
        return obj is None or user_can(request.user, "change", obj)

    def has_delete_permission(self, request, obj=None):
        if not _model_perm(request, self.model, "delete"):
            return False
        return obj is None or user_can(request.user, "change", obj)

    def has_add_permission(self, request, *args):
        return _model_perm(request, self.model, "add") and (
            self.model is Workspace or workspaces_for_user(request.user, "change").exists()
        )

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "workspace" and self.model is not Workspace:
            kwargs["queryset"] = workspaces_for_user(request.user, "change")
        elif db_field.name in self.scoped_foreign_keys:
            kwargs["queryset"] = filter_for_user(request.user, "view", db_field.related_model.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class GovernedInline(admin.TabularInline):
    """An inline answers to its parent object's rights."""

    scoped_foreign_keys = GovernedModelAdmin.scoped_foreign_keys

    def has_view_permission(self, request, obj=None):
        return obj is None or user_can(request.user, "view", obj)

    def has_change_permission(self, request, obj=None):
        return _model_perm(request, self.model, "change") and (obj is None or user_can(request.user, "change", obj))

    def has_add_permission(self, request, obj=None):
        return _model_perm(request, self.model, "add") and (obj is None or user_can(request.user, "change", obj))

    def has_delete_permission(self, request, obj=None):
        return _model_perm(request, self.model, "delete") and (obj is None or user_can(request.user, "change", obj))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name in self.scoped_foreign_keys:
            kwargs["queryset"] = filter_for_user(request.user, "view", db_field.related_model.objects.all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class PermittedWorkspaceFilter(admin.RelatedFieldListFilter):
    """The workspace filter lists only workspaces the user may view: the names
    of other clients are not shown to anyone without a right on them."""

    def field_choices(self, field, request, model_admin):
        return [(w.pk, str(w)) for w in workspaces_for_user(request.user, "view").order_by("name")]


WORKSPACE_FILTER = ("workspace", PermittedWorkspaceFilter)
