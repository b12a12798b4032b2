"""Configuration changes and permission changes, recorded in the audit chain
in the same transaction as the change.

Every save of a history-tracked model writes a history record; every history
record writes an audit event. Guardian's object-permission rows and Django's
group and permission relations are watched directly, so a grant made through
any path (service, guardian's admin pages, the shell) is on the record.
"""

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models.signals import m2m_changed, post_delete, post_save
from django.dispatch import Signal
from guardian.models.models import BaseObjectPermission
from simple_history.signals import post_create_historical_record

from audit.services import audit_record

# Sent by ``history_revert`` inside its transaction, once the object is saved as it was in
# ``version``: a handler restores what belongs to the object and is versioned with it (a
# pipeline's steps, pipelines/releases/config.py). Arguments: instance, version, reason, actor.
history_reverted = Signal()

VERBS = {"+": "created", "~": "changed", "-": "deleted"}
_SKIP_FIELDS = {"updated_at"}


def audit_ids(obj) -> dict:
    return {
        "workspace_id": getattr(obj, "audit_workspace_id", None),
        "pipeline_id": getattr(obj, "audit_pipeline_id", None),
    }


def _changes(history_instance) -> dict:
    previous = history_instance.prev_record
    if previous is None:
        return {}
    delta = history_instance.diff_against(previous)
    return {
        change.field: {"old": change.old, "new": change.new}
        for change in delta.changes
        if change.field not in _SKIP_FIELDS
    }


def record_history(sender, instance, history_instance, **kwargs) -> None:
    if not getattr(instance, "audit_history", True):
        return
    noun = getattr(instance, "audit_noun", instance._meta.model_name)
    verb = VERBS[history_instance.history_type]
    payload = {
        "history_id": history_instance.history_id,
        "reason": history_instance.history_change_reason or "",
        "object": str(instance),
    }
    if verb == "changed":
        payload["changes"] = _changes(history_instance)
    audit_record(
        action=f"{noun}.{verb}",
        object_type=noun,
        object_id=instance.pk,
        payload=payload,
        actor=history_instance.history_user,
        **audit_ids(instance),
    )


def _principal(row) -> dict:
    if hasattr(row, "user"):
        return {"user_id": row.user_id, "user": row.user.get_username()}
    return {"group_id": row.group_id, "group": row.group.name}


def record_object_permission(sender, instance, created=None, **kwargs) -> None:
    if created is False:
        return  # a re-save of an existing grant changes nothing
    target = instance.content_object
    granted = kwargs.get("signal") is post_save
    audit_record(
        action="permission.granted" if granted else "permission.revoked",
        object_type=getattr(target, "audit_noun", target._meta.model_name),
        object_id=target.pk,
        payload={"permission": instance.permission.codename, "object": str(target), **_principal(instance)},
        **audit_ids(target),
    )


def _pairs(sender, instance, reverse: bool, model, pk_set) -> list[tuple]:
    """(holder, member) pairs touched by an m2m change, whichever side it came from:
    (user, group) for memberships, (user or group, permission) for model rights."""
    others = list(model.objects.filter(pk__in=pk_set))
    return [(other, instance) for other in others] if reverse else [(instance, other) for other in others]


def record_membership(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    """Role memberships and model-level (site-wide) rights of users and groups."""
    if action == "pre_clear":
        # The cleared set is known only before the clear.
        field = {get_user_model().groups.through: "groups", Group.permissions.through: "permissions"}.get(
            sender, "user_permissions"
        )
        if reverse:
            return  # clearing from the far side (e.g. permission.user_set.clear()) is not done by Keel
        pk_set, action = set(getattr(instance, field).values_list("pk", flat=True)), "post_remove"
    if action not in ("post_add", "post_remove") or not pk_set:
        return
    verb = "granted" if action == "post_add" else "revoked"
    for holder, item in _pairs(sender, instance, reverse, model, pk_set):
        if sender is get_user_model().groups.through:
            audit_record(
                action=f"role.{verb}",
                object_type="user",
                object_id=holder.pk,
                payload={"user": holder.get_username(), "group_id": item.pk, "group": item.name},
            )
        else:
            audit_record(
                action=f"permission.{verb}",
                object_type=holder._meta.model_name,
                object_id=holder.pk,
                payload={
                    "scope": "global",
                    "holder": str(holder),
                    "permission": f"{item.content_type.app_label}.{item.codename}",
                },
            )


def connect() -> None:
    post_create_historical_record.connect(record_history, dispatch_uid="keel_record_history")
    for model in apps.get_models():
        if issubclass(model, BaseObjectPermission):
            post_save.connect(record_object_permission, sender=model, dispatch_uid=f"keel_grant_{model._meta.label}")
            post_delete.connect(record_object_permission, sender=model, dispatch_uid=f"keel_revoke_{model._meta.label}")
    user_model = get_user_model()
    for through in (user_model.groups.through, user_model.user_permissions.through, Group.permissions.through):
        m2m_changed.connect(record_membership, sender=through, dispatch_uid=f"keel_m2m_{through._meta.label}")
