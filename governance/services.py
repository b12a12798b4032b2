"""Writes of governance: object-permission grants and revokes, role grants,
and reverting any history-tracked configuration object."""

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Model
from guardian.shortcuts import assign_perm, get_perms_for_model, remove_perm

from audit.services import audit_record
from governance.models import Workspace
from governance.permissions import can_manage_permissions
from governance.roles import ROLES
from governance.signals import audit_ids

# Object rights that mean something per object; add_* and delete_* do not.
_NOT_ASSIGNABLE_PREFIXES = ("add_", "delete_")


def assignable_permissions(obj: Model) -> list[str]:
    return [p.codename for p in get_perms_for_model(obj) if not p.codename.startswith(_NOT_ASSIGNABLE_PREFIXES)]


def _check_grant(*, actor, obj: Model, permission: str, user=None, group: Group | None = None) -> None:
    if (user is None) == (group is None):
        raise ValidationError("Name exactly one user or one group.")
    if not can_manage_permissions(actor, obj):
        raise PermissionDenied("Only governance leads who may change this object, and superusers, manage its rights.")
    if permission not in assignable_permissions(obj):
        raise ValidationError({"permission": f"{permission!r} is not a right on a {obj._meta.verbose_name}."})
    if not actor.is_superuser:
        if user is not None and user.pk == actor.pk:
            raise PermissionDenied("You cannot change your own rights; ask another governance lead.")
        if group is not None and actor.groups.filter(pk=group.pk).exists():
            raise PermissionDenied("You cannot change the rights of a group you belong to.")


@transaction.atomic
def permission_grant(*, actor, obj: Model, permission: str, user=None, group: Group | None = None) -> None:
    """Grant one object right; the grant's audit event is written by the
    permission row's signal in this transaction."""
    _check_grant(actor=actor, obj=obj, permission=permission, user=user, group=group)
    assign_perm(permission, user or group, obj)


@transaction.atomic
def permission_revoke(*, actor, obj: Model, permission: str, user=None, group: Group | None = None) -> None:
    _check_grant(actor=actor, obj=obj, permission=permission, user=user, group=group)
    remove_perm(permission, user or group, obj)


@transaction.atomic
def role_grant(*, actor, role: str, user, workspace: Workspace) -> None:
    """Make ``user`` a member of ``role`` on ``workspace``: the role group for
    what kind of work, the role's rights on the workspace for where."""
    if role not in ROLES:
        raise ValidationError({"role": f"Unknown role {role!r}; choose one of {', '.join(ROLES)}."})
    for permission in ROLES[role][1]:
        permission_grant(actor=actor, obj=workspace, permission=permission, user=user)
    user.groups.add(Group.objects.get(name=role))


def _history_fields(model) -> list[str]:
    """The concrete fields a revert restores (everything but the key and the
    automatic timestamps)."""
    return [
        f.attname
        for f in model._meta.concrete_fields
        if not f.primary_key and not getattr(f, "auto_now", False) and not getattr(f, "auto_now_add", False)
    ]


@transaction.atomic
def history_revert(*, obj: Model, history_id: int, reason: str, actor) -> Model:
    """Restore ``obj`` to an earlier version of its history.

    1. Find the version; it must be one of this object's.
    2. Copy its fields onto the object, validate, and save with the reason,
       which writes a new history record (and its ``*.changed`` event).
    3. Let the object restore what belongs to it (a pipeline's steps).
    4. Record the ``*.reverted`` event last.
    """
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Say why you are reverting."})
    version = obj.history.filter(history_id=history_id).first()
    if version is None:
        raise ValidationError({"history_id": f"Version {history_id} is not a version of {obj}."})
    if version.history_type == "-":
        raise ValidationError({"history_id": "That version records a deletion; choose another."})
    for name in _history_fields(type(obj)):
        setattr(obj, name, getattr(version, name))
    obj.full_clean()
    change_reason = f"Reverted to version {history_id}: {reason}"
    obj._change_reason = change_reason
    obj._history_user = actor
    obj.save()
    restore = getattr(obj, "restore_related", None)
    if restore is not None:
        restore(version=version, reason=change_reason, actor=actor)
    noun = getattr(obj, "audit_noun", obj._meta.model_name)
    audit_record(
        action=f"{noun}.reverted",
        object_type=noun,
        object_id=obj.pk,
        payload={"to_history_id": history_id, "reason": reason},
        actor=actor,
        **audit_ids(obj),
    )
    return obj
