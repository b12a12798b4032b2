"""Releases freeze a pipeline's configuration; deployments say which is live."""

import hashlib
import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from audit.canonical import canonical_bytes
from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Deployment, Release, ReleaseTransition, Step
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback, deployment_set
from tests.releasing import release_approved


def test_a_release_freezes_the_whole_resolved_configuration(acme_config, lead):
    pipeline, prompt, model, policy = (acme_config[k] for k in ("pipeline", "prompt", "model", "policy"))
    release = release_cut(pipeline=pipeline, actor=lead, notes="first")
    snapshot = release.snapshot_data
    assert release.number == 1 and release.created_by == lead and release.keel_version == "0.1.0"
    assert snapshot["input_schema"] == pipeline.input_schema
    assert [s["kind"] for s in snapshot["steps"]] == ["model", "gate"]
    assert snapshot["steps"][0]["prompt"]["body"] == prompt.body
    assert snapshot["steps"][0]["model"]["model_name"] == model.model_name
    assert snapshot["steps"][0]["model"]["temperature"] == "0.00"
    assert snapshot["approval_policy"]["confidence_threshold"] == "0.800"
    assert snapshot["approval_policy"]["version"] == policy.history.first().history_id
    event = AuditEvent.objects.get(action="release.cut")
    assert (event.pipeline_id, event.payload_data["fingerprint"]) == (pipeline.pk, release.fingerprint)


def test_the_fingerprint_is_the_sha256_of_the_canonical_configuration(acme_config, lead):
    release = release_cut(pipeline=acme_config["pipeline"], actor=lead)

    def without_versions(value):
        if isinstance(value, dict):
            return {k: without_versions(v) for k, v in value.items() if k != "version"}
        return [without_versions(v) for v in value] if isinstance(value, list) else value

    stored = json.loads(release.snapshot)
    assert release.snapshot.encode() == canonical_bytes(stored)
    assert release.fingerprint == hashlib.sha256(canonical_bytes(without_versions(stored))).hexdigest()


def test_a_fixed_seed_past_i_jsons_integers_is_frozen_as_its_string_and_still_seeds(acme_config, lead):
    from pipelines.steps.model import build_request

    model = acme_config["model"]
    with acting_as(lead):
        model.seed = 2**62 + 1
        model.save()
    release = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    frozen = release.snapshot_data["steps"][0]["model"]
    assert frozen["seed"] == str(2**62 + 1)
    assert build_request(frozen, "text", seed=7).seed == 2**62 + 1


def test_editing_the_configuration_never_changes_a_release(acme_config, lead):
    prompt = acme_config["prompt"]
    first = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    with acting_as(lead):
        prompt.body = "Classify: {{ subject }}"
        prompt.save()
    first.refresh_from_db()
    assert "Classify this ticket" in first.snapshot_data["steps"][0]["prompt"]["body"]
    second = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    assert second.number == 2 and second.fingerprint != first.fingerprint


def test_cutting_again_without_a_change_is_refused(acme_config, lead):
    release_cut(pipeline=acme_config["pipeline"], actor=lead)
    with pytest.raises(ValidationError, match="Nothing changed since release #1"):
        release_cut(pipeline=acme_config["pipeline"], actor=lead)
    assert Release.objects.count() == 1


@pytest.mark.parametrize("statement", ["UPDATE pipelines_release SET notes = 'x'", "DELETE FROM pipelines_release"])
def test_the_database_refuses_to_change_a_release(acme_config, lead, statement):
    release_cut(pipeline=acme_config["pipeline"], actor=lead)
    with pytest.raises(DatabaseError, match="never change"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)


def test_transitions_are_append_only_too(acme_config, lead):
    release = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    transition = ReleaseTransition.objects.create(release=release, state="submitted", actor=lead, reason="ready")
    with pytest.raises(DatabaseError), transaction.atomic():
        ReleaseTransition.objects.filter(pk=transition.pk).update(state="approved")


def test_a_release_with_an_invalid_step_is_refused_naming_the_step(acme_config, lead):
    Step.objects.filter(pipeline=acme_config["pipeline"], position=2).update(config={"surprise": True})
    with pytest.raises(ValidationError, match=r"step 2 \(gate\)"):
        release_cut(pipeline=acme_config["pipeline"], actor=lead)
    assert not Release.objects.exists()


@pytest.mark.parametrize("persona", ["auditor", "operator", "reviewer", "outsider"])
def test_cutting_needs_the_change_right(acme_config, personas, persona):
    with pytest.raises(PermissionDenied):
        release_cut(pipeline=acme_config["pipeline"], actor=personas[persona])


def test_deploying_and_rolling_back_move_the_pointer_and_are_recorded(acme_config, lead, operator):
    pipeline, prompt = acme_config["pipeline"], acme_config["prompt"]
    first = release_cut(pipeline=pipeline, actor=lead)
    with acting_as(lead):
        prompt.body += "Be brief.\n"
        prompt.save()
    second = release_cut(pipeline=pipeline, actor=lead)
    release_approved(first)
    release_approved(second)
    deployment_set(release=first, environment="production", actor=operator)
    deployment_set(release=second, environment="production", actor=operator)
    deployment = deployment_rollback(pipeline=pipeline, environment="production", actor=operator, reason="bad drafts")
    assert deployment.release == first
    assert [h.release_id for h in deployment.history.order_by("history_date")] == [None, first.pk, second.pk, first.pk]
    assert deployment.history.first().history_change_reason == "bad drafts"
    actions = list(AuditEvent.objects.filter(object_type="deployment").values_list("action", flat=True))
    assert actions == ["deployment.set", "deployment.set", "deployment.rolled_back"]
    rolled = AuditEvent.objects.get(action="deployment.rolled_back").payload_data
    assert (rolled["from_release"], rolled["to_release"], rolled["reason"]) == (2, 1, "bad drafts")
    assert audit_chain_verify().ok


def test_rollback_needs_an_earlier_release_and_records_its_target_without_a_reason(acme_config, lead, operator):
    pipeline, prompt = acme_config["pipeline"], acme_config["prompt"]
    release = release_cut(pipeline=pipeline, actor=lead)
    with pytest.raises(ValidationError, match="Nothing is live"):
        deployment_rollback(pipeline=pipeline, environment="staging", actor=operator, reason="x")
    deployment_set(release=release, environment="staging", actor=operator)
    with pytest.raises(ValidationError, match="No earlier release"):
        deployment_rollback(pipeline=pipeline, environment="staging", actor=operator, reason="x")
    with pytest.raises(ValidationError, match="Unknown environment"):
        deployment_rollback(pipeline=pipeline, environment="moon", actor=operator, reason="x")
    with acting_as(lead):
        prompt.body += "Be brief.\n"
        prompt.save()
    deployment_set(release=release_cut(pipeline=pipeline, actor=lead), environment="staging", actor=operator)
    deployment = deployment_rollback(pipeline=pipeline, environment="staging", actor=operator, reason=" ")
    assert deployment.release == release
    assert deployment.history.first().history_change_reason == f"Rolled back to #{release.number}"


@pytest.mark.parametrize("persona", ["auditor", "reviewer", "outsider"])
def test_deploying_needs_the_deploy_right(acme_config, lead, personas, persona):
    release = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    with pytest.raises(PermissionDenied):
        deployment_set(release=release, environment="production", actor=personas[persona])
    assert not Deployment.objects.filter(release=release).exists()


def test_an_unknown_environment_is_refused(acme_config, lead):
    release = release_cut(pipeline=acme_config["pipeline"], actor=lead)
    with pytest.raises(ValidationError, match="Unknown environment 'prod'"):
        deployment_set(release=release, environment="prod", actor=lead)


def test_the_admin_cuts_deploys_and_rolls_back(client, acme_config, lead):
    pipeline = acme_config["pipeline"]
    client.force_login(lead)
    changelist = reverse("admin:pipelines_pipeline_changelist")
    client.post(changelist, {"action": "cut_release", "_selected_action": [pipeline.pk]})
    first = Release.objects.get(pipeline=pipeline)
    release_approved(first)
    client.post(
        reverse("admin:pipelines_release_changelist"), {"action": "deploy_production", "_selected_action": [first.pk]}
    )
    deployment = Deployment.objects.get(pipeline=pipeline, environment="production")
    assert deployment.release == first
    response = client.post(
        reverse("admin:pipelines_deployment_changelist"),
        {"action": "roll_back", "_selected_action": [deployment.pk]},
    )
    assert response.status_code == 200 and "reason" in response.content.decode()  # asks why first
    response = client.post(
        reverse("admin:pipelines_deployment_changelist"),
        {"action": "roll_back", "_selected_action": [deployment.pk], "apply": "1", "reason": "test"},
        follow=True,
    )
    assert "No earlier release" in response.content.decode()
    assert client.get(reverse("admin:pipelines_release_change", args=[first.pk])).status_code == 200


def test_releases_of_another_workspace_are_invisible(client, acme_config, globex_config, lead, superuser):
    theirs = release_cut(pipeline=globex_config["pipeline"], actor=superuser)
    client.force_login(lead)
    page = client.get(reverse("admin:pipelines_release_changelist")).content.decode()
    assert "globex-triage" not in page
    assert client.get(reverse("admin:pipelines_release_change", args=[theirs.pk])).status_code == 302
    client.post(
        reverse("admin:pipelines_release_changelist"), {"action": "deploy_production", "_selected_action": [theirs.pk]}
    )
    assert not Deployment.objects.filter(release=theirs).exists()
