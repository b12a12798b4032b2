"""Object-permission management pages (guardian's), allowed only to governance
leads who may change the object and to superusers; nobody grants themselves.

Guardian's own views check only the model-level change permission and write
rows with ``assign_perm`` directly, and list only rights held on the object
itself; here the page also lists the rights that reach it from its workspace
and from superuser status, each with where it comes from. Here every page first finds the object in
the admin's own (rights-filtered) queryset, then asks ``can_manage_permissions``,
and every save goes through ``permission_grant`` / ``permission_revoke`` so the
same checks and audit events apply as anywhere else.
"""

from dataclasses import dataclass
from functools import partial

from django import forms
from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from guardian.admin import (
    AdminGroupObjectPermissionsForm,
    AdminUserObjectPermissionsForm,
    GroupManage,
    GuardedModelAdminMixin,
    UserManage,
)
from guardian.models import UserObjectPermissionBase
from guardian.shortcuts import get_groups_with_perms, get_users_with_perms

from governance.models import PIPELINE_RIGHTS
from governance.permissions import can_manage_permissions, inherited_from_workspace
from governance.services import assignable_permissions, permission_grant, permission_revoke

SELF_GRANT_MESSAGE = "You cannot change your own rights; ask another governance lead."
OWN_GROUP_MESSAGE = "You cannot change the rights of a group you belong to; ask another governance lead."


def has_own_permission_tables(model: type[Model]) -> bool:
    """True for models with guardian direct-FK tables: only they carry rights of
    their own (a policy or a step answers to its workspace or pipeline)."""
    # Read from the model's relations, not guardian's get_user_obj_perms_model,
    # which asks the database for content types while the admin is loading.
    return any(
        issubclass(relation.related_model, UserObjectPermissionBase) and relation.field.name == "content_object"
        for relation in model._meta.related_objects
    )


ACTION_LABELS = {"view": "View", "change": "Change", **dict(PIPELINE_RIGHTS)}


@dataclass(frozen=True)
class InheritedRight:
    """Rights on an object that come from somewhere else: who, which, from where."""

    holder: str
    kind: str  # "user", "group" or "superuser"
    rights: list[str]
    source: str


def inherited_rights(obj: Model) -> list[InheritedRight]:
    """Who holds rights on ``obj`` without a grant on it: through its
    workspace (directly or through a group) and as a superuser."""
    rows = []
    workspace = getattr(obj, "workspace", None)
    meaning = inherited_from_workspace(type(obj)) if workspace is not None else {}
    if meaning:
        labels = {codename: ACTION_LABELS[action] for codename, action in meaning.items()}
        users = get_users_with_perms(
            workspace, attach_perms=True, with_group_users=False, only_with_perms_in=list(labels)
        )
        for user, codenames in sorted(users.items(), key=lambda item: item[0].get_username()):
            rights = [labels[c] for c in labels if c in codenames]
            rows.append(InheritedRight(user.get_username(), "user", rights, f"workspace {workspace}"))
        groups = get_groups_with_perms(workspace, attach_perms=True)
        for group, codenames in sorted(groups.items(), key=lambda item: item[0].name):
            rights = [labels[c] for c in labels if c in codenames]
            if rights:
                members = ", ".join(sorted(u.get_username() for u in group.user_set.filter(is_active=True)))
                source = f"workspace {workspace}, to the group's members ({members or 'none'})"
                rows.append(InheritedRight(group.name, "group", rights, source))
    for user in get_user_model().objects.filter(is_superuser=True, is_active=True).order_by("username"):
        rows.append(InheritedRight(user.get_username(), "superuser", ["Every right"], "superuser status"))
    return rows


def _own_principal_message(actor, *, user=None, group: Group | None = None) -> str | None:
    """Why ``actor`` may not manage this principal's rights, or None."""
    if actor.is_superuser:
        return None
    if user is not None and user.pk == actor.pk:
        return SELF_GRANT_MESSAGE
    if group is not None and actor.groups.filter(pk=group.pk).exists():
        return OWN_GROUP_MESSAGE
    return None


class _KeelUserManage(UserManage):
    def __init__(self, *args, actor, **kwargs) -> None:
        self.actor = actor
        super().__init__(*args, **kwargs)
        self.fields["user"].label = "Username"
        self.fields["user"].help_text = "The person or service account whose rights on this object to change."

    def clean_user(self):
        user = super().clean_user()
        if message := _own_principal_message(self.actor, user=user):
            raise forms.ValidationError(message)
        return user


class _KeelGroupManage(GroupManage):
    def __init__(self, *args, actor, **kwargs) -> None:
        self.actor = actor
        super().__init__(*args, **kwargs)
        self.fields["group"].label = "Group name"
        self.fields["group"].help_text = "The group (e.g. a role) whose rights on this object to change."

    def clean_group(self):
        group = super().clean_group()
        if message := _own_principal_message(self.actor, group=group):
            raise forms.ValidationError(message)
        return group


class _ServiceSavedPermissionsForm:
    """Offers only the assignable rights and saves through the services, as
    ``actor``, instead of guardian's direct ``assign_perm`` / ``remove_perm``."""

    principal_keyword: str  # "user" or "group": how the services name the principal

    def __init__(self, principal, obj: Model, *args, actor, **kwargs) -> None:
        self.actor = actor
        super().__init__(principal, obj, *args, **kwargs)

    @property
    def principal(self):
        return getattr(self, self.principal_keyword)

    def get_obj_perms_field_choices(self) -> list[tuple[str, str]]:
        allowed = set(assignable_permissions(self.obj))
        return [(codename, name) for codename, name in super().get_obj_perms_field_choices() if codename in allowed]

    @transaction.atomic
    def save_obj_perms(self) -> None:
        # All or nothing: a refusal half-way must not leave half the rights changed.
        chosen = set(self.cleaned_data[self.get_obj_perms_field_name()])
        offered = {codename for codename, _ in self.get_obj_perms_field_choices()}
        held = set(self.get_obj_perms_field_initial())
        principal = {self.principal_keyword: self.principal}
        for permission in sorted((offered - chosen) & held):
            permission_revoke(actor=self.actor, obj=self.obj, permission=permission, **principal)
        for permission in sorted(chosen - held):
            permission_grant(actor=self.actor, obj=self.obj, permission=permission, **principal)


class KeelUserObjectPermissionsForm(_ServiceSavedPermissionsForm, AdminUserObjectPermissionsForm):
    principal_keyword = "user"


class KeelGroupObjectPermissionsForm(_ServiceSavedPermissionsForm, AdminGroupObjectPermissionsForm):
    principal_keyword = "group"


class ObjectPermissionsAdminMixin(GuardedModelAdminMixin):
    """Guardian's permission pages and a link to them on the change form, for
    models with rights of their own; nothing at all for the others."""

    # None: switch the pages on exactly for models with their own guardian tables.
    include_object_permissions_urls: bool | None = None
    change_form_template = "admin/keel/permissions/change_form.html"
    obj_perms_manage_template = "admin/keel/permissions/obj_perms_manage.html"

    def __init__(self, model: type[Model], admin_site) -> None:
        super().__init__(model, admin_site)
        if self.include_object_permissions_urls is None:
            self.include_object_permissions_urls = has_own_permission_tables(model)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and self.include_object_permissions_urls and can_manage_permissions(request.user, obj):
            context["object_permissions_url"] = self._permissions_url("permissions", obj.pk)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    # Guardian's views, each behind the same gate.

    def obj_perms_manage_view(self, request: HttpRequest, object_pk: str) -> HttpResponse:
        self._managed_object(request, object_pk)
        return super().obj_perms_manage_view(request, object_pk)

    def obj_perms_manage_user_view(self, request: HttpRequest, object_pk: str, user_id: str) -> HttpResponse:
        obj = self._managed_object(request, object_pk)
        user = _get_or_404(get_user_model(), user_id)
        form = KeelUserObjectPermissionsForm(user, obj, _posted(request), actor=request.user)
        return self._principal_view(request, obj, form, principal={"user": user})

    def obj_perms_manage_group_view(self, request: HttpRequest, object_pk: str, group_id: str) -> HttpResponse:
        obj = self._managed_object(request, object_pk)
        group = _get_or_404(Group, group_id)
        form = KeelGroupObjectPermissionsForm(group, obj, _posted(request), actor=request.user)
        return self._principal_view(request, obj, form, principal={"group": group})

    def get_obj_perms_user_select_form(self, request: HttpRequest):
        return partial(_KeelUserManage, actor=request.user)

    def get_obj_perms_group_select_form(self, request: HttpRequest):
        return partial(_KeelGroupManage, actor=request.user)

    def get_obj_perms_manage_user_form(self, request: HttpRequest):
        return partial(KeelUserObjectPermissionsForm, actor=request.user)

    def get_obj_perms_manage_group_form(self, request: HttpRequest):
        return partial(KeelGroupObjectPermissionsForm, actor=request.user)

    def get_obj_perms_base_context(self, request: HttpRequest, obj: Model) -> dict:
        context = super().get_obj_perms_base_context(request, obj)
        allowed = set(assignable_permissions(obj))
        context["model_perms"] = [p for p in context["model_perms"] if p.codename in allowed]
        context["inherited_rights"] = inherited_rights(obj)
        return context

    # Helpers.

    def _managed_object(self, request: HttpRequest, object_pk: str) -> Model:
        """The object, from this admin's queryset (404 outside it), if the user
        may manage its rights (403 otherwise)."""
        if not self.include_object_permissions_urls:
            raise Http404("This kind of object carries no rights of its own.")
        obj = self.get_object(request, unquote(object_pk))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with that id that you may see.")
        if not can_manage_permissions(request.user, obj):
            raise PermissionDenied(
                "Only governance leads who may change this object, and superusers, manage its rights."
            )
        return obj

    def _principal_view(self, request: HttpRequest, obj: Model, form, *, principal: dict) -> HttpResponse:
        """One user's or one group's rights on ``obj``: show, or save through the services."""
        if message := _own_principal_message(request.user, **principal):
            messages.error(request, message)
            return redirect(self._permissions_url("permissions", obj.pk))
        if request.method == "POST" and form.is_valid():
            try:
                form.save_obj_perms()
            except (PermissionDenied, ValidationError) as error:
                messages.error(request, " ".join(getattr(error, "messages", None) or [str(error)]))
            else:
                messages.success(request, "Permissions saved.")
                return redirect(request.get_full_path())
        kind, principal_obj = next(iter(principal.items()))
        context = self.get_obj_perms_base_context(request, obj)
        context.update(
            {f"{kind}_obj": principal_obj, f"{kind}_perms": form.get_obj_perms_field_initial(), "form": form}
        )
        request.current_app = self.admin_site.name
        template = (
            self.get_obj_perms_manage_user_template() if kind == "user" else self.get_obj_perms_manage_group_template()
        )
        return render(request, template, context)

    def _permissions_url(self, name: str, object_pk) -> str:
        opts = self.opts
        return reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_{name}", args=[object_pk])


def _get_or_404(model: type[Model], pk: str) -> Model:
    # Ids come from the URL as text; anything but a known id is a 404, never a 500.
    try:
        return model.objects.get(pk=int(pk))
    except (ValueError, model.DoesNotExist):
        raise Http404(f"No {model._meta.verbose_name} with id {pk!r}.") from None


def _posted(request: HttpRequest):
    # Not guardian's ``request.POST or None``: a POST with every box unticked
    # is empty, and must still be saved (it revokes everything).
    return request.POST if request.method == "POST" else None
