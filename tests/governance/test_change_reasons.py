"""Every change form of governed configuration asks why; the reason lands
on the history record and in its audit event, and a workspace can make it
required. A save that changes nothing makes no version."""

import pytest
from django.urls import reverse

from audit.models import AuditEvent
from tests.governance.admin_forms import as_posted

CHANGE_PAGES = {
    "prompt": "admin:pipelines_prompttemplate_change",
    "model": "admin:pipelines_modelconfig_change",
    "pipeline": "admin:pipelines_pipeline_change",
    "policy": "admin:governance_approvalpolicy_change",
}


def _url(name: str, obj) -> str:
    return reverse(name, args=[obj.pk])


def _changed(action: str) -> list:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


@pytest.mark.parametrize("key", CHANGE_PAGES)
def test_every_governed_change_form_asks_for_a_reason(client, lead, acme_config, key):
    client.force_login(lead)
    response = client.get(_url(CHANGE_PAGES[key], acme_config[key]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="change_reason"' in html
    assert "Reason for this change" in html
    assert "Required in this workspace" not in html


def test_the_workspace_and_change_policy_forms_ask_too(client, superuser, acme):
    client.force_login(superuser)
    for url in (
        reverse("admin:governance_workspace_change", args=[acme.pk]),
        reverse("admin:governance_changepolicy_add"),
    ):
        assert 'name="change_reason"' in client.get(url).content.decode()


def test_an_edit_with_a_reason_stores_it_on_the_version_and_the_audit_event(client, lead, acme_config):
    prompt = acme_config["prompt"]
    client.force_login(lead)
    url = _url(CHANGE_PAGES["prompt"], prompt)
    data = {**as_posted(client.get(url)), "description": "Shorter", "change_reason": "Ticket #42: too wordy"}
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    version = prompt.history.order_by("-history_id").first()
    assert version.description == "Shorter"
    assert version.history_change_reason == "Ticket #42: too wordy"
    assert version.history_user == lead
    event = _changed("prompt.changed")[-1]
    assert event.payload_data["reason"] == "Ticket #42: too wordy"
    assert event.payload_data["changes"]["description"]["new"] == "Shorter"
    # The history page shows it in its Reason column.
    history = client.get(reverse("admin:pipelines_prompttemplate_history", args=[prompt.pk])).content.decode()
    assert "Ticket #42: too wordy" in history


def test_a_workspace_that_requires_reasons_refuses_an_edit_without_one(client, lead, acme, acme_config):
    acme.change_reason_required = True
    acme.save()
    model = acme_config["model"]
    client.force_login(lead)
    url = _url(CHANGE_PAGES["model"], model)
    page = client.get(url)
    assert "Required in this workspace" in page.content.decode()
    versions = model.history.count()
    response = client.post(url, {**as_posted(page), "model_name": "other-model", "change_reason": "   "})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["change_reason"]
    assert errors == [f"Say why you are making this change: workspace {acme} requires a reason."]
    assert "requires a reason" in response.content.decode()  # shown on the page, by the field
    model.refresh_from_db()
    assert model.model_name != "other-model"
    assert model.history.count() == versions
    response = client.post(url, {**as_posted(page), "model_name": "other-model", "change_reason": "New model"})
    assert response.status_code == 302
    assert model.history.order_by("-history_id").first().history_change_reason == "New model"


def test_an_optional_reason_may_be_left_empty(client, lead, acme_config):
    policy = acme_config["policy"]
    client.force_login(lead)
    url = _url(CHANGE_PAGES["policy"], policy)
    response = client.post(url, {**as_posted(client.get(url)), "name": "Renamed review"})
    assert response.status_code == 302
    assert policy.history.order_by("-history_id").first().history_change_reason in ("", None)


def test_a_save_that_changes_nothing_makes_no_version_and_no_event(client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    client.force_login(lead)
    url = _url(CHANGE_PAGES["pipeline"], pipeline)
    versions = {
        "pipeline": pipeline.history.count(),
        "steps": sum(step.history.count() for step in pipeline.steps.all()),
        "events": AuditEvent.objects.count(),
    }
    response = client.post(url, {**as_posted(client.get(url)), "change_reason": "nothing really"})
    assert response.status_code == 302
    assert pipeline.history.count() == versions["pipeline"]
    assert sum(step.history.count() for step in pipeline.steps.all()) == versions["steps"]
    assert AuditEvent.objects.count() == versions["events"]


def test_a_pipeline_edit_gives_its_changed_steps_the_same_reason(client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    gate = pipeline.steps.get(position=2)
    client.force_login(lead)
    url = _url(CHANGE_PAGES["pipeline"], pipeline)
    data = as_posted(client.get(url))
    prefix = next(key.rsplit("-", 1)[0] for key, value in data.items() if key.endswith("-id") and value == str(gate.pk))
    data.update({f"{prefix}-name": "review gate", "change_reason": "Clearer step names"})
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    gate.refresh_from_db()
    assert gate.name == "review gate"
    assert gate.history.order_by("-history_id").first().history_change_reason == "Clearer step names"
    assert _changed("step.changed")[-1].payload_data["reason"] == "Clearer step names"
    assert pipeline.history.count() == 1  # the pipeline's own fields did not change
