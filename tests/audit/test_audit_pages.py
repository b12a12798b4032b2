"""The auditor's desk over HTTP: every audit page and export against every
persona, what each reader sees, and the record of personal data viewed."""

import json

import pytest
from django.urls import reverse

from audit.models import AuditEvent

PAGES = ["audit-timeline", "audit-export", "audit-permissions-at", "audit-access-review", "audit-run"]


def url_of(name, acme, run) -> str:
    if name == "audit-access-review":
        return reverse(name, args=[acme.pk])
    if name == "audit-run":
        return reverse(name, args=[run.pk])
    return reverse(name)


@pytest.mark.parametrize("name", PAGES)
def test_anonymous_visitors_are_sent_to_sign_in(client, name, acme, acme_run):
    response = client.get(url_of(name, acme, acme_run))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize(
    ("persona", "status"),
    [("lead", 200), ("auditor", 200), ("author", 403), ("reviewer", 403), ("operator", 403), ("outsider", 403)],
)
@pytest.mark.parametrize("name", PAGES)
def test_only_holders_of_view_audit_get_the_pages(client, personas, persona, status, name, acme, acme_run):
    client.force_login(personas[persona])
    exported_before = AuditEvent.objects.filter(action="audit.exported").count()
    response = client.get(url_of(name, acme, acme_run))
    assert response.status_code == status
    if name == "audit-export":
        assert AuditEvent.objects.filter(action="audit.exported").count() == exported_before + (status == 200)


def test_an_auditor_of_another_workspace_sees_none_of_acme(client, globex_auditor, acme, acme_run, globex_run):
    client.force_login(globex_auditor)
    timeline = client.get(reverse("audit-timeline")).content.decode()
    assert f"run {globex_run.pk}" in timeline
    assert f"run {acme_run.pk}" not in timeline
    assert client.get(reverse("audit-run", args=[acme_run.pk])).status_code == 404
    assert client.get(reverse("audit-access-review", args=[acme.pk])).status_code == 404
    # Naming acme in the filter is a form error, not a way in.
    assert client.get(reverse("audit-timeline"), {"workspace": acme.pk}).status_code == 400
    assert client.get(reverse("audit-export"), {"workspace": acme.pk}).status_code == 400
    body = b"".join(client.get(reverse("audit-export"), {"format": "jsonl"}).streaming_content)
    events = [json.loads(line) for line in body.splitlines() if b'"type":"event"' in line]
    assert events
    assert {event["workspace_id"] for event in events} == {globex_run.pipeline.workspace_id}
    assert not any(event["workspace_id"] == acme.pk for event in events)


def test_the_timeline_filters_and_pages_by_keyset(client, auditor, acme, acme_config):
    from audit.services import audit_record
    from audit.views import PAGE_SIZE

    for number in range(PAGE_SIZE + 5):
        audit_record(action="note.made", object_type="note", object_id=number, workspace_id=acme.pk)
    client.force_login(auditor)
    first = client.get(reverse("audit-timeline"), {"action": "note"})
    shown = first.context["events"]
    assert len(shown) == PAGE_SIZE and [e.seq for e in shown] == sorted((e.seq for e in shown), reverse=True)
    assert first.context["older"]
    second = client.get(reverse("audit-timeline") + "?" + first.context["older"])
    rest = second.context["events"]
    assert len(rest) == 5 and rest[0].seq < shown[-1].seq
    assert {e.action for e in rest} == {"note.made"}
    assert second.context["older"] is None


def test_bad_filter_values_are_named_not_a_500(client, auditor, acme):
    client.force_login(auditor)
    response = client.get(reverse("audit-timeline"), {"since": "yesterday-ish", "object": "no colon"})
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert "since" in errors and "object" in errors
    assert client.get(reverse("audit-export"), {"format": "xml"}).status_code == 400


def test_a_runs_story_is_told_in_order_and_hides_its_personal_data(client, auditor, acme_run):
    client.force_login(auditor)
    response = client.get(reverse("audit-run", args=[acme_run.pk]))
    assert response.status_code == 200
    actions = [event.action for event in response.context["events"]]
    assert actions == ["run.started", "run.completed"]
    assert b"ada@example.com" not in response.content
    assert not AuditEvent.objects.filter(action="run.personal_data_viewed").exists()


def test_showing_a_runs_input_and_output_is_recorded(client, auditor, acme_run):
    client.force_login(auditor)
    response = client.post(reverse("audit-run-reveal", args=[acme_run.pk]))
    assert response.status_code == 200
    assert b"ada@example.com" in response.content
    event = AuditEvent.objects.get(action="run.personal_data_viewed")
    assert (event.actor_name, event.object_id) == ("auditor", str(acme_run.pk))
    assert event.workspace_id == acme_run.pipeline.workspace_id


def test_opening_a_run_in_the_admin_is_recorded_as_personal_data_viewed(client, lead, acme_run):
    client.force_login(lead)
    response = client.get(reverse("admin:pipelines_run_change", args=[acme_run.pk]))
    assert response.status_code == 200
    event = AuditEvent.objects.get(action="run.personal_data_viewed")
    assert event.actor_name == "lead" and event.payload_data["where"] == "admin run page"


def test_the_access_review_lists_every_holder_of_every_right(client, personas, acme, acme_config):
    client.force_login(personas["lead"])
    rows = client.get(reverse("audit-access-review", args=[acme.pk])).context["rows"]
    held = {(row["holder"], row["right"]) for row in rows}
    assert ("auditor", "view_audit") in held
    assert ("reviewer", "review_output") in held
    assert ("author", "change_config") in held
    assert ("root", "every right") in held
    assert not any(row["holder"] == "outsider" for row in rows)


def test_signing_off_an_access_review_records_the_list_reviewed(client, auditor, acme):
    client.force_login(auditor)
    page = client.get(reverse("audit-access-review", args=[acme.pk]))
    response = client.post(reverse("audit-access-review", args=[acme.pk]))
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="access_review.signed_off")
    assert event.actor_name == "auditor" and event.workspace_id == acme.pk
    assert event.payload_data == {"rows": len(page.context["rows"]), "rows_sha256": page.context["digest"]}
    assert client.get(reverse("audit-access-review", args=[acme.pk])).context["last_sign_off"] == event


def test_an_outsider_cannot_sign_off_an_access_review(client, outsider, acme):
    client.force_login(outsider)
    assert client.post(reverse("audit-access-review", args=[acme.pk])).status_code == 403
    assert not AuditEvent.objects.filter(action="access_review.signed_off").exists()
