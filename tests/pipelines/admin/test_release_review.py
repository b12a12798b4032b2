"""The approver's page: approve and reject on the page itself; a refusal
(separation of duties) is explained before anyone clicks, naming who may
approve; the diff is coloured like the history's; notes that exist are shown."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from pipelines.releases.approval import release_state, release_submit
from pipelines.releases.cut import release_cut
from tests.releasing import classifier_pipeline, prompt_edit, release_to_production


@pytest.fixture
def submitted(acme, superuser, author):
    """A release the author cut from their own prompt edit, submitted with notes,
    after an earlier release is live in production (so the page has a diff)."""
    pipeline = classifier_pipeline(acme, actor=superuser)
    release_to_production(release_cut(pipeline=pipeline, actor=superuser))
    prompt_edit(pipeline, actor=author, body="Ticket: {{ subject }}")
    release = release_cut(pipeline=pipeline, actor=author)
    release_submit(release=release, actor=author, notes="Adds a preamble to the prompt.")
    return release


def _page(release) -> str:
    return reverse("admin:pipelines_release_review", args=[release.pk])


def test_the_author_is_told_why_they_may_not_approve_and_who_may(client, submitted, author, lead):
    client.force_login(author)
    response = client.get(_page(submitted))
    html = response.content.decode()
    assert "You cannot approve this release" in html
    assert "approving needs the approve right" in html  # a prompt engineer holds no approve right
    assert "lead" in response.context["eligible"] and "author" not in response.context["eligible"]
    assert "Who may approve it: " in html and "lead" in html
    assert 'id="approve-form"' not in html and 'id="reject-form"' not in html


def test_an_editor_with_the_approve_right_is_refused_on_the_page(client, submitted, lead):
    prompt_edit(submitted.pipeline, actor=lead, body="Lead's edit: {{ subject }}")
    release = release_cut(pipeline=submitted.pipeline, actor=submitted.created_by)
    release_submit(release=release, actor=submitted.created_by, notes="Lead edited it.")
    client.force_login(lead)
    html = client.get(_page(release)).content.decode()
    assert "you edited its configuration since the previous release" in html
    assert 'id="approve-form"' not in html and 'id="reject-form"' in html
    # Posting anyway is refused by the service, with its reason on the page.
    response = client.post(_page(release), {"decision": "approve"}, follow=True)
    assert "Refused: You edited this release" in response.content.decode()
    assert release_state(release) == "submitted"


def test_an_approver_approves_on_the_page(client, submitted, lead):
    client.force_login(lead)
    page = client.get(_page(submitted))
    html = page.content.decode()
    assert page.context["refusal"] is None
    assert 'id="approve-form"' in html
    assert "Adds a preamble to the prompt." in html  # the submitter's notes, not "(none)"
    assert 'class="keel-diff-add">+' in html and 'class="keel-diff-del">-' in html  # coloured prompt diff
    assert "<time datetime=" in html  # one timestamp format
    response = client.post(_page(submitted), {"decision": "approve", "approve-note": "Looks right."}, follow=True)
    assert "the release is approved" in response.content.decode()
    assert release_state(submitted) == "approved"
    event = AuditEvent.objects.filter(action="release.approval").latest("seq")
    assert event.actor_name == "lead" and event.payload_data["reason"] == "Looks right."


def test_a_rejection_needs_a_reason(client, submitted, lead):
    client.force_login(lead)
    response = client.post(_page(submitted), {"decision": "reject", "reject-reason": "  "})
    assert response.status_code == 200
    assert "Say why the release is rejected." in response.content.decode()
    assert release_state(submitted) == "submitted"
    client.post(_page(submitted), {"decision": "reject", "reject-reason": "The preamble leaks internal names."})
    assert release_state(submitted) == "rejected"


def test_someone_without_the_approve_right_cannot_decide_by_posting(client, submitted, operator):
    client.force_login(operator)
    response = client.post(_page(submitted), {"decision": "reject", "reject-reason": "no"}, follow=True)
    assert "Refused: Rejecting a release needs the approve right" in response.content.decode()
    assert release_state(submitted) == "submitted"


def test_an_outsider_gets_a_404(client, submitted, outsider):
    client.force_login(outsider)
    assert client.get(_page(submitted)).status_code in (403, 404)
    assert client.post(_page(submitted), {"decision": "approve"}).status_code in (403, 404)
    assert release_state(submitted) == "submitted"
