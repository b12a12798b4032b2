"""Object-permission pages in the admin: who may grant what, to whom, and the
record every grant and revoke leaves in the audit chain."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.urls import NoReverseMatch, reverse
from guardian.shortcuts import get_group_perms, get_user_perms

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from governance.admin_permissions import OWN_GROUP_MESSAGE, SELF_GRANT_MESSAGE
from governance.roles import GOVERNANCE_LEADS, REVIEWERS
from governance.services import permission_grant
from tests import factories


def _url(obj, name: str = "permissions", *args) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name}", args=[obj.pk, *args])


def _messages(response) -> list[str]:
    return [str(m) for m in response.wsgi_request._messages]


@pytest.fixture
def newcomer(db):
    """A reviewer-to-be: no role, no rights yet."""
    return factories.UserFactory(username="newcomer", is_staff=False)


@pytest.fixture
def lead_client(client, lead):
    client.force_login(lead)
    return client


def test_a_lead_grants_a_right_through_the_admin_and_the_chain_records_it(lead_client, lead, acme_config, newcomer):
    pipeline = acme_config["pipeline"]

    response = lead_client.post(_url(pipeline), {"user": "newcomer", "submit_manage_user": "1"})
    assert response.status_code == 302
    assert response.url == _url(pipeline, "permissions_manage_user", newcomer.pk)

    response = lead_client.post(response.url, {"permissions": ["review_output"]})
    assert response.status_code == 302
    assert list(get_user_perms(newcomer, pipeline)) == ["review_output"]
    event = AuditEvent.objects.filter(action="permission.granted").latest("seq")
    assert event.object_type == "pipeline"
    assert event.object_id == str(pipeline.pk)
    assert event.pipeline_id == pipeline.pk
    assert event.actor_id == lead.pk
    assert event.payload_data == {
        "permission": "review_output",
        "object": str(pipeline),
        "user_id": newcomer.pk,
        "user": "newcomer",
    }
    assert audit_chain_verify().ok


def test_a_lead_revokes_a_right_through_the_admin(lead_client, lead, superuser, acme_config, newcomer):
    pipeline = acme_config["pipeline"]
    permission_grant(actor=superuser, obj=pipeline, permission="review_output", user=newcomer)
    permission_grant(actor=superuser, obj=pipeline, permission="view_audit", user=newcomer)

    response = lead_client.post(_url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["view_audit"]})

    assert response.status_code == 302
    assert list(get_user_perms(newcomer, pipeline)) == ["view_audit"]
    event = AuditEvent.objects.filter(action="permission.revoked").latest("seq")
    assert (event.actor_id, event.payload_data["permission"], event.payload_data["user"]) == (
        lead.pk,
        "review_output",
        "newcomer",
    )
    assert audit_chain_verify().ok


def test_a_lead_grants_and_revokes_a_groups_right(lead_client, acme_config):
    pipeline = acme_config["pipeline"]
    night_shift = Group.objects.create(name="Night shift")

    response = lead_client.post(_url(pipeline), {"group": "Night shift", "submit_manage_group": "1"})
    assert response.url == _url(pipeline, "permissions_manage_group", night_shift.pk)
    lead_client.post(response.url, {"permissions": ["deploy_pipeline"]})
    assert list(get_group_perms(night_shift, pipeline)) == ["deploy_pipeline"]
    lead_client.post(response.url, {"permissions": []})
    assert list(get_group_perms(night_shift, pipeline)) == []

    actions = AuditEvent.objects.filter(object_type="pipeline", payload__contains="Night shift").values_list(
        "action", flat=True
    )
    assert list(actions.order_by("seq")) == ["permission.granted", "permission.revoked"]
    assert audit_chain_verify().ok


def test_a_lead_cannot_grant_themselves_anything(lead_client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    before = AuditEvent.objects.count()

    response = lead_client.post(_url(pipeline), {"user": "lead", "submit_manage_user": "1"})
    assert response.status_code == 200
    assert SELF_GRANT_MESSAGE in response.content.decode()

    response = lead_client.post(
        _url(pipeline, "permissions_manage_user", lead.pk), {"permissions": ["approve_release"]}
    )
    assert response.status_code == 302
    assert response.url == _url(pipeline)
    assert SELF_GRANT_MESSAGE in _messages(response)

    assert list(get_user_perms(lead, pipeline)) == []
    assert AuditEvent.objects.count() == before
    with pytest.raises(PermissionDenied):
        permission_grant(actor=lead, obj=pipeline, permission="approve_release", user=lead)


def test_a_lead_cannot_change_the_rights_of_their_own_group(lead_client, acme_config):
    pipeline = acme_config["pipeline"]
    leads = Group.objects.get(name=GOVERNANCE_LEADS)

    response = lead_client.post(_url(pipeline), {"group": GOVERNANCE_LEADS, "submit_manage_group": "1"})
    assert OWN_GROUP_MESSAGE in response.content.decode()

    response = lead_client.post(_url(pipeline, "permissions_manage_group", leads.pk), {"permissions": ["view_audit"]})
    assert response.status_code == 302
    assert OWN_GROUP_MESSAGE in _messages(response)
    assert list(get_group_perms(leads, pipeline)) == []


def test_a_superuser_may_manage_their_own_rights(client, superuser, acme_config):
    pipeline = acme_config["pipeline"]
    client.force_login(superuser)
    response = client.post(_url(pipeline, "permissions_manage_user", superuser.pk), {"permissions": ["view_audit"]})
    assert response.status_code == 302
    assert list(get_user_perms(superuser, pipeline)) == ["view_audit"]


def test_a_prompt_engineer_gets_403_on_the_permissions_page(client, author, acme_config, newcomer):
    client.force_login(author)
    pipeline = acme_config["pipeline"]
    assert client.get(_url(pipeline)).status_code == 403
    assert client.get(_url(pipeline, "permissions_manage_user", newcomer.pk)).status_code == 403
    response = client.post(_url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["review_output"]})
    assert response.status_code == 403
    assert list(get_user_perms(newcomer, pipeline)) == []


def test_a_lead_of_acme_cannot_reach_globexs_permissions_page(lead_client, globex_config, newcomer):
    pipeline = globex_config["pipeline"]
    assert lead_client.get(_url(pipeline)).status_code == 404
    response = lead_client.post(_url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["view_audit"]})
    assert response.status_code == 404
    assert list(get_user_perms(newcomer, pipeline)) == []


def test_a_lead_who_may_only_view_globex_cannot_manage_its_rights(lead_client, lead, superuser, globex_config):
    permission_grant(actor=superuser, obj=globex_config["pipeline"].workspace, permission="view_workspace", user=lead)
    assert lead_client.get(_url(globex_config["pipeline"])).status_code == 403


@pytest.mark.parametrize("key", ["pipeline", "prompt", "model"])
def test_only_per_object_rights_are_offered(lead_client, acme_config, newcomer, key):
    obj = acme_config[key]
    response = lead_client.get(_url(obj, "permissions_manage_user", newcomer.pk))
    assert response.status_code == 200
    offered = [value for value, _ in response.context["form"].fields["permissions"].choices]
    assert offered
    assert not [codename for codename in offered if codename.startswith(("add_", "delete_"))]
    columns = [p.codename for p in response.context["model_perms"]]
    assert columns == offered


def test_a_right_that_is_not_offered_cannot_be_posted(lead_client, acme_config, newcomer):
    pipeline = acme_config["pipeline"]
    response = lead_client.post(
        _url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["delete_pipeline"]}
    )
    assert response.status_code == 200
    assert "permissions" in response.context["form"].errors
    assert list(get_user_perms(newcomer, pipeline)) == []


def test_a_lead_manages_the_workspace_rights(lead_client, acme, newcomer):
    response = lead_client.post(_url(acme, "permissions_manage_user", newcomer.pk), {"permissions": ["review_output"]})
    assert response.status_code == 302
    assert list(get_user_perms(newcomer, acme)) == ["review_output"]
    offered = [v for v, _ in lead_client.get(response.url).context["form"].fields["permissions"].choices]
    assert "change_workspace" in offered
    assert "delete_workspace" not in offered


def test_policies_and_steps_have_no_permissions_pages(lead_client, acme_config):
    with pytest.raises(NoReverseMatch):
        _url(acme_config["policy"])
    response = lead_client.get(reverse("admin:governance_approvalpolicy_change", args=[acme_config["policy"].pk]))
    assert response.status_code == 200
    assert "permissionslink" not in response.content.decode()


@pytest.mark.parametrize(
    "post",
    [
        {"user": "nobody-by-that-name", "submit_manage_user": "1"},
        {"user": "", "submit_manage_user": "1"},
        {"group": "No such group", "submit_manage_group": "1"},
        {"group": "x" * 500, "submit_manage_group": "1"},
    ],
)
def test_an_unknown_user_or_group_is_a_form_error(lead_client, acme_config, post):
    response = lead_client.post(_url(acme_config["pipeline"]), post)
    assert response.status_code == 200
    form = response.context["user_form" if "user" in post else "group_form"]
    assert form.errors


@pytest.mark.parametrize(
    "path",
    [
        "/admin/pipelines/pipeline/not-a-number/permissions/",
        "/admin/pipelines/pipeline/999999/permissions/",
        "/admin/pipelines/pipeline/{pk}/permissions/user-manage/not-a-number/",
        "/admin/pipelines/pipeline/{pk}/permissions/user-manage/999999/",
        "/admin/pipelines/pipeline/{pk}/permissions/group-manage/not-a-number/",
        "/admin/pipelines/pipeline/{pk}/permissions/group-manage/999999/",
    ],
)
def test_bad_ids_in_the_url_are_404s(lead_client, acme_config, path):
    assert lead_client.get(path.format(pk=acme_config["pipeline"].pk)).status_code == 404


def test_the_change_form_links_to_the_permissions_page_only_for_those_who_manage_them(
    client, lead, author, acme_config
):
    prompt = acme_config["prompt"]
    change_url = reverse("admin:pipelines_prompttemplate_change", args=[prompt.pk])
    client.force_login(lead)
    assert _url(prompt) in client.get(change_url).content.decode()
    client.force_login(author)
    response = client.get(change_url)
    assert response.status_code == 200
    assert _url(prompt) not in response.content.decode()


def test_the_services_refuse_even_when_the_page_would_not(client, author, acme_config, newcomer, monkeypatch):
    """Saves go through permission_grant, so its checks apply whatever the page decides."""
    from governance import admin_permissions

    monkeypatch.setattr(admin_permissions, "can_manage_permissions", lambda user, obj: True)
    client.force_login(author)
    pipeline = acme_config["pipeline"]
    response = client.post(_url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["review_output"]})
    assert response.status_code == 200
    assert any("governance leads" in message for message in _messages(response))
    assert list(get_user_perms(newcomer, pipeline)) == []


def test_a_refusal_half_way_through_a_save_leaves_nothing_changed(lead_client, acme_config, newcomer, monkeypatch):
    from governance import admin_permissions

    pipeline = acme_config["pipeline"]
    calls = []

    def grant_then_refuse(**kwargs):
        if calls:
            raise PermissionDenied("refused half-way")
        calls.append(kwargs)
        permission_grant(**kwargs)

    monkeypatch.setattr(admin_permissions, "permission_grant", grant_then_refuse)
    response = lead_client.post(
        _url(pipeline, "permissions_manage_user", newcomer.pk), {"permissions": ["review_output", "view_audit"]}
    )
    assert response.status_code == 200
    assert "refused half-way" in _messages(response)
    assert list(get_user_perms(newcomer, pipeline)) == []
    assert audit_chain_verify().ok


def test_reviewer_role_members_are_reached_through_their_group(lead_client, acme_config):
    # The Reviewers group is not the lead's, so a lead may grant it rights.
    reviewers = Group.objects.get(name=REVIEWERS)
    response = lead_client.post(
        _url(acme_config["pipeline"], "permissions_manage_group", reviewers.pk), {"permissions": ["review_output"]}
    )
    assert response.status_code == 302
    assert list(get_group_perms(reviewers, acme_config["pipeline"])) == ["review_output"]


def test_leading_acme_gives_no_say_over_rights_in_globex_where_one_is_a_prompt_engineer(
    client, lead, superuser, globex_config, newcomer
):
    """The leads group is site-wide; leading a workspace is the lead role's grant on it."""
    from governance.roles import PROMPT_ENGINEERS
    from governance.services import role_grant

    role_grant(actor=superuser, role=PROMPT_ENGINEERS, user=lead, workspace=globex_config["pipeline"].workspace)
    pipeline = globex_config["pipeline"]
    client.force_login(lead)
    assert client.get(reverse("admin:pipelines_pipeline_change", args=[pipeline.pk])).status_code == 200
    assert client.get(_url(pipeline)).status_code == 403
    with pytest.raises(PermissionDenied):
        permission_grant(actor=lead, obj=pipeline, permission="approve_release", user=newcomer)
    assert list(get_user_perms(newcomer, pipeline)) == []
