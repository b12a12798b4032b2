"""Rights as of a moment, read back from the chain against a scripted history
of grants, revokes and group memberships."""

from django.contrib.auth.models import Group
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from audit.rights import SITE, Holding, rights_at
from governance.roles import AUDITORS
from governance.services import permission_grant, permission_revoke, role_grant
from tests import factories


def on_objects(holdings):
    """The rights held on the objects asked about (superuser and staff status are held on the site)."""
    return [h for h in holdings if h.on != SITE]


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

    assert not any(h.user in ("ann", "bob", "cat") for h in on_objects(rights_at(at=before, objects=objects)))
    assert Holding("approve_release", "ann", f"pipeline:{pipeline.pk}") in rights_at(at=after_ann, objects=objects)
    at_bob = rights_at(at=after_bob, objects=objects)
    assert Holding("view_audit", "bob", f"workspace:{acme.pk}") in at_bob
    assert Holding("approve_release", "ann", f"pipeline:{pipeline.pk}") in at_bob
    at_revoke = on_objects(rights_at(at=after_revoke, objects=objects))
    assert not any(h.user == "ann" for h in at_revoke)
    assert Holding("view_audit", "bob", f"workspace:{acme.pk}") in at_revoke
    at_group = rights_at(at=after_group, objects=objects)
    assert Holding("approve_release", "cat", f"pipeline:{pipeline.pk}", via_group="Acme approvers") in at_group
    assert not any(h.user == "cat" for h in on_objects(rights_at(at=moment(), objects=objects)))


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


def _holders(holdings, right=None) -> set[str]:
    """Who holds ``right``, or any right on the objects asked about."""
    return {h.user for h in holdings if (h.right == right if right else h.on != SITE)}


def test_renaming_a_user_keeps_rights_as_of_correct(acme_config, acme, superuser):
    pipeline = acme_config["pipeline"]
    ann = factories.UserFactory(username="ann")
    objects = [("pipeline", pipeline.pk), ("workspace", acme.pk)]
    with acting_as(superuser):
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", user=ann)
        ann.username = "anne"
        ann.save()
        renamed = moment()
        permission_revoke(actor=superuser, obj=pipeline, permission="approve_release", user=ann)
    at_rename = rights_at(at=renamed, objects=objects)
    assert Holding("approve_release", "anne", f"pipeline:{pipeline.pk}") in at_rename
    assert "ann" not in _holders(at_rename)
    assert not _holders(rights_at(at=moment(), objects=objects)) & {"ann", "anne"}


def test_renaming_a_group_keeps_rights_as_of_correct(acme_config, acme, superuser):
    pipeline = acme_config["pipeline"]
    cat = factories.UserFactory(username="cat")
    objects = [("pipeline", pipeline.pk)]
    with acting_as(superuser):
        group = Group.objects.create(name="Approvers")
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", group=group)
        cat.groups.add(group)
        group.name = "Release approvers"
        group.save()
        renamed = moment()
        permission_revoke(actor=superuser, obj=pipeline, permission="approve_release", group=group)
    assert Holding("approve_release", "cat", f"pipeline:{pipeline.pk}", via_group="Release approvers") in rights_at(
        at=renamed, objects=objects
    )
    assert "cat" not in _holders(rights_at(at=moment(), objects=objects))


def test_a_deleted_user_or_group_holds_nothing_from_its_deletion_on(acme_config, acme, superuser):
    pipeline = acme_config["pipeline"]
    ann, cat = factories.UserFactory(username="ann"), factories.UserFactory(username="cat")
    objects = [("pipeline", pipeline.pk), ("workspace", acme.pk)]
    with acting_as(superuser):
        role_grant(actor=superuser, role=AUDITORS, user=ann, workspace=acme)
        group = Group.objects.create(name="Approvers")
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", group=group)
        cat.groups.add(group)
        before = moment()
        ann.delete()
        group.delete()
    assert {"ann", "cat"} <= _holders(rights_at(at=before, objects=objects))
    assert not {"ann", "cat"} & _holders(rights_at(at=moment(), objects=objects))
    # A new user who takes the old name inherits nothing.
    factories.UserFactory(username="ann")
    assert "ann" not in _holders(rights_at(at=moment(), objects=objects))


def test_superuser_and_staff_status_are_held_as_of_the_moment(acme_config, acme, superuser):
    objects = [("pipeline", acme_config["pipeline"].pk)]
    ann = factories.UserFactory(username="ann", is_staff=False)
    before = moment()
    ann.is_superuser = True
    ann.is_staff = True
    ann.save()
    promoted = moment()
    ann.is_superuser = False
    ann.save()
    assert "ann" not in _holders(rights_at(at=before, objects=objects))
    at_promoted = rights_at(at=promoted, objects=objects)
    assert Holding("superuser", "ann", "site") in at_promoted and Holding("staff", "ann", "site") in at_promoted
    now = rights_at(at=moment(), objects=objects)
    assert "ann" not in _holders(now, "superuser") and "ann" in _holders(now, "staff")
    assert "root" in _holders(now, "superuser")


def test_rights_as_of_agree_with_the_access_review_about_deactivated_users(acme_config, acme, personas, superuser):
    from audit.access import access_review_rows

    pipeline = acme_config["pipeline"]
    objects = [("pipeline", pipeline.pk), ("workspace", acme.pk)]
    author = personas["author"]

    def holders_now() -> tuple[set[str], set[str]]:
        review = {row["holder"] for row in access_review_rows(acme) if row["via"] != "superuser"}
        replayed = {h.user for h in rights_at(at=moment(), objects=objects) if h.on != "site"}
        return review, replayed

    review, replayed = holders_now()
    assert "author" in review and review == replayed
    author.is_active = False
    author.save()
    review, replayed = holders_now()
    assert "author" not in review and review == replayed
    author.is_active = True
    author.save()
    review, replayed = holders_now()
    assert "author" in review and review == replayed
