"""Identity changes are audit events whatever path made them (the admin,
createsuperuser, the shell, a form), caught at the model layer, in the same
transaction as the change, and never holding a password or its hash."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import transaction
from django.db.models.signals import post_save
from django.urls import reverse
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from governance.identity import attempted_username_hmac

User = get_user_model()
PASSWORD = "a-long-secret-password-42"


def _actions(user) -> list[str]:
    return list(AuditEvent.objects.filter(object_type="user", object_id=str(user.pk)).values_list("action", flat=True))


def _no_password_anywhere(*secrets: str) -> None:
    hashes = list(User.objects.values_list("password", flat=True))
    for event in AuditEvent.objects.all():
        for secret in (*secrets, *hashes):
            if secret and len(secret) > 8:
                assert secret not in event.payload, event.action


def test_createsuperuser_records_the_new_superuser(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", PASSWORD)
    call_command("createsuperuser", "--noinput", "--username", "boss", "--email", "boss@example.com", verbosity=0)
    boss = User.objects.get(username="boss")
    event = AuditEvent.objects.get(action="user.created", object_id=str(boss.pk))
    assert event.payload_data["is_superuser"] is True and event.payload_data["is_staff"] is True
    assert event.payload_data["user"] == "boss" and event.payload_data["password_usable"] is True
    _no_password_anywhere(PASSWORD)


def test_a_shell_save_making_a_user_superuser_and_back_is_recorded(db):
    ann = User.objects.create_user("ann", password=PASSWORD)
    ann.is_superuser = True
    ann.save()
    ann.is_superuser = False
    ann.save()
    assert _actions(ann) == ["user.created", "user.superuser_granted", "user.superuser_removed"]


def test_staff_status_and_activation_changes_are_recorded(db):
    ann = User.objects.create_user("ann", password=PASSWORD)
    ann.is_staff = True
    ann.is_active = False
    ann.save()
    ann.is_staff = False
    ann.is_active = True
    ann.save(update_fields=["is_staff", "is_active"])
    assert _actions(ann) == [
        "user.created", "user.staff_granted", "user.deactivated", "user.staff_removed", "user.activated",
    ]  # fmt: skip


def test_a_save_that_changes_nothing_watched_records_nothing(db):
    ann = User.objects.create_user("ann", password=PASSWORD)
    ann.first_name = "Ann"
    ann.save()
    ann.save(update_fields=["last_login"])
    assert _actions(ann) == ["user.created"]


def test_the_admin_making_a_user_superuser_is_recorded_with_the_admin_as_actor(client, superuser):
    ann = User.objects.create_user("ann", password=PASSWORD)
    client.force_login(superuser)
    response = client.post(
        reverse("admin:auth_user_change", args=[ann.pk]),
        {"username": "ann", "is_active": "on", "is_staff": "on", "is_superuser": "on",
         "date_joined_0": "2026-01-01", "date_joined_1": "09:00:00"},
    )  # fmt: skip
    assert response.status_code == 302, response.context["adminform"].form.errors
    events = AuditEvent.objects.filter(object_type="user", object_id=str(ann.pk), actor_name="root")
    assert set(events.values_list("action", flat=True)) == {"user.superuser_granted", "user.staff_granted"}


def test_a_password_change_in_the_admin_is_recorded_without_the_password(client, superuser):
    ann = User.objects.create_user("ann", password=PASSWORD)
    client.force_login(superuser)
    new = "another-long-password-17"
    response = client.post(
        reverse("admin:auth_user_password_change", args=[ann.pk]),
        {"password1": new, "password2": new, "usable_password": "true"},
    )
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="user.password_changed", object_id=str(ann.pk))
    assert event.actor_name == "root" and event.payload_data == {"user": "ann", "usable": True}
    _no_password_anywhere(PASSWORD, new)


def test_a_password_reset_is_recorded(db):
    ann = User.objects.create_user("ann", password=PASSWORD)
    form = SetPasswordForm(ann, {"new_password1": "reset-long-password-99", "new_password2": "reset-long-password-99"})
    assert form.is_valid()
    form.save()
    assert _actions(ann)[-1] == "user.password_changed"
    ann.set_unusable_password()
    ann.save()
    event = AuditEvent.objects.filter(action="user.password_changed", object_id=str(ann.pk)).last()
    assert event.payload_data["usable"] is False
    _no_password_anywhere(PASSWORD, "reset-long-password-99")


def test_renaming_and_deleting_a_user_are_recorded(db):
    ann = User.objects.create_user("ann")
    ann.username = "anne"
    ann.save()
    pk = ann.pk
    ann.delete()
    events = list(AuditEvent.objects.filter(object_type="user", object_id=str(pk)).order_by("seq"))
    assert [e.action for e in events] == ["user.created", "user.renamed", "user.deleted"]
    assert events[1].payload_data == {"user": "anne", "old": "ann", "new": "anne"}


def test_group_changes_are_recorded(db):
    group = Group.objects.create(name="Approvers")
    group.name = "Release approvers"
    group.save()
    pk = group.pk
    group.delete()
    actions = AuditEvent.objects.filter(object_type="group", object_id=str(pk)).values_list("action", flat=True)
    assert list(actions) == ["group.created", "group.renamed", "group.deleted"]


def test_a_second_factor_added_and_removed_is_recorded(lead):
    unconfirmed = TOTPDevice.objects.create(user=lead, name="new phone", confirmed=False)
    assert "user.two_factor_enabled" not in _actions(lead)
    unconfirmed.confirmed = True
    unconfirmed.save()
    other = TOTPDevice.objects.create(user=lead, name="tablet", confirmed=True)
    other.delete()
    actions = [a for a in _actions(lead) if a.startswith("user.two_factor")]
    assert actions == ["user.two_factor_enabled", "user.two_factor_enabled", "user.two_factor_disabled"]
    assert AuditEvent.objects.filter(action="user.two_factor_disabled").get().payload_data["device"] == "tablet"


def _sign_in(client, username, password, address="203.0.113.7"):
    return client.post(reverse("admin:login"), {"username": username, "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)  # fmt: skip


@pytest.fixture
def ann(db):
    return User.objects.create_user("ann", password=PASSWORD, is_staff=True)


def test_a_sign_in_that_succeeds_is_recorded_with_the_address(client, ann):
    assert _sign_in(client, "ann", PASSWORD).status_code == 302
    event = AuditEvent.objects.get(action="user.signed_in")
    assert event.actor_name == "ann" and event.object_id == str(ann.pk)
    assert event.payload_data == {"user": "ann", "address": "203.0.113.7"}


def test_a_failed_sign_in_is_recorded_with_the_account_and_address(client, ann):
    assert _sign_in(client, "ann", "wrong").status_code == 200
    event = AuditEvent.objects.get(action="user.sign_in_failed")
    assert event.object_type == "user" and event.object_id == str(ann.pk) and event.actor_name == "system:sign-in"
    assert event.payload_data["address"] == "203.0.113.7" and event.payload_data["user"] == "ann"
    _no_password_anywhere("wrong-but-long-password")


def test_a_failed_sign_in_as_nobody_keeps_only_a_keyed_hash_of_the_text_typed(client, ann):
    typed = "someone.private@example.com"
    assert _sign_in(client, typed, "anything").status_code == 200
    event = AuditEvent.objects.get(action="user.sign_in_failed")
    assert typed not in event.payload and "someone" not in event.payload
    assert event.object_type == "sign_in" and event.payload_data["username_hmac"] == attempted_username_hmac(typed)


def test_a_locked_out_sign_in_is_recorded(client, ann, settings):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        _sign_in(client, "ann", "wrong")
    assert _sign_in(client, "ann", PASSWORD).status_code == 429
    locked = AuditEvent.objects.filter(action="user.locked_out")
    assert locked.exists() and locked.first().payload_data["address"] == "203.0.113.7"
    assert locked.first().object_id == str(ann.pk)
    assert not AuditEvent.objects.filter(action="user.signed_in").exists()
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_save_outside_any_transaction_records_its_event_inside_the_saves_own_transaction():
    ann = User.objects.create_user("ann")
    assert not transaction.get_connection().in_atomic_block
    seen = []

    def watch(sender, instance, **kwargs):
        seen.append(transaction.get_connection().in_atomic_block)

    post_save.connect(watch, sender=User, dispatch_uid="test_watch_user_save")
    try:
        ann.is_superuser = True
        ann.save()
    finally:
        post_save.disconnect(sender=User, dispatch_uid="test_watch_user_save")
    assert seen == [True]
    assert _actions(ann) == ["user.created", "user.superuser_granted"]


def test_an_identity_change_rolled_back_leaves_no_event(db):
    ann = User.objects.create_user("ann")
    with pytest.raises(RuntimeError), transaction.atomic():
        ann.is_superuser = True
        ann.save()
        raise RuntimeError("the caller fails after the save")
    assert not User.objects.get(pk=ann.pk).is_superuser
    assert _actions(ann) == ["user.created"]


def test_an_identity_change_made_in_a_command_names_its_actor(superuser):
    ann = User.objects.create_user("ann")
    with acting_as("keel-users"):
        ann.is_staff = True
        ann.save()
    assert AuditEvent.objects.get(action="user.staff_granted").actor_name == "system:keel-users"
