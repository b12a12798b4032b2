"""A prompt saved from a browser keeps LF line endings, so the same text is
the same version and the same release fingerprint."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from pipelines.models import PromptTemplate
from pipelines.releases.cut import release_cut
from tests.governance.admin_forms import as_posted


def test_a_body_posted_with_crlf_is_stored_with_lf_and_a_resave_makes_no_version(client, lead, acme_config):
    prompt = acme_config["prompt"]
    client.force_login(lead)
    url = reverse("admin:pipelines_prompttemplate_change", args=[prompt.pk])
    body = "Classify this ticket: {{ subject }}\n{{ body }}\nOne label only.\n"
    # Browsers send a textarea's lines ending CRLF.
    data = {**as_posted(client.get(url)), "body": body.replace("\n", "\r\n"), "change_reason": "one label"}
    assert client.post(url, data).status_code == 302
    prompt.refresh_from_db()
    assert prompt.body == body
    assert "\r" not in prompt.history.order_by("-history_id").first().body
    versions = prompt.history.count()
    first = release_cut(pipeline=acme_config["pipeline"], actor=lead)

    again = {**as_posted(client.get(url)), "change_reason": "no change"}
    again["body"] = again["body"].replace("\n", "\r\n")
    assert client.post(url, again).status_code == 302
    assert prompt.history.count() == versions
    assert PromptTemplate.objects.get(pk=prompt.pk).body == body
    # The same configuration: no new release to cut (same fingerprint as the first).
    with pytest.raises(ValidationError, match=f"Nothing changed since release #{first.number}"):
        release_cut(pipeline=acme_config["pipeline"], actor=lead)


def test_the_model_stores_lf_whatever_path_saves_it(acme):
    prompt = PromptTemplate(workspace=acme, slug="crlf", name="CRLF", body="a\r\nb\rc\n", owner=acme.owner)
    prompt.save()
    assert PromptTemplate.objects.get(pk=prompt.pk).body == "a\nb\nc\n"
