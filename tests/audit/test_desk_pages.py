"""What the auditor's desk shows: names instead of ids (the ids on hover),
actor and action offered only from what the reader may see, date-time
pickers, payloads as one line with the canonical JSON behind it, rights and
access in words, a run's data as JSON."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.access import actors_and_actions, audit_scope_for
from audit.context import acting_as
from audit.services import audit_record
from audit.summary import payload_summary
from governance.services import permission_grant
from tests import factories


def page(client, name, **query) -> str:
    response = client.get(reverse(name), query)
    assert response.status_code == 200, response.content[:400]
    return response.content.decode()


def options_of(html: str, field: str) -> list[str]:
    select = re.search(rf'<select name="{field}"[^>]*>(.*?)</select>', html, re.S).group(1)
    return re.findall(r"<option[^>]*>([^<]*)</option>", select)


def test_the_timeline_names_workspaces_and_pipelines_with_their_ids_on_hover(client, auditor, acme, acme_run):
    client.force_login(auditor)
    html = page(client, "audit-timeline", run=acme_run.pk)
    pipeline = acme_run.pipeline
    assert (
        f'<span title="workspace #{acme.pk}">Acme</span> › <span title="pipeline #{pipeline.pk}">{pipeline.name}</span>'
        in html
    )
    assert re.search(r'<span title="user #\d+">root</span>', html)  # the actor, with the user id on hover
    assert "<time datetime=" in html  # the one timestamp format


def test_the_desk_extends_keels_look(client, auditor, acme_run):
    client.force_login(auditor)
    html = page(client, "audit-timeline")
    assert "/static/keel/keel.css" in html and "/static/audit/audit.css" in html
    assert '<header class="site">' in html


def test_choices_come_only_from_what_the_reader_may_see(
    client, auditor, globex_auditor, acme, globex, acme_run, globex_run
):
    with acting_as(globex_auditor):
        audit_record(action="globex.only", object_type="note", object_id=1, workspace_id=globex.pk)
    client.force_login(auditor)
    html = page(client, "audit-timeline")
    assert options_of(html, "workspace") == ["any workspace", "Acme"]
    assert all("Globex" not in option and "globex" not in option for option in options_of(html, "pipeline"))
    assert "globex-auditor" not in options_of(html, "actor")
    assert not any(option.startswith("globex") or "globex" in option for option in options_of(html, "action"))
    assert "run.started" in options_of(html, "action") and "every run event" in options_of(html, "action")
    # Naming what is not offered is a form error naming the field, whether or not it exists elsewhere.
    for field, value in (("actor", "globex-auditor"), ("actor", "nobody-at-all"), ("action", "globex.only")):
        response = client.get(reverse("audit-timeline"), {field: value})
        assert response.status_code == 400
        assert field in response.context["form"].errors
    assert client.get(reverse("audit-export"), {"actor": "globex-auditor", "format": "csv"}).status_code == 400


def test_a_family_of_actions_selects_every_action_under_it(client, auditor, acme_run):
    client.force_login(auditor)
    response = client.get(reverse("audit-timeline"), {"action": "run"})
    assert {event.action for event in response.context["events"]} == {"run.started", "run.completed"}


def test_new_actors_and_actions_are_offered_as_soon_as_they_are_on_the_chain(auditor, acme, acme_run):
    scope = audit_scope_for(auditor)
    actors, actions = actors_and_actions(scope)
    assert "note.fresh" not in actions
    newcomer = factories.UserFactory(username="newcomer")
    with acting_as(newcomer):
        audit_record(action="note.fresh", object_type="note", object_id=1, workspace_id=acme.pk)
    actors, actions = actors_and_actions(scope)
    assert "note.fresh" in actions and "newcomer" in actors


def test_the_moments_are_picked_with_the_browsers_date_time_picker(client, auditor, acme_run):
    client.force_login(auditor)
    html = page(client, "audit-timeline")
    assert re.search(r'<input type="datetime-local" name="since"[^>]*step="1"', html)
    picked = (timezone.localtime() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")  # what the picker sends
    response = client.get(reverse("audit-timeline"), {"since": picked})
    assert response.status_code == 200 and len(response.context["events"]) > 0
    assert f'value="{picked}"' in response.content.decode()  # shown back in the picker
    later = client.get(reverse("audit-timeline"), {"since": picked, "until": picked})
    assert later.status_code == 400 and "Until must be after From." in later.content.decode()


def test_a_payload_is_one_line_and_its_canonical_json_opens_below(client, auditor, acme):
    event = audit_record(
        action="note.made",
        object_type="note",
        object_id=7,
        payload={"reason": "quarterly check", "input_sha256": "e" * 64, "steps": [1, 2, 3, 4, 5], "empty": ""},
        workspace_id=acme.pk,
    )
    client.force_login(auditor)
    html = page(client, "audit-timeline", action="note")
    summary = "reason: quarterly check · input sha256: eeeeeeeeeeee… · steps: 5 items"
    assert f'aria-controls="payload-{event.seq}" title="{summary}">{summary}</button>' in html
    assert f'<pre class="payload">{event.payload.replace(chr(34), "&quot;")}</pre>' in html
    assert f"<code>{event.hash}</code>" in html


@pytest.mark.parametrize(
    ("payload", "summary"),
    [
        ('{"redacted":true}', "(redacted)"),
        ("{}", "(no details)"),
        ('{"object":"Acme","changes":{"name":["a","b"],"slug":["c","d"]}}', "object: Acme · changes: name, slug"),
        ('{"ok":true,"n":3}', "n: 3 · ok: yes"),
        ('"just text"', "just text"),
    ],
)
def test_payload_summaries_read_as_words(payload, summary):
    assert payload_summary(payload, redacted=payload == '{"redacted":true}') == summary


def test_a_long_payload_is_cut_to_one_line():
    line = payload_summary('{"reason":"' + "word " * 200 + '"}')
    assert len(line) <= 200 and line.endswith("…") and "\n" not in line


def test_rights_as_of_a_moment_read_in_words(client, auditor, superuser, acme, acme_config, globex_auditor):
    pipeline = acme_config["pipeline"]
    ann = factories.UserFactory(username="ann")
    with acting_as(superuser):
        permission_grant(actor=superuser, obj=pipeline, permission="approve_release", user=ann)
    client.force_login(auditor)
    at = (timezone.localtime() + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S")
    html = page(client, "audit-permissions-at", pipeline=pipeline.pk, at=at)
    assert f"may approve releases of {pipeline.name}" in html
    assert "may read the audit trail of every pipeline in Acme" in html
    assert "approve_release</td>" not in html and "workspace:" not in html.split('id="rights"')[1].split("title=")[0]
    assert "globex-auditor" not in html  # staff elsewhere holds nothing here
    assert (
        f'<option value="{pipeline.pk}" selected title="pipeline #{pipeline.pk}">Acme › {pipeline.name}</option>'
        in html
    )


def test_the_access_review_reads_in_words(client, auditor, acme, acme_config):
    client.force_login(auditor)
    html = client.get(reverse("audit-access-review", args=[acme.pk])).content.decode()
    assert "may read the audit trail of every pipeline in Acme" in html
    assert "is a superuser: may do everything, everywhere" in html


def test_a_runs_input_and_output_are_shown_as_json(client, auditor, acme_run):
    client.force_login(auditor)
    html = client.post(reverse("audit-run-reveal", args=[acme_run.pk])).content.decode()
    assert "&quot;customer_email&quot;: &quot;ada@example.com&quot;" in html
    assert "{&#x27;" not in html  # no Python repr
    assert f'of <span title="pipeline #{acme_run.pipeline_id}">{acme_run.pipeline.name}</span>' in html
