"""The admin's history, compare and revert pages, for every governed model."""

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from guardian.shortcuts import assign_perm

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from tests import factories

# model key -> admin url prefix
ADMIN_URLS = {
    "workspace": "admin:governance_workspace",
    "policy": "admin:governance_approvalpolicy",
    "prompt": "admin:pipelines_prompttemplate",
    "model_config": "admin:pipelines_modelconfig",
    "pipeline": "admin:pipelines_pipeline",
}
# model key -> a field an admin edit changes, its label, and the new value
EDITS = {
    "workspace": ("description", "Description", "Edited in the admin"),
    "policy": ("name", "Name", "Edited review"),
    "prompt": ("description", "Description", "Edited in the admin"),
    "model_config": ("model_name", "Model name", "edited-classifier"),
    "pipeline": ("description", "Description", "Edited in the admin"),
}
BODY_V1 = "Classify this ticket: {{ subject }}\n{{ body }}\n"
BODY_V2 = "Classify this ticket carefully: {{ subject }}\n{{ body }}\nAnswer <b>one</b> label.\n"


@pytest.fixture
def objects(acme, acme_config) -> dict:
    return {
        "workspace": acme,
        "policy": acme_config["policy"],
        "prompt": acme_config["prompt"],
        "model_config": acme_config["model"],
        "pipeline": acme_config["pipeline"],
    }


@pytest.fixture
def prompt(acme_config, lead):
    """Acme's prompt with two versions: as created, and with a new body."""
    prompt = acme_config["prompt"]
    prompt.body = BODY_V2
    prompt._change_reason = "be careful"
    with acting_as(lead):
        prompt.save()
    return prompt


def _url(key: str, name: str, obj, *args) -> str:
    return reverse(f"{ADMIN_URLS[key]}_{name}", args=[obj.pk, *args])


def _versions(obj) -> list:
    return list(obj.history.order_by("history_date", "history_id"))


def _compare(client, key: str, obj, a, b):
    return client.get(_url(key, "history_compare", obj), {"a": a, "b": b})


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


# The history page


@pytest.mark.parametrize("key", list(ADMIN_URLS))
@pytest.mark.parametrize("persona", ["superuser", "lead"])
def test_the_history_page_lists_every_version_newest_first(client, objects, key, persona, request):
    obj = objects[key]
    field, label, value = EDITS[key]
    setattr(obj, field, value)
    obj._change_reason = "clarify"
    obj.save()
    client.force_login(request.getfixturevalue(persona))

    response = client.get(_url(key, "history", obj))

    assert response.status_code == 200
    rows = response.context["versions"]
    assert [row["record"].history_id for row in rows] == [v.history_id for v in reversed(_versions(obj))]
    assert rows[0]["changed"] == [label]
    assert rows[0]["record"].history_change_reason == "clarify"
    assert 'name="a"' in response.text and 'name="b"' in response.text
    first = _versions(obj)[0]
    assert _url(key, "history_revert", obj, first.history_id) in response.text


def test_the_change_page_links_to_the_history(client, superuser, prompt):
    client.force_login(superuser)

    response = client.get(_url("prompt", "change", prompt))

    assert _url("prompt", "history", prompt) in response.text


def test_the_history_page_names_the_user_and_the_reason(client, lead, prompt):
    client.force_login(lead)

    response = client.get(_url("prompt", "history", prompt))

    newest = response.context["versions"][0]
    assert newest["changed"] == ["Body"]
    assert newest["is_current"]
    assert newest["record"].history_user == lead
    assert "<td>be careful</td>" in response.text
    assert "<td>lead</td>" in response.text


# Compare


def test_compare_shows_a_line_diff_of_a_prompt_body_escaped(client, lead, prompt):
    old, new = _versions(prompt)
    client.force_login(lead)

    response = _compare(client, "prompt", prompt, new.history_id, old.history_id)  # any order

    assert response.status_code == 200
    assert [c.name for c in response.context["changes"]] == ["body"]
    assert "-Classify this ticket: {{ subject }}" in response.text
    assert "+Classify this ticket carefully: {{ subject }}" in response.text
    assert "+Answer &lt;b&gt;one&lt;/b&gt; label." in response.text
    assert "<b>one</b>" not in response.text


def test_compare_pretty_prints_and_line_diffs_json(client, lead, acme_config):
    policy = acme_config["policy"]
    policy.rules = [{"field": "label", "operator": "eq", "value": "refund"}]
    policy.save()
    old, new = _versions(policy)
    client.force_login(lead)

    response = _compare(client, "policy", policy, old.history_id, new.history_id)

    (change,) = response.context["changes"]
    assert change.name == "rules"
    assert '+    "operator": "eq",' in [line.text for line in change.lines]


def test_compare_of_a_pipeline_includes_its_steps_as_of_each_version(client, lead, acme_config):
    pipeline = acme_config["pipeline"]
    with acting_as(lead):
        pipeline.description = "v2"
        pipeline.save()
        step = pipeline.steps.get(name="classify")
        step.name = "classify v2"
        step.save()
    old, new = _versions(pipeline)
    client.force_login(lead)

    response = _compare(client, "pipeline", pipeline, old.history_id, new.history_id)

    (row,) = response.context["row_changes"]
    assert row.status == "changed"
    assert [(c.name, c.old, c.new) for c in row.changes] == [("name", "classify", "classify v2")]
    assert "classify v2" in response.text


@pytest.mark.parametrize("a", ["", "abc", "-1", "0", "99999999999999999999", "١"])
def test_compare_with_a_bad_version_goes_back_to_the_history_with_a_message(client, lead, prompt, a):
    client.force_login(lead)

    response = _compare(client, "prompt", prompt, a, _versions(prompt)[0].history_id)

    assert response.status_code == 302
    assert response.url == _url("prompt", "history", prompt)
    assert _messages(response) == ["Choose two versions to compare."]


def test_compare_with_another_objects_version_says_so(client, superuser, prompt, globex_config):
    foreign = _versions(globex_config["prompt"])[0]
    client.force_login(superuser)

    response = _compare(client, "prompt", prompt, foreign.history_id, _versions(prompt)[0].history_id)

    assert response.status_code == 302
    assert _messages(response) == [f"Version {foreign.history_id} is not a version of {prompt}."]


# Revert


def test_the_revert_page_shows_the_version_its_diff_and_a_reason_form(client, lead, prompt):
    first = _versions(prompt)[0]
    client.force_login(lead)

    response = client.get(_url("prompt", "history_revert", prompt, first.history_id))

    assert response.status_code == 200
    assert 'name="reason"' in response.text
    assert "+Classify this ticket: {{ subject }}" in response.text  # now → after the revert


def test_a_revert_without_a_reason_shows_the_error_and_changes_nothing(client, lead, prompt):
    first = _versions(prompt)[0]
    records = prompt.history.count()
    client.force_login(lead)

    response = client.post(_url("prompt", "history_revert", prompt, first.history_id), {"reason": "  "})

    assert response.status_code == 200
    assert response.context["form"].errors == {"reason": ["This field is required."]}
    prompt.refresh_from_db()
    assert prompt.body == BODY_V2
    assert prompt.history.count() == records
    assert not AuditEvent.objects.filter(action="prompt.reverted").exists()


def test_a_revert_with_a_reason_restores_the_version(client, lead, prompt):
    first = _versions(prompt)[0]
    client.force_login(lead)

    response = client.post(_url("prompt", "history_revert", prompt, first.history_id), {"reason": "too wordy"})

    assert response.status_code == 302
    assert response.url == _url("prompt", "change", prompt)
    prompt.refresh_from_db()
    assert prompt.body == BODY_V1
    newest = prompt.history.first()
    assert newest.history_change_reason == f"Reverted to version {first.history_id}: too wordy"
    assert newest.history_user == lead
    event = AuditEvent.objects.get(action="prompt.reverted", object_id=str(prompt.pk))
    assert (event.actor_name, event.payload_data["reason"]) == ("lead", "too wordy")
    assert audit_chain_verify().ok


@pytest.mark.parametrize("key", list(ADMIN_URLS))
def test_every_governed_model_reverts_through_the_admin(client, superuser, objects, key):
    obj = objects[key]
    field, _, value = EDITS[key]
    first = _versions(obj)[0]
    setattr(obj, field, value)
    obj.save()
    client.force_login(superuser)

    response = client.post(_url(key, "history_revert", obj, first.history_id), {"reason": "undo"})

    assert response.status_code == 302
    obj.refresh_from_db()
    assert getattr(obj, field) == getattr(first, field)
    assert AuditEvent.objects.filter(action=f"{obj.audit_noun}.reverted", object_id=str(obj.pk)).exists()


def test_a_version_no_longer_valid_shows_the_error_and_changes_nothing(client, lead, acme, acme_config, superuser):
    policy = acme_config["policy"]
    first = _versions(policy)[0]
    policy.name = "Renamed review"
    policy.save()
    with acting_as(superuser):
        factories.ApprovalPolicyFactory(workspace=acme, name=first.name)
    client.force_login(lead)

    response = client.post(_url("policy", "history_revert", policy, first.history_id), {"reason": "old name"})

    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert "already exists" in response.text
    policy.refresh_from_db()
    assert policy.name == "Renamed review"
    assert not AuditEvent.objects.filter(action="policy.reverted").exists()


def test_reverting_to_a_foreign_or_unknown_version_is_a_404(client, lead, prompt, globex_config):
    foreign = _versions(globex_config["prompt"])[0]
    client.force_login(lead)

    for history_id in (foreign.history_id, 2**40):
        response = client.post(_url("prompt", "history_revert", prompt, history_id), {"reason": "x"})
        assert response.status_code == 404


def test_an_unknown_object_is_a_404(client, superuser):
    client.force_login(superuser)

    for name in ("history", "history_compare"):
        assert client.get(reverse(f"admin:pipelines_prompttemplate_{name}", args=["nope"])).status_code == 404
    assert client.get(reverse("admin:pipelines_prompttemplate_history_revert", args=[999, 1])).status_code == 404


# Who may


def _pages(prompt) -> list[str]:
    first, second = _versions(prompt)
    return [
        _url("prompt", "history", prompt),
        _url("prompt", "history_compare", prompt) + f"?a={first.history_id}&b={second.history_id}",
        _url("prompt", "history_revert", prompt, first.history_id),
    ]


def test_an_outsider_gets_a_404_on_every_page_and_reverts_nothing(client, outsider, prompt):
    client.force_login(outsider)

    for url in _pages(prompt):
        assert client.get(url).status_code == 404
    assert client.post(_pages(prompt)[2], {"reason": "mine now"}).status_code == 404
    prompt.refresh_from_db()
    assert prompt.body == BODY_V2


def test_a_lead_of_another_workspace_gets_a_404(client, superuser, globex, prompt):
    from governance.roles import GOVERNANCE_LEADS
    from governance.services import role_grant

    other = factories.UserFactory(username="globex-lead")
    with acting_as(superuser):
        role_grant(actor=superuser, role=GOVERNANCE_LEADS, user=other, workspace=globex)
    client.force_login(other)

    for url in _pages(prompt):
        assert client.get(url).status_code == 404


def test_an_auditor_sees_history_and_compare_but_may_not_revert(client, auditor, prompt):
    history, compare, revert = _pages(prompt)
    client.force_login(auditor)

    assert client.get(history).status_code == 200
    assert "Revert to this version" not in client.get(history).text
    assert client.get(compare).status_code == 200
    assert client.get(revert).status_code == 403
    assert client.post(revert, {"reason": "audit says so"}).status_code == 403
    prompt.refresh_from_db()
    assert prompt.body == BODY_V2


def test_a_view_right_on_the_object_alone_shows_history_but_not_revert(client, acme_config, superuser):
    """An author-like user granted only the view right on this one prompt."""
    prompt = acme_config["prompt"]
    prompt.save()
    viewer = factories.UserFactory(username="viewer")
    with acting_as(superuser):
        viewer.user_permissions.add(*_model_permissions("view_prompttemplate"))
        assign_perm("pipelines.view_prompttemplate", viewer, prompt)
    client.force_login(viewer)

    history, compare, revert = _pages(prompt)
    assert client.get(history).status_code == 200
    assert client.get(compare).status_code == 200
    assert client.get(revert).status_code == 403


def _model_permissions(*codenames: str) -> list:
    from django.contrib.auth.models import Permission

    return list(Permission.objects.filter(codename__in=codenames))
