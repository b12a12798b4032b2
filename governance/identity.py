"""Identity changes on the audit chain, caught at the model layer.

Whatever makes the change (the admin, ``createsuperuser``, the shell, a
command, a service), these are audit events: a user created, renamed or
deleted; superuser or staff status granted or removed; activated or
deactivated; the password changed or reset (the stored hash changed: the
password itself, and its hash, are never recorded); a group created, renamed
or deleted; a second factor enabled or removed; a sign-in that succeeded,
failed or was locked out.

A user's save runs in a transaction of its own when its caller has none
(``atomic_user_save``), so its event goes in with the change, never after it
commits. The one path these signals cannot see is a queryset ``update()``
(``User.objects.filter(...).update(is_superuser=True)``), which sends no
signal; Keel itself never writes users that way.
"""

import functools

from axes.helpers import get_client_ip_address
from axes.signals import user_locked_out
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.db import router, transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.utils.crypto import salted_hmac

from audit.services import audit_record, audit_record_many

# The user fields whose change is an identity event, and the events each makes.
_FLAGS = {
    "is_superuser": ("user.superuser_granted", "user.superuser_removed"),
    "is_staff": ("user.staff_granted", "user.staff_removed"),
    "is_active": ("user.activated", "user.deactivated"),
}
_STORED = "_keel_identity_stored"  # the row as stored, read before a save compares it


def _username_field() -> str:
    return get_user_model().USERNAME_FIELD


def _watched() -> tuple[str, ...]:
    return (_username_field(), "password", *_FLAGS)


def _remember_stored(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    """Read the stored row before the save overwrites it; nothing to read for a
    new user or a save that touches none of the watched fields (a sign-in's
    ``last_login``)."""
    setattr(instance, _STORED, None)
    if instance.pk is None or (update_fields is not None and not set(update_fields) & set(_watched())):
        return
    stored = sender._default_manager.using(kwargs.get("using")).filter(pk=instance.pk).values(*_watched()).first()
    setattr(instance, _STORED, stored)


def _user_event(user, action: str, payload: dict | None = None) -> dict:
    return {
        "action": action,
        "object_type": "user",
        "object_id": user.pk,
        "payload": {"user": user.get_username(), **(payload or {})},
    }


def record_user_saved(sender, instance, created=False, raw=False, update_fields=None, **kwargs) -> None:
    stored = getattr(instance, _STORED, None)
    if created:
        flags = {name: getattr(instance, name) for name in _FLAGS}
        events = [_user_event(instance, "user.created", {**flags, "password_usable": instance.has_usable_password()})]
    elif stored is None:
        return
    else:
        events = []
        old_name = stored[_username_field()]
        if old_name != instance.get_username():
            events.append(_user_event(instance, "user.renamed", {"old": old_name, "new": instance.get_username()}))
        for name, (granted, removed) in _FLAGS.items():
            if bool(stored[name]) != bool(getattr(instance, name)):
                events.append(_user_event(instance, granted if getattr(instance, name) else removed))
        if stored["password"] != instance.password:
            # Only that the hash changed, and whether a password can now sign in: never the hash itself.
            events.append(_user_event(instance, "user.password_changed", {"usable": instance.has_usable_password()}))
    setattr(instance, _STORED, None)
    if events:
        audit_record_many(events)


def record_user_deleted(sender, instance, **kwargs) -> None:
    audit_record(**_user_event(instance, "user.deleted"))


def atomic_user_save(model) -> None:
    """Make ``model.save`` open a transaction when its caller has none, so the
    identity events its signals record commit with the change or not at all.
    (Django runs ``post_save`` after a plain save's own statement has
    committed in autocommit mode; ``delete`` already runs in a transaction.)
    A wrapper around the public method, not an override of anything private:
    the test tests/governance/test_identity_events.py pins that the event is
    written inside the save's transaction."""
    original = model.save
    if getattr(original, "keel_atomic", False):
        return

    @functools.wraps(original)
    def save(self, *args, **kwargs):
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            return original(self, *args, **kwargs)

    save.keel_atomic = True
    model.save = save


# Groups: their names show in rights as of a moment; their deletion ends every membership.


def _remember_group(sender, instance, **kwargs) -> None:
    stored = sender.objects.filter(pk=instance.pk).values_list("name", flat=True).first() if instance.pk else None
    setattr(instance, _STORED, stored)


def record_group_saved(sender, instance, created=False, **kwargs) -> None:
    old = getattr(instance, _STORED, None)
    setattr(instance, _STORED, None)
    if created:
        payload = {"group": instance.name}
        audit_record(action="group.created", object_type="group", object_id=instance.pk, payload=payload)
    elif old is not None and old != instance.name:
        audit_record(
            action="group.renamed", object_type="group", object_id=instance.pk,
            payload={"group": instance.name, "old": old, "new": instance.name},
        )  # fmt: skip


def record_group_deleted(sender, instance, **kwargs) -> None:
    audit_record(action="group.deleted", object_type="group", object_id=instance.pk, payload={"group": instance.name})


# Second factors (django-otp devices): enabled when confirmed, removed when deleted or unconfirmed.


def _remember_device(sender, instance, update_fields=None, **kwargs) -> None:
    stored = None
    if instance.pk is not None and (update_fields is None or "confirmed" in update_fields):
        stored = sender.objects.filter(pk=instance.pk).values_list("confirmed", flat=True).first()
    setattr(instance, _STORED, stored)


def _device_event(device, action: str) -> None:
    audit_record(
        action=action,
        object_type="user",
        object_id=device.user_id,
        payload={"user": device.user.get_username(), "device": device.name, "kind": device._meta.model_name},
    )


def record_device_saved(sender, instance, created=False, **kwargs) -> None:
    was = getattr(instance, _STORED, None)
    setattr(instance, _STORED, None)
    now = bool(instance.confirmed)
    if (created or was is not None) and now != bool(was):
        _device_event(instance, "user.two_factor_enabled" if now else "user.two_factor_disabled")


def record_device_deleted(sender, instance, **kwargs) -> None:
    if instance.confirmed:
        _device_event(instance, "user.two_factor_disabled")


# Sign-ins. The text typed as a username may be anything (a mistyped e-mail
# address, even a password): it is personal data, so the chain keeps only its
# keyed hash, and the account's id and name where it names an existing user.


def attempted_username_hmac(username: str) -> str:
    return salted_hmac("keel.sign_in.username", username.strip().lower(), algorithm="sha256").hexdigest()


def _address(request) -> str | None:
    return get_client_ip_address(request) if request is not None else None


def _attempt(username: str, address: str | None) -> tuple[str, object, dict]:
    user_model = get_user_model()
    user = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first() if username else None
    payload = {"username_hmac": attempted_username_hmac(username or ""), "address": address}
    if user is None:
        return "sign_in", payload["username_hmac"][:32], payload
    return "user", user.pk, {"user": user.get_username(), **payload}


def record_signed_in(sender, request=None, user=None, **kwargs) -> None:
    with transaction.atomic():
        audit_record(
            action="user.signed_in", object_type="user", object_id=user.pk,
            payload={"user": user.get_username(), "address": _address(request)}, actor=user,
        )  # fmt: skip


def record_sign_in_failed(sender, credentials=None, request=None, **kwargs) -> None:
    username = str((credentials or {}).get(_username_field()) or (credentials or {}).get("username") or "")
    object_type, object_id, payload = _attempt(username, _address(request))
    with transaction.atomic():
        audit_record(
            action="user.sign_in_failed", object_type=object_type, object_id=object_id, payload=payload,
            actor="sign-in",
        )  # fmt: skip


def record_locked_out(sender, request=None, username=None, ip_address=None, **kwargs) -> None:
    object_type, object_id, payload = _attempt(str(username or ""), ip_address)
    with transaction.atomic():
        audit_record(
            action="user.locked_out", object_type=object_type, object_id=object_id, payload=payload,
            actor="sign-in",
        )  # fmt: skip


def connect() -> None:
    from django_otp.models import Device

    user_model = get_user_model()
    atomic_user_save(user_model)
    pre_save.connect(_remember_stored, sender=user_model, dispatch_uid="keel_identity_user_pre")
    post_save.connect(record_user_saved, sender=user_model, dispatch_uid="keel_identity_user_post")
    post_delete.connect(record_user_deleted, sender=user_model, dispatch_uid="keel_identity_user_deleted")
    pre_save.connect(_remember_group, sender=Group, dispatch_uid="keel_identity_group_pre")
    post_save.connect(record_group_saved, sender=Group, dispatch_uid="keel_identity_group_post")
    post_delete.connect(record_group_deleted, sender=Group, dispatch_uid="keel_identity_group_deleted")
    for model in apps.get_models():
        if issubclass(model, Device):
            label = model._meta.label
            pre_save.connect(_remember_device, sender=model, dispatch_uid=f"keel_identity_device_pre_{label}")
            post_save.connect(record_device_saved, sender=model, dispatch_uid=f"keel_identity_device_post_{label}")
            post_delete.connect(record_device_deleted, sender=model, dispatch_uid=f"keel_identity_device_del_{label}")
    user_logged_in.connect(record_signed_in, dispatch_uid="keel_identity_signed_in")
    user_login_failed.connect(record_sign_in_failed, dispatch_uid="keel_identity_sign_in_failed")
    user_locked_out.connect(record_locked_out, dispatch_uid="keel_identity_locked_out")
