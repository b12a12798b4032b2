"""The audit timeline in the admin: read-only for everyone, and each user reads
only the events of what they hold ``view_audit`` on."""

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from audit.admin import AuditEventAdmin
from audit.models import AuditEvent
from audit.services import audit_record
from governance.roles import AUDITORS
from governance.services import permission_grant
from tests import factories

CHANGELIST = reverse("admin:audit_auditevent_changelist")


@pytest.fixture
def events(acme_config, globex_config) -> dict[str, AuditEvent]:
    """One event for each place an event can belong to."""
    acme_pipeline, globex_pipeline = acme_config["pipeline"], globex_config["pipeline"]
    return {
        "acme pipeline": audit_record(
            action="run.started",
            object_type="run",
            object_id=1,
            workspace_id=acme_pipeline.workspace_id,
            pipeline_id=acme_pipeline.pk,
        ),
        "acme workspace": audit_record(
            action="prompt.changed", object_type="prompt", object_id=2, workspace_id=acme_pipeline.workspace_id
        ),
        "globex pipeline": audit_record(
            action="run.failed",
            object_type="run",
            object_id=3,
            workspace_id=globex_pipeline.workspace_id,
            pipeline_id=globex_pipeline.pk,
        ),
        "globex workspace": audit_record(
            action="prompt.changed", object_type="prompt", object_id=4, workspace_id=globex_pipeline.workspace_id
        ),
        "site": audit_record(action="role.granted", object_type="user", object_id=5),
    }


def _listed(client) -> set[int]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    return {event.seq for event in response.context["cl"].result_list}


def test_an_auditor_of_acme_sees_acmes_events_and_not_globexs(client, auditor, events):
    client.force_login(auditor)
    listed = _listed(client)
    assert events["acme pipeline"].seq in listed
    assert events["acme workspace"].seq in listed
    assert events["globex pipeline"].seq not in listed
    assert events["globex workspace"].seq not in listed
    assert events["site"].seq not in listed
    assert client.get(_change_url(events["acme pipeline"])).status_code == 200
    response = client.get(_change_url(events["globex pipeline"]))
    assert (response.status_code, response.url) == (302, reverse("admin:index"))  # as if it did not exist


def test_a_right_on_one_pipeline_shows_that_pipelines_events_only(client, superuser, globex_config, events):
    watcher = factories.UserFactory(username="watcher")
    watcher.groups.add(Group.objects.get(name=AUDITORS))
    permission_grant(actor=superuser, obj=globex_config["pipeline"], permission="view_audit", user=watcher)
    client.force_login(watcher)
    listed = _listed(client)
    assert events["globex pipeline"].seq in listed
    assert events["globex workspace"].seq not in listed
    assert events["acme pipeline"].seq not in listed


def test_a_superuser_sees_everything(client, superuser, events):
    client.force_login(superuser)
    assert {e.seq for e in events.values()} <= _listed(client)


def test_a_lead_reads_their_workspaces_timeline(client, lead, events):
    client.force_login(lead)
    listed = _listed(client)
    assert {events["acme pipeline"].seq, events["acme workspace"].seq} <= listed
    assert events["globex workspace"].seq not in listed


@pytest.mark.parametrize("persona", ["outsider", "author", "operator"])
def test_those_without_view_audit_get_403_and_no_module(client, request, events, persona):
    client.force_login(request.getfixturevalue(persona))
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(_change_url(events["acme pipeline"])).status_code == 403
    index = client.get(reverse("admin:index"))
    assert CHANGELIST not in index.content.decode()


def test_a_reviewer_is_sent_to_the_login_page(client, reviewer, events):
    client.force_login(reviewer)
    response = client.get(CHANGELIST)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_the_module_is_on_the_index_for_an_auditor(client, auditor, events):
    client.force_login(auditor)
    assert CHANGELIST in client.get(reverse("admin:index")).content.decode()


@pytest.mark.parametrize("persona", ["superuser", "auditor", "lead"])
def test_nobody_adds_changes_or_deletes_an_event(client, request, events, persona):
    client.force_login(request.getfixturevalue(persona))
    event = events["acme pipeline"]
    before = list(AuditEvent.objects.order_by("seq").values_list("seq", "hash", "payload"))

    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_add"), {"action": "forged"}).status_code == 403
    assert client.post(_change_url(event), {"action": "forged", "payload": "{}"}).status_code == 403
    assert client.get(reverse("admin:audit_auditevent_delete", args=[event.seq])).status_code == 403
    assert client.post(reverse("admin:audit_auditevent_delete", args=[event.seq]), {"post": "yes"}).status_code == 403
    response = client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [event.seq], "post": "yes"})
    assert response.status_code in (200, 302)

    page = client.get(_change_url(event))
    assert page.status_code == 200
    assert page.context["has_change_permission"] is False
    assert page.context["has_delete_permission"] is False
    assert client.get(CHANGELIST).context["action_form"] is None
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "hash", "payload")) == before


def test_the_timeline_is_newest_first_without_a_full_count():
    assert AuditEventAdmin.ordering == ("-seq",)
    assert AuditEventAdmin.show_full_result_count is False


def test_the_list_is_newest_first(client, superuser, events):
    client.force_login(superuser)
    seqs = [event.seq for event in client.get(CHANGELIST).context["cl"].result_list]
    assert seqs == sorted(seqs, reverse=True)


@pytest.mark.parametrize("query", ["?q=run.started", "?action__exact=prompt.changed", "?seq=abc", "?o=9", "?p=99999"])
def test_filters_and_odd_queries_never_show_other_workspaces(client, auditor, events, query):
    client.force_login(auditor)
    response = client.get(CHANGELIST + query)
    assert response.status_code in (200, 302)
    if response.status_code == 200:
        listed = {event.seq for event in response.context["cl"].result_list}
        assert events["globex pipeline"].seq not in listed
        assert events["globex workspace"].seq not in listed
        # The filter offers only actions found in what the user may read.
        assert "run.failed" not in response.content.decode()


def _change_url(event: AuditEvent) -> str:
    return reverse("admin:audit_auditevent_change", args=[event.seq])
