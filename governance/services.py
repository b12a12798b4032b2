"""Writes of governance: object-permission grants and revokes, role grants,
reverting any history-tracked configuration object, and the admin's generic
save and delete of a governed object."""

import json

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import BinaryField, Model
from guardian.shortcuts import assign_perm, get_perms_for_model, remove_perm
from simple_history.exceptions import NotHistoricalModelError
from simple_history.utils import get_history_manager_for_model

from audit.services import audit_record
from governance.models import Workspace
from governance.permissions import can_manage_permissions, is_governed, user_can, user_can_link
from governance.roles import ROLES
from governance.signals import audit_ids, history_reverted

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
    history_reverted.send(sender=type(obj), instance=obj, version=version, reason=change_reason, actor=actor)
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


def is_history_tracked(model: type[Model]) -> bool:
    """Whether saves of ``model`` write history records (and, through them,
    their audit events: governance.signals.record_history)."""
    try:
        get_history_manager_for_model(model)
    except NotHistoricalModelError:
        return False
    return True


def _field_value(obj: Model, field) -> object:
    # As the audit payload can hold it: keys for relations, ISO text for dates.
    return json.loads(json.dumps(field.value_from_object(obj), cls=DjangoJSONEncoder))


def _recorded_fields(model: type[Model]) -> list:
    return [f for f in model._meta.concrete_fields if not f.primary_key and not isinstance(f, BinaryField)]


def object_write_check(*, obj: Model, actor) -> None:
    """Refuse (PermissionDenied naming what) unless ``actor`` may change
    ``obj`` as it is stored, ``obj`` as it will be, and every governed object
    its foreign keys point to. A new workspace has no rights yet: who may
    create one is the role's model permission."""
    model = type(obj)
    if obj.pk is not None:
        stored = model._default_manager.filter(pk=obj.pk).first()
        if stored is not None and is_governed(model) and not user_can(actor, "change", stored):
            raise PermissionDenied(f"You may not change {stored}.")
    new_workspace = obj.pk is None and isinstance(obj, Workspace)
    if is_governed(model) and not new_workspace and not user_can(actor, "change", obj):
        raise PermissionDenied(f"You may not change {obj} there.")
    for field in model._meta.concrete_fields:
        if not field.is_relation or getattr(obj, field.attname) is None or not is_governed(field.related_model):
            continue
        target = getattr(obj, field.name)
        if not user_can_link(actor, target):
            raise PermissionDenied(f"{field.verbose_name}: you may not change {target}.")


@transaction.atomic
def object_save(*, obj: Model, actor) -> Model:
    """Save a governed object as an admin form left it.

    1. Check the rights (``object_write_check``).
    2. Save. A history-tracked model is recorded by its history record
       (``<noun>.created`` / ``<noun>.changed``, with the changed fields);
       any other model gets the same event here, in the same transaction.
    """
    object_write_check(obj=obj, actor=actor)
    model = type(obj)
    tracked = is_history_tracked(model)
    stored = None if tracked or obj.pk is None else model._default_manager.filter(pk=obj.pk).first()
    created = obj.pk is None or (stored is None and not tracked)
    if tracked:
        obj._history_user = actor
    obj.save()
    if tracked:
        return obj
    noun = getattr(obj, "audit_noun", model._meta.model_name)
    payload = {"object": str(obj)}
    if not created:
        changes = {}
        for field in _recorded_fields(model):
            old, new = _field_value(stored, field), _field_value(obj, field)
            if old != new and not getattr(field, "auto_now", False):
                changes[field.name] = {"old": old, "new": new}
        payload["changes"] = changes
    audit_record(
        action=f"{noun}.{'created' if created else 'changed'}",
        object_type=noun,
        object_id=obj.pk,
        payload=payload,
        actor=actor,
        **audit_ids(obj),
    )
    return obj


@transaction.atomic
def object_delete(*, obj: Model, actor) -> None:
    """Delete a governed object: refused without the change right on it; the
    ``<noun>.deleted`` event comes from its history record when it has
    history, else from here."""
    if is_governed(type(obj)) and not user_can(actor, "change", obj):
        raise PermissionDenied(f"You may not delete {obj}.")
    if is_history_tracked(type(obj)):
        obj._history_user = actor
        obj.delete()
        return
    noun = getattr(obj, "audit_noun", obj._meta.model_name)
    ids, pk, name = audit_ids(obj), obj.pk, str(obj)
    obj.delete()
    audit_record(action=f"{noun}.deleted", object_type=noun, object_id=pk, payload={"object": name}, actor=actor, **ids)
