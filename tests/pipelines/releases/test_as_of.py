"""What was live at time T, read back from a scripted history of changes."""

import io
import json

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from audit.context import acting_as
from pipelines.releases.as_of import pipeline_as_of
from pipelines.releases.canary import canary_promote, canary_set
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback, deployment_set
from pipelines.releases.pause import pipeline_pause, pipeline_unpause
from tests.releasing import classifier_pipeline, prompt_edit, release_approved


def _mark():
    """A moment after everything so far and before anything next: the next
    record's timestamp is strictly later (the clock is read, never asserted on)."""
    moment = timezone.now()
    while timezone.now() <= moment:
        pass
    return moment


@pytest.fixture
def history(acme, superuser, author, lead, operator):
    pipeline = classifier_pipeline(acme, actor=superuser)
    marks = {"before": _mark()}
    first = release_approved(release_cut(pipeline=pipeline, actor=author), approver=lead)
    with acting_as(author):
        deployment_set(release=first, environment="production", actor=author, reason="First go-live")
    marks["live"] = _mark()
    prompt_edit(pipeline, actor=author, body="Second: {{ subject }}")
    second = release_approved(release_cut(pipeline=pipeline, actor=author), approver=lead)
    canary_set(release=second, share=10, actor=operator, sources=["beta"])
    marks["canary"] = _mark()
    pipeline_pause(pipeline=pipeline, actor=operator, reason="incident 7")
    marks["paused"] = _mark()
    pipeline_unpause(pipeline=pipeline, actor=operator)
    marks["resumed"] = _mark()
    canary_promote(pipeline=pipeline, actor=operator)
    marks["promoted"] = _mark()
    deployment_rollback(pipeline=pipeline, to_number=1, actor=lead, reason="complaints")
    marks["rolled_back"] = _mark()
    return pipeline, first, second, marks


def _production(pipeline, at):
    return pipeline_as_of(pipeline=pipeline, at=at)["environments"]["production"]


def test_the_answer_follows_the_scripted_history(history):
    pipeline, first, second, marks = history
    assert _production(pipeline, marks["before"]) is None
    live = _production(pipeline, marks["live"])
    assert (live["release"], live["author"], live["approved_by"]) == (1, "author", ["lead"])
    assert (live["deployed"]["by"], live["deployed"]["reason"]) == ("author", "First go-live")
    assert (live["canary"], live["paused"]) == (None, False)
    assert live["configuration"] == first.snapshot_data and live["fingerprint"] == first.fingerprint
    canary = _production(pipeline, marks["canary"])
    assert canary["release"] == 1 and canary["canary"] == {
        "release": 2, "fingerprint": second.fingerprint, "share": "10.00", "sources": ["beta"],
    }  # fmt: skip
    assert canary["deployed"]["by"] == "author"  # a canary does not redeploy the live release
    paused = _production(pipeline, marks["paused"])
    assert (paused["paused"], paused["pause_reason"], paused["canary"]["release"]) == (True, "incident 7", 2)
    assert _production(pipeline, marks["resumed"])["paused"] is False
    promoted = _production(pipeline, marks["promoted"])
    assert (promoted["release"], promoted["canary"], promoted["deployed"]["by"]) == (2, None, "operator")
    assert promoted["approved_by"] == ["lead"] and promoted["configuration"] == second.snapshot_data
    back = _production(pipeline, marks["rolled_back"])
    assert (back["release"], back["deployed"]["by"], back["deployed"]["reason"]) == (1, "lead", "complaints")
    assert pipeline_as_of(pipeline=pipeline, at=marks["live"])["environments"]["staging"] is None


def test_the_command_answers_for_a_moment_and_refuses_a_bad_one(history):
    pipeline, _, _, marks = history
    out = io.StringIO()
    call_command("pipeline_as_of", pipeline.slug, marks["canary"].isoformat(), stdout=out)
    text = out.getvalue()
    assert "production: release #1" in text and "canary #2 at 10.00%" in text and "approved by lead" in text
    out = io.StringIO()
    call_command("pipeline_as_of", pipeline.slug, marks["paused"].isoformat(), "--json", stdout=out)
    assert json.loads(out.getvalue())["environments"]["production"]["pause_reason"] == "incident 7"
    with pytest.raises(CommandError, match="not an ISO 8601 moment"):
        call_command("pipeline_as_of", pipeline.slug, "yesterday")
    out = io.StringIO()
    call_command("pipeline_as_of", pipeline.slug, "2000-01-01T00:00Z", stdout=out)
    assert "production: nothing live" in out.getvalue()


def test_the_admin_page_answers_for_pipelines_the_user_may_view(client, history, auditor, outsider):
    pipeline, _, _, marks = history
    url = reverse("admin:pipelines_deployment_as_of")
    client.force_login(auditor)
    assert url in client.get(reverse("admin:pipelines_deployment_changelist")).content.decode()
    page = client.get(url, {"pipeline": pipeline.pk, "at": marks["promoted"].isoformat()}).content.decode()
    assert "Release #2" in page and "approved by lead" in page
    client.force_login(outsider)
    response = client.get(url, {"pipeline": pipeline.pk, "at": marks["promoted"].isoformat()})
    assert response.status_code == 403
