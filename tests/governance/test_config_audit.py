"""Every configuration change lands in the audit timeline, in the same
transaction, naming who did it and why."""

import pytest
from django.db import transaction
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from tests import factories


def events(action: str):
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_creating_changing_and_deleting_a_prompt_are_recorded(acme, lead):
    with acting_as(lead):
        prompt = factories.PromptTemplateFactory(
            workspace=acme, slug="greet", body="Hi {{ subject }}", variables=["subject"]
        )
        prompt.body = "Hello {{ subject }}"
        prompt._change_reason = "Friendlier greeting"
        prompt.save()
        prompt_id = prompt.pk
        prompt.delete()
    created, changed, deleted = events("prompt.created"), events("prompt.changed"), events("prompt.deleted")
    assert [e.object_id for e in created + changed + deleted] == [str(prompt_id)] * 3
    assert {(e.actor_id, e.actor_name, e.workspace_id) for e in created + changed + deleted} == {
        (lead.pk, "lead", acme.pk)
    }
    payload = changed[0].payload_data
    assert payload["reason"] == "Friendlier greeting"
    assert payload["changes"]["body"] == {"old": "Hi {{ subject }}", "new": "Hello {{ subject }}"}
    assert audit_chain_verify().ok


def test_a_step_change_names_its_pipeline(acme_config, author):
    step = acme_config["pipeline"].steps.get(position=2)
    with acting_as(author):
        step.name = "human check"
        step.save()
    event = events("step.changed")[-1]
    assert (event.pipeline_id, event.workspace_id) == (acme_config["pipeline"].pk, acme_config["pipeline"].workspace_id)
    assert event.payload_data["changes"]["name"]["new"] == "human check"


def test_a_change_that_rolls_back_leaves_no_event(acme_config):
    policy = acme_config["policy"]
    before = AuditEvent.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        policy.required_approvals = 2
        policy.save()
        raise RuntimeError("abort")
    assert AuditEvent.objects.count() == before


def test_an_admin_edit_is_recorded_with_the_signed_in_user(client, superuser, acme_config):
    client.force_login(superuser)
    policy = acme_config["policy"]
    response = client.post(
        reverse("admin:governance_approvalpolicy_change", args=[policy.pk]),
        {
            "workspace": policy.workspace_id,
            "name": policy.name,
            "review_mode": "always",
            "confidence_threshold": "0.9",
            "rules": "[]",
            "sample_rate": "0.1",
            "required_approvals": "2",
            "review_deadline_hours": "8",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    event = events("policy.changed")[-1]
    assert (event.actor_id, event.actor_name) == (superuser.pk, "root")
    assert event.payload_data["changes"]["required_approvals"] == {"old": 1, "new": 2}
    policy.refresh_from_db()
    assert policy.history.first().history_user == superuser


def test_role_grants_are_recorded(acme, superuser):
    from governance.services import role_grant

    user = factories.UserFactory(username="newcomer")
    with acting_as(superuser):
        role_grant(actor=superuser, role="Auditors", user=user, workspace=acme)
    grants = events("permission.granted")
    assert {e.payload_data.get("permission") for e in grants if e.object_type == "workspace"} >= {
        "view_workspace",
        "view_audit",
    }
    role = events("role.granted")[-1]
    assert role.payload_data == {"user": "newcomer", "group_id": role.payload_data["group_id"], "group": "Auditors"}
    assert all(e.actor_name == "root" for e in grants[-2:] + [role])


def test_a_command_acting_as_a_user_names_them_in_history_too(acme):
    user = factories.UserFactory(username="cli-user")
    with acting_as(user):
        prompt = factories.PromptTemplateFactory(workspace=acme, slug="cli")
    assert prompt.history.first().history_user == user
    assert events("prompt.created")[-1].actor_name == "cli-user"


def test_role_memberships_and_site_wide_rights_are_recorded_from_either_side(db):
    from django.contrib.auth.models import Group, Permission

    user = factories.UserFactory(username="member")
    group = Group.objects.get(name="Auditors")
    group.user_set.add(user)
    user.groups.remove(group)
    permission = Permission.objects.get(codename="view_pipeline")
    user.user_permissions.add(permission)
    user.user_permissions.clear()
    actions = [(e.action, e.payload_data.get("group") or e.payload_data.get("permission"))
               for e in events_since(user).exclude(action="user.created")]  # fmt: skip
    assert actions == [
        ("role.granted", "Auditors"),
        ("role.revoked", "Auditors"),
        ("permission.granted", "pipelines.view_pipeline"),
        ("permission.revoked", "pipelines.view_pipeline"),
    ]


def events_since(user):
    return AuditEvent.objects.filter(object_type="user", object_id=str(user.pk)).order_by("seq")
