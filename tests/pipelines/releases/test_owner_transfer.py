"""Moving many prompt templates or pipelines to a new owner at once, with a
history record and an audit event for each."""

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from guardian.shortcuts import assign_perm

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import ModelConfig, Pipeline, PromptTemplate
from pipelines.releases.config import config_owner_transfer
from tests import factories


@pytest.fixture
def prompts(acme, acme_config, superuser) -> list[PromptTemplate]:
    with acting_as(superuser):
        extra = [factories.PromptTemplateFactory(workspace=acme, slug=f"extra-{n}") for n in range(2)]
    return [acme_config["prompt"], *extra]


@pytest.fixture
def pipelines(acme, acme_config, superuser) -> list[Pipeline]:
    with acting_as(superuser):
        extra = factories.PipelineFactory(workspace=acme, slug="acme-digest")
    return [acme_config["pipeline"], extra]


def _events(action: str, objs) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, object_id__in=[str(o.pk) for o in objs]))


@pytest.mark.parametrize("kind", ["prompts", "pipelines"])
def test_it_moves_every_object_with_one_history_record_and_one_event_each(request, lead, author, superuser, kind):
    objs = request.getfixturevalue(kind)
    model = type(objs[0])
    records = {o.pk: o.history.count() for o in objs}
    noun = model.audit_noun
    changed_before = len(_events(f"{noun}.changed", objs))

    count = config_owner_transfer(
        queryset=model.objects.filter(pk__in=[o.pk for o in objs]),
        new_owner=author,
        actor=lead,
        reason="Ann left the team",
    )

    assert count == len(objs)
    for obj in objs:
        obj.refresh_from_db()
        assert obj.owner == author
        assert obj.history.count() == records[obj.pk] + 1
        newest = obj.history.first()
        assert (newest.history_type, newest.history_user, newest.history_change_reason) == (
            "~",
            lead,
            "Ann left the team",
        )
        assert newest.owner_id == author.pk
    # The bulk history insert sends no signal, so exactly one event per object: the service's.
    events = _events(f"{noun}.changed", objs)
    assert len(events) - changed_before == len(objs)
    for obj in objs:
        (event,) = [e for e in events if e.object_id == str(obj.pk) and e.payload_data.get("reason")]
        assert event.actor_name == "lead"
        assert event.workspace_id == obj.workspace_id
        assert event.payload_data == {
            "history_id": obj.history.first().history_id,
            "reason": "Ann left the team",
            "object": str(obj),
            "changes": {"owner": {"old": superuser.pk, "new": author.pk}},
        }
    assert audit_chain_verify().ok


def test_objects_already_owned_by_the_new_owner_are_left_alone(prompts, lead, superuser):
    records = prompts[0].history.count()

    count = config_owner_transfer(
        queryset=PromptTemplate.objects.filter(pk=prompts[0].pk), new_owner=superuser, actor=lead, reason="no-op"
    )

    assert count == 0
    assert prompts[0].history.count() == records


def test_it_refuses_the_whole_batch_when_one_object_is_out_of_reach(prompts, lead, author, globex_config):
    foreign = globex_config["prompt"]
    queryset = PromptTemplate.objects.filter(pk__in=[prompts[0].pk, foreign.pk])
    events = AuditEvent.objects.count()

    with pytest.raises(PermissionDenied):
        config_owner_transfer(queryset=queryset, new_owner=author, actor=lead, reason="take it")

    assert not PromptTemplate.objects.filter(owner=author).exists()
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("reason", ["", "   "])
def test_it_needs_a_reason(prompts, lead, author, reason):
    with pytest.raises(ValidationError) as caught:
        config_owner_transfer(queryset=PromptTemplate.objects.all(), new_owner=author, actor=lead, reason=reason)

    assert "reason" in caught.value.message_dict
    assert not PromptTemplate.objects.filter(owner=author).exists()


def test_it_refuses_an_inactive_owner_and_other_models(prompts, lead, author):
    author.is_active = False
    author.save()
    with pytest.raises(ValidationError):
        config_owner_transfer(queryset=PromptTemplate.objects.all(), new_owner=author, actor=lead, reason="x")
    with pytest.raises(ValidationError):
        config_owner_transfer(queryset=ModelConfig.objects.all(), new_owner=lead, actor=lead, reason="x")


# The admin action


def _changelist(model) -> str:
    return reverse(f"admin:pipelines_{model._meta.model_name}_changelist")


def _act(client, model, objs, **extra):
    data = {"action": "transfer_ownership", helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objs], **extra}
    return client.post(_changelist(model), data)


@pytest.mark.parametrize("kind", ["prompts", "pipelines"])
def test_the_admin_action_asks_for_an_owner_and_a_reason_then_transfers(client, request, lead, author, kind):
    objs = request.getfixturevalue(kind)
    model = type(objs[0])
    client.force_login(lead)

    page = _act(client, model, objs)
    assert page.status_code == 200
    assert 'name="new_owner"' in page.text and 'name="reason"' in page.text

    incomplete = _act(client, model, objs, apply="yes", new_owner=author.pk, reason="")
    assert incomplete.status_code == 200
    assert incomplete.context["form"].errors == {"reason": ["This field is required."]}
    assert not model.objects.filter(owner=author).exists()

    done = _act(client, model, objs, apply="yes", new_owner=author.pk, reason="new team")
    assert done.status_code == 302
    assert set(model.objects.filter(pk__in=[o.pk for o in objs]).values_list("owner", flat=True)) == {author.pk}
    assert [str(m) for m in get_messages(done.wsgi_request)] == [f"Transferred {len(objs)} of {len(objs)} to author."]
    newest = objs[0].history.first()
    assert (newest.history_user, newest.history_change_reason) == (lead, "new team")


def test_the_admin_action_refuses_a_selection_with_an_object_the_user_may_only_view(
    client, lead, author, prompts, globex, globex_config, superuser
):
    with acting_as(superuser):
        assign_perm("governance.view_workspace", lead, globex)  # sees globex, may not change it
    selection = [prompts[0], globex_config["prompt"]]
    client.force_login(lead)

    response = _act(client, PromptTemplate, selection, apply="yes", new_owner=author.pk, reason="take it")

    assert response.status_code == 302
    messages = [str(m) for m in get_messages(response.wsgi_request)]
    assert messages == [f"You may not change {globex_config['prompt']}: that needs the change right; nothing was done."]
    assert not PromptTemplate.objects.filter(owner=author).exists()


def test_an_auditor_cannot_transfer_ownership(client, auditor, author, prompts):
    client.force_login(auditor)

    response = _act(client, PromptTemplate, prompts, apply="yes", new_owner=author.pk, reason="audit")

    assert response.status_code == 302
    assert not PromptTemplate.objects.filter(owner=author).exists()
