"""Service accounts: non-person users of one workspace, created by its
governance lead, with no sign-in, whose rights a lead grants like anyone's."""

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from governance.accounts import is_service_account, service_account_create
from governance.models import ServiceAccount
from governance.permissions import user_can
from governance.roles import OPERATORS
from governance.services import role_grant

User = get_user_model()


def _create(actor, workspace, username="crm-bot", **kwargs):
    with acting_as(actor):
        return service_account_create(workspace=workspace, username=username, actor=actor, **kwargs)


def test_a_lead_creates_a_service_account_of_their_workspace_with_its_event(lead, acme):
    account = _create(lead, acme, description="the CRM")
    user = account.user
    assert account.workspace == acme and account.created_by == lead and is_service_account(user)
    assert not user.has_usable_password() and not user.is_staff and not user.is_superuser and user.is_active
    event = AuditEvent.objects.get(action="service_account.created")
    assert event.actor_name == "lead" and event.workspace_id == acme.pk and event.object_id == str(user.pk)
    assert event.payload_data["user"] == "crm-bot" and event.payload_data["workspace"] == "acme"
    assert AuditEvent.objects.filter(action="user.created", object_id=str(user.pk), actor_name="lead").exists()


def test_a_superuser_creates_a_service_account_anywhere(superuser, globex):
    assert _create(superuser, globex).workspace == globex


@pytest.mark.parametrize("who", ["lead", "author", "outsider"])
def test_it_refuses_a_service_account_from_someone_who_does_not_govern_the_workspace(personas, globex, acme, who):
    workspace = globex if who == "lead" else acme
    with pytest.raises(PermissionDenied):
        _create(personas[who], workspace)
    assert not ServiceAccount.objects.exists() and not User.objects.filter(username="crm-bot").exists()
    assert not AuditEvent.objects.filter(action="service_account.created").exists()


@pytest.mark.parametrize(("username", "message"), [("", "Name the service account"), ("bad name!", "valid"),
                                                    ("author", "already exists")])  # fmt: skip
def test_it_refuses_a_bad_or_taken_username_naming_the_field(lead, author, acme, username, message):
    with pytest.raises(ValidationError) as refused:
        _create(lead, acme, username=username)
    assert message in " ".join(refused.value.message_dict["username"])
    assert not ServiceAccount.objects.exists()


def test_a_service_account_cannot_sign_in_even_with_a_password_and_staff_status(client, lead, acme):
    user = _create(lead, acme).user
    user.set_password("a-password-someone-set")
    user.is_staff = True
    user.save()
    admin = client.post(reverse("admin:login"), {"username": "crm-bot", "password": "a-password-someone-set"})
    assert admin.status_code == 200 and not admin.wsgi_request.user.is_authenticated
    review = client.post(reverse("reviews-login"), {"username": "crm-bot", "password": "a-password-someone-set"})
    assert review.status_code == 200 and not review.wsgi_request.user.is_authenticated
    assert AuditEvent.objects.filter(action="user.sign_in_failed", object_id=str(user.pk)).count() == 2


def test_a_session_held_by_a_service_account_is_refused(client, lead, acme):
    user = _create(lead, acme).user
    user.is_staff = True
    user.save()
    client.force_login(user)
    assert client.get(reverse("admin:index")).status_code == 302
    assert client.get(reverse("reviews-queue")).status_code == 302


def test_a_lead_grants_a_service_account_its_rights_like_anyones(lead, acme, acme_config):
    user = _create(lead, acme).user
    assert not user_can(user, "deploy_pipeline", acme_config["pipeline"])
    with acting_as(lead):
        role_grant(actor=lead, role=OPERATORS, user=user, workspace=acme)
    assert user_can(User.objects.get(pk=user.pk), "deploy_pipeline", acme_config["pipeline"])
    assert AuditEvent.objects.filter(action="permission.granted", actor_name="lead", object_id=str(acme.pk)).exists()


def test_a_lead_creates_a_service_account_in_the_admin(client, lead, acme, globex):
    client.force_login(lead)
    form = client.get("/admin/governance/serviceaccount/add/").context["adminform"].form
    assert list(form.fields["workspace"].queryset) == [acme]
    response = client.post("/admin/governance/serviceaccount/add/",
                           {"workspace": acme.pk, "username": "crm-bot", "description": "the CRM"})  # fmt: skip
    assert response.status_code == 302, response.content[:2000]
    account = ServiceAccount.objects.get()
    assert account.user.username == "crm-bot" and account.created_by == lead
    assert "crm-bot" in client.get("/admin/governance/serviceaccount/").content.decode()


def test_the_service_account_admin_refuses_bad_input_with_a_form_error(client, lead, acme, globex):
    client.force_login(lead)
    taken = client.post("/admin/governance/serviceaccount/add/", {"workspace": acme.pk, "username": "lead"})
    assert taken.status_code == 200 and "already exists" in str(taken.context["adminform"].form.errors["username"])
    other = client.post("/admin/governance/serviceaccount/add/", {"workspace": globex.pk, "username": "x-bot"})
    assert other.status_code == 200 and "workspace" in other.context["adminform"].form.errors
    assert not ServiceAccount.objects.exists()


def test_the_service_account_admin_shows_only_accounts_of_governed_workspaces(
    client, lead, author, superuser, acme, globex
):
    _create(superuser, globex, username="globex-bot")
    _create(lead, acme, username="acme-bot")
    client.force_login(lead)
    page = client.get("/admin/governance/serviceaccount/").content.decode()
    assert "acme-bot" in page and "globex-bot" not in page
    globex_account = ServiceAccount.objects.get(user__username="globex-bot")
    assert client.get(f"/admin/governance/serviceaccount/{globex_account.pk}/change/").status_code in (302, 403, 404)
    client.force_login(author)
    assert client.get("/admin/governance/serviceaccount/").status_code == 403
    assert (
        client.post("/admin/governance/serviceaccount/add/", {"workspace": acme.pk, "username": "y"}).status_code == 403
    )
    assert ServiceAccount.objects.count() == 2
