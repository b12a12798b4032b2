"""Reverting any history-tracked configuration object to an earlier version,
through governance.services.history_revert."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from governance.services import history_revert
from pipelines.models import Step
from tests import factories

# model key -> (the field each edit changes, three successive values)
EDITS = {
    "workspace": ("description", ["First edit", "Second edit", "Third edit"]),
    "policy": ("sample_rate", [Decimal("0.100"), Decimal("0.200"), Decimal("0.300")]),
    "prompt": ("body", ["Edit one: {{ subject }}\n", "Edit two: {{ body }}\n", "Edit three\n"]),
    "model_config": ("temperature", [Decimal("0.50"), Decimal("0.70"), Decimal("1.20")]),
    "pipeline": ("runbook", ["Call Ann.", "Call Bob.", "Call Cy."]),
    "step": ("config", [{"output_field": "a"}, {"output_field": "b"}, {"output_field": "c"}]),
}


@pytest.fixture
def objects(acme, acme_config) -> dict:
    return {
        "workspace": acme,
        "policy": acme_config["policy"],
        "prompt": acme_config["prompt"],
        "model_config": acme_config["model"],
        "pipeline": acme_config["pipeline"],
        "step": acme_config["pipeline"].steps.get(name="classify"),
    }


def _versions(obj) -> list:
    return list(obj.history.order_by("history_date", "history_id"))


def _edit(obj, field: str, value, user) -> None:
    setattr(obj, field, value)
    obj._change_reason = f"set {field}"
    with acting_as(user):
        obj.save()


@pytest.mark.parametrize("key", list(EDITS))
def test_it_reverts_any_config_object_to_its_first_version_after_three_edits(objects, lead, key):
    obj = objects[key]
    field, values = EDITS[key]
    first = _versions(obj)[0]
    for value in values:
        _edit(obj, field, value, lead)

    with acting_as(lead):
        history_revert(obj=obj, history_id=first.history_id, reason="the edits broke triage", actor=lead)

    obj.refresh_from_db()
    assert getattr(obj, field) == getattr(first, field)
    newest = _versions(obj)[-1]
    assert len(_versions(obj)) == 5  # created, three edits, the revert
    assert newest.history_change_reason == f"Reverted to version {first.history_id}: the edits broke triage"
    assert newest.history_user == lead
    reverted = AuditEvent.objects.get(action=f"{obj.audit_noun}.reverted", object_id=str(obj.pk))
    assert reverted.actor_name == "lead"
    assert reverted.payload_data == {"to_history_id": first.history_id, "reason": "the edits broke triage"}
    changed = AuditEvent.objects.filter(action=f"{obj.audit_noun}.changed", object_id=str(obj.pk)).last()
    assert changed.payload_data["history_id"] == newest.history_id
    assert field in changed.payload_data["changes"]
    assert audit_chain_verify().ok


@pytest.mark.parametrize("key", list(EDITS))
def test_it_reverts_to_a_middle_version(objects, lead, key):
    obj = objects[key]
    field, values = EDITS[key]
    for value in values:
        _edit(obj, field, value, lead)
    second_edit = _versions(obj)[2]

    history_revert(obj=obj, history_id=second_edit.history_id, reason="back one", actor=lead)

    obj.refresh_from_db()
    assert getattr(obj, field) == values[1]


def test_it_refuses_a_revert_without_a_reason_and_changes_nothing(objects, lead):
    prompt = objects["prompt"]
    first = _versions(prompt)[0]
    _edit(prompt, "body", "Changed: {{ subject }}\n", lead)
    count = prompt.history.count()

    with pytest.raises(ValidationError) as caught:
        history_revert(obj=prompt, history_id=first.history_id, reason="   ", actor=lead)

    assert "reason" in caught.value.message_dict
    prompt.refresh_from_db()
    assert prompt.body == "Changed: {{ subject }}\n"
    assert prompt.history.count() == count
    assert not AuditEvent.objects.filter(action="prompt.reverted").exists()


def test_it_refuses_another_objects_version(objects, lead, globex_config):
    foreign = _versions(globex_config["prompt"])[0]

    with pytest.raises(ValidationError) as caught:
        history_revert(obj=objects["prompt"], history_id=foreign.history_id, reason="oops", actor=lead)

    assert "history_id" in caught.value.message_dict


def test_it_refuses_old_values_that_are_no_longer_valid(objects, lead, acme, superuser):
    policy = objects["policy"]
    first = _versions(policy)[0]
    _edit(policy, "name", "Renamed review", lead)
    with acting_as(superuser):
        factories.ApprovalPolicyFactory(workspace=acme, name=first.name)  # takes the old name

    with pytest.raises(ValidationError):
        history_revert(obj=policy, history_id=first.history_id, reason="restore the name", actor=lead)

    policy.refresh_from_db()
    assert policy.name == "Renamed review"
    assert not AuditEvent.objects.filter(action="policy.reverted").exists()


# A pipeline version includes its steps.


def _step_state(steps) -> list[tuple]:
    return sorted((s.pk, s.position, s.name, s.kind, s.config, s.prompt_id, s.model_config_id) for s in steps)


def test_a_pipeline_revert_restores_its_steps(acme_config, lead, superuser):
    pipeline = acme_config["pipeline"]
    with acting_as(superuser):
        factories.StepFactory(
            pipeline=pipeline, position=3, name="redact", kind="redact", config={"builtin": ["email"]}
        )
    version = _versions(pipeline)[-1]
    before = _step_state(pipeline.steps.all())

    # An admin save: the pipeline record first, then the inline's step edits.
    _edit(pipeline, "description", "Reworked", lead)
    classify, gate, redact = (pipeline.steps.get(name=n) for n in ("classify", "gate", "redact"))
    gate_id = gate.pk
    with acting_as(lead):
        classify.config = {"output_field": "label"}
        classify.name = "classify v2"
        classify.save()
        gate.delete()
        factories.StepFactory(
            pipeline=pipeline, position=4, name="transform", kind="transform", config={"mapping": {"a": "b"}}
        )
        # Swap the positions of classify and redact.
        classify.position = 99
        classify.save()
        redact.position = 1
        redact.save()
        classify.position = 3
        classify.save()
    assert _step_state(pipeline.steps.all()) != before

    with acting_as(lead):
        history_revert(obj=pipeline, history_id=version.history_id, reason="rework failed evaluation", actor=lead)

    pipeline.refresh_from_db()
    assert pipeline.description == version.description
    assert _step_state(pipeline.steps.all()) == before
    reason = f"Reverted to version {version.history_id}: rework failed evaluation"
    for step in pipeline.steps.all():
        assert step.history.first().history_change_reason == reason
        assert step.history.first().history_user == lead
    removed = Step.history.filter(name="transform", history_type="-").get()
    assert removed.history_change_reason == reason
    restored_gate = Step.history.filter(id=gate_id).order_by("-history_date").first()
    assert (restored_gate.history_type, restored_gate.history_change_reason) == ("+", reason)
    step_events = AuditEvent.objects.filter(object_type="step", pipeline_id=pipeline.pk).order_by("-seq")[:4]
    assert {e.payload_data["reason"] for e in step_events} == {reason}
    assert AuditEvent.objects.filter(action="pipeline.reverted", object_id=str(pipeline.pk)).exists()
    assert audit_chain_verify().ok


def test_reverting_a_step_through_its_own_history_leaves_the_pipeline_alone(acme_config, lead):
    pipeline = acme_config["pipeline"]
    step = pipeline.steps.get(name="classify")
    first = _versions(step)[0]
    pipeline_records = pipeline.history.count()
    _edit(step, "name", "classify v2", lead)

    history_revert(obj=step, history_id=first.history_id, reason="name was fine", actor=lead)

    step.refresh_from_db()
    assert step.name == "classify"
    assert pipeline.history.count() == pipeline_records
    event = AuditEvent.objects.get(action="step.reverted", object_id=str(step.pk))
    assert event.pipeline_id == pipeline.pk


def test_a_pipeline_revert_naming_a_prompt_deleted_since_is_refused_and_changes_nothing(acme_config, lead):
    pipeline, prompt = acme_config["pipeline"], acme_config["prompt"]
    first = pipeline.history.earliest("history_date").history_id
    with acting_as(lead):
        # As the admin does: the pipeline's record first, then its step edits.
        pipeline.name = "Without the model step"
        pipeline.save()
        pipeline.steps.get(position=1).delete()
        prompt.delete()
    before = (list(pipeline.steps.values_list("pk", "name")), AuditEvent.objects.count())
    with pytest.raises(ValidationError, match="prompt"):
        history_revert(obj=pipeline, history_id=first, reason="bring the model step back", actor=lead)
    pipeline.refresh_from_db()
    assert pipeline.name == "Without the model step"
    assert (list(pipeline.steps.values_list("pk", "name")), AuditEvent.objects.count()) == before
