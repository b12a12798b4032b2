"""Rights as of a moment, read back from the chain against a scripted history
of grants, revokes and group memberships."""

from django.contrib.auth.models import Group
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from audit.rights import Holding, rights_at
from governance.roles import AUDITORS
from governance.services import permission_grant, permission_revoke, role_grant
from tests import factories


def moment():
    """The time of the newest event: a point in the scripted history."""
    return AuditEvent.objects.latest("seq").ts


def test_rights_are_replayed_from_grants_revokes_and_memberships(acme_config, acme, superuser):
    pipeline = acme_config["pipeline"]
    ann, bob, cat = (factories.UserFactory(username=name, is_staff=True) for name in ("ann", "bob", "cat"))
    objects = [("pipeline", pipeline.pk), ("workspace", acme.pk)]
    with acting_as(superuser):
        before = moment()
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", user=ann)
        after_ann = moment()
        role_grant(actor=superuser, role=AUDITORS, user=bob, workspace=acme)
        after_bob = moment()
        permission_revoke(actor=superuser, obj=pipeline, permission="approve_release", user=ann)
        after_revoke = moment()
        group = Group.objects.create(name="Acme approvers")
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", group=group)
        cat.groups.add(group)
        after_group = moment()
        cat.groups.remove(group)

    assert not any(h.user in ("ann", "bob", "cat") for h in rights_at(at=before, objects=objects))
    assert Holding("approve_release", "ann", f"pipeline:{pipeline.pk}") in rights_at(at=after_ann, objects=objects)
    at_bob = rights_at(at=after_bob, objects=objects)
    assert Holding("view_audit", "bob", f"workspace:{acme.pk}") in at_bob
    assert Holding("approve_release", "ann", f"pipeline:{pipeline.pk}") in at_bob
    at_revoke = rights_at(at=after_revoke, objects=objects)
    assert not any(h.user == "ann" for h in at_revoke)
    assert Holding("view_audit", "bob", f"workspace:{acme.pk}") in at_revoke
    at_group = rights_at(at=after_group, objects=objects)
    assert Holding("approve_release", "cat", f"pipeline:{pipeline.pk}", via_group="Acme approvers") in at_group
    assert not any(h.user == "cat" for h in rights_at(at=moment(), objects=objects))


def test_the_page_shows_rights_as_of_a_moment_to_an_auditor(client, auditor, acme_config):
    client.force_login(auditor)
    response = client.get(
        reverse("audit-permissions-at"), {"pipeline": acme_config["pipeline"].pk, "at": moment().isoformat()}
    )
    assert response.status_code == 200
    assert any(h.user == "auditor" and h.right == "view_audit" for h in response.context["holdings"])
    bad = client.get(reverse("audit-permissions-at"), {"pipeline": acme_config["pipeline"].pk, "at": "soon"})
    assert bad.status_code == 400 and "at" in bad.context["form"].errors


def test_an_auditor_cannot_ask_about_a_pipeline_of_another_workspace(client, auditor, globex_config):
    client.force_login(auditor)
    response = client.get(
        reverse("audit-permissions-at"), {"pipeline": globex_config["pipeline"].pk, "at": moment().isoformat()}
    )
    assert response.status_code == 400
    assert "pipeline" in response.context["form"].errors
