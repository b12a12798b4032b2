"""The base of every Keel admin page for governed configuration.

Django's admin checks model-level permissions only, and guardian's
``GuardedModelAdmin`` does not filter change lists by itself. Here a page needs
both: the role's model permission (which kind of object) and an object right
on the object or its workspace (which objects). Lists, forms, foreign-key
choices and every object page are narrowed to what the user holds.

Every write made here is checked and recorded the same way, whatever the
admin: a form may only point a foreign key (or many-to-many) at objects the
user may change (its choices are narrowed, and a forged value is a form error
naming the field); every save and delete goes through
``governance.services.object_save`` / ``object_delete``, which check the
rights again and record the audit event in the same transaction; every bulk
action first needs a right on each selected object (``action_rights``), then
its service checks its own.

Every change form of history-tracked configuration asks why (the reason goes
into the history record and its audit event; the workspace decides whether
it is required), and JSON fields are edited pretty-printed, with syntax
errors named by line and column (governance.forms).
"""

import functools

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction

from governance.admin_history import HistoryAdminMixin
from governance.admin_permissions import ObjectPermissionsAdminMixin
from governance.forms import CHANGE_REASON, ChangeReasonForm, JSONEditorField
from governance.models import Workspace
from governance.permissions import (
    filter_for_user,
    is_governed,
    linkable_for_user,
    user_can,
    user_can_link,
    workspaces_for_user,
)
from governance.services import is_history_tracked, object_delete, object_save

# The right an action needs on each selected object unless its admin says otherwise.
DEFAULT_ACTION_RIGHTS = ("change",)
RIGHT_VERBS = {"approve_release": "approve", "deploy_pipeline": "deploy", "review_output": "review"}


class LinkCheckedForm(forms.BaseForm):
    """Refuses, as an error on the field, any foreign-key or many-to-many value
    the user may not change, whatever queryset the field was given."""

    link_user = None  # set on the subclass ``link_checked`` makes

    def clean(self):
        cleaned = super().clean()
        for name, field in self.fields.items():
            if not isinstance(field, forms.ModelChoiceField) or not is_governed(field.queryset.model):
                continue
            value = cleaned.get(name)
            chosen = [value] if isinstance(value, models.Model) else list(value or [])
            refused = [str(v) for v in chosen if not user_can_link(self.link_user, v)]
            if refused:
                self.add_error(name, f"You may not change {', '.join(refused)}; choose one you may change.")
        return cleaned


def link_checked(form_class: type[forms.BaseForm], user) -> type[forms.BaseForm]:
    return type(form_class.__name__, (LinkCheckedForm, form_class), {"link_user": user})


def _narrowed(db_field, request, kwargs: dict) -> dict:
    """Foreign-key and many-to-many choices: only objects the user may change."""
    if "queryset" not in kwargs and is_governed(db_field.related_model):
        kwargs["queryset"] = linkable_for_user(request.user, db_field.related_model._default_manager.all())
    return kwargs


def _model_perm(request, model, action: str) -> bool:
    opts = model._meta
    return request.user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")


# URLs typed without a scheme are taken as https (Django 6's default, today);
# JSON is edited pretty-printed in a monospace editor.
FORMFIELD_OVERRIDES = {
    models.URLField: {"assume_scheme": "https"},
    models.JSONField: {"form_class": JSONEditorField},
}


def _reason(form) -> str:
    return (getattr(form, "cleaned_data", None) or {}).get(CHANGE_REASON, "")


class GovernedModelAdmin(HistoryAdminMixin, ObjectPermissionsAdminMixin, admin.ModelAdmin):
    formfield_overrides = FORMFIELD_OVERRIDES
    # action name -> the rights (any one) it needs on each selected object.
    action_rights: dict[str, tuple[str, ...]] = {}

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
        return super().formfield_for_foreignkey(db_field, request, **_narrowed(db_field, request, kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return super().formfield_for_manytomany(db_field, request, **_narrowed(db_field, request, kwargs))

    class Media:
        css = {"all": ("governance/admin.css",)}

    def get_form(self, request, obj=None, change=False, **kwargs):
        if is_history_tracked(self.model):
            # The reason for the change rides on the form (rendered above the save buttons).
            base = kwargs.get("form", self.form)
            kwargs["form"] = type(base.__name__, (ChangeReasonForm, base), {})
        return link_checked(super().get_form(request, obj, change=change, **kwargs), request.user)

    def get_fieldsets(self, request, obj=None):
        # The reason is not one of the object's fields: the change form shows it by the save buttons.
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != CHANGE_REASON]})
            for name, options in super().get_fieldsets(request, obj)
        ]

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        may_write = self.has_add_permission(request) if add else self.has_change_permission(request, obj)
        if CHANGE_REASON in form.fields and may_write:
            context["change_reason_field"] = form[CHANGE_REASON]
            workspace = form.policy_workspace() if obj is not None else None
            context["change_reason_required"] = bool(workspace and workspace.change_reason_required)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # Writes: each through the services that check the rights and record the event.

    def save_model(self, request, obj, form, change):
        object_save(obj=obj, actor=request.user, reason=_reason(form))

    def delete_model(self, request, obj):
        object_delete(obj=obj, actor=request.user)

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)

    def save_formset(self, request, form, formset, change):
        # The rows (a pipeline's steps) carry the reason given for the whole form.
        reason = _reason(form)
        for obj in formset.save(commit=False):
            object_save(obj=obj, actor=request.user, reason=reason)
        for obj in formset.deleted_objects:
            object_delete(obj=obj, actor=request.user, reason=reason)
        formset.save_m2m()

    def get_actions(self, request):
        return {
            name: (func if name == "delete_selected" else self._rights_checked(func, name), name, description)
            for name, (func, _, description) in super().get_actions(request).items()
        }

    def _rights_checked(self, func, name: str):
        """``func`` refusing the whole batch, with a message and nothing done,
        when any selected object lacks every right the action may need.
        Django's bulk delete is left as it is: it refuses (403) objects the
        user may not delete, and each delete goes through ``delete_model``."""
        rights = self.action_rights.get(name, DEFAULT_ACTION_RIGHTS)

        @functools.wraps(func)
        def action(modeladmin, request, queryset):
            refused = [obj for obj in queryset if not any(user_can(request.user, r, obj) for r in rights)]
            if refused:
                names = ", ".join(str(obj) for obj in refused[:10])
                verb = " or ".join(RIGHT_VERBS.get(right, right) for right in rights)
                modeladmin.message_user(
                    request,
                    f"You may not {verb} {names}: that needs the {verb} right; nothing was done.",
                    messages.ERROR,
                )
                return None
            return func(modeladmin, request, queryset)

        return action


class GovernedInlineMixin:
    """An inline answers to its parent object's rights."""

    formfield_overrides = FORMFIELD_OVERRIDES

    def has_view_permission(self, request, obj=None):
        return obj is None or user_can(request.user, "view", obj)

    def has_change_permission(self, request, obj=None):
        return _model_perm(request, self.model, "change") and (obj is None or user_can(request.user, "change", obj))

    def has_add_permission(self, request, obj=None):
        return _model_perm(request, self.model, "add") and (obj is None or user_can(request.user, "change", obj))

    def has_delete_permission(self, request, obj=None):
        return _model_perm(request, self.model, "delete") and (obj is None or user_can(request.user, "change", obj))

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        return super().formfield_for_foreignkey(db_field, request, **_narrowed(db_field, request, kwargs))

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        return super().formfield_for_manytomany(db_field, request, **_narrowed(db_field, request, kwargs))

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = link_checked(formset.form, request.user)
        return formset


class GovernedInline(GovernedInlineMixin, admin.TabularInline):
    pass


class GovernedStackedInline(GovernedInlineMixin, admin.StackedInline):
    """For rows too wide for a table (a step's JSON config)."""


class PermittedWorkspaceFilter(admin.RelatedFieldListFilter):
    """The workspace filter lists only workspaces the user may view: the names
    of other clients are not shown to anyone without a right on them."""

    def field_choices(self, field, request, model_admin):
        return [(w.pk, str(w)) for w in workspaces_for_user(request.user, "view").order_by("name")]


WORKSPACE_FILTER = ("workspace", PermittedWorkspaceFilter)
