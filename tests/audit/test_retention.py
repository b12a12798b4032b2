"""Retention and data-subject erasure redact runs' personal data through the
named paths and keep every hash: the chain still verifies, offline too."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from audit.services import audit_record, retention_policy_set
from pipelines.models import Evaluation, EvaluationCase, EvaluationResult, Pipeline, Run, StepRun
from pipelines.runs.redaction import TOMBSTONE, retention_apply, subject_runs_find
from tests.audit.conftest import make_run
from tests.audit.test_export_verify import verify


def age(run: Run, days: int) -> None:
    Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(days=days))


@pytest.fixture
def runs(acme_config, globex_config, superuser):
    old = make_run(acme_config["pipeline"], superuser)
    fresh = make_run(acme_config["pipeline"], superuser)
    waiting = make_run(acme_config["pipeline"], superuser, status=Run.Status.WAITING_REVIEW)
    other = make_run(globex_config["pipeline"], superuser, email="grace@example.org")
    for run in (old, waiting, other):
        age(run, 40)
    return {"old": old, "fresh": fresh, "waiting": waiting, "other": other}


NOTHING = {"cancelled": 0, "runs": 0, "evaluation_cases": 0, "evaluations": 0}


def test_retention_redacts_old_finished_runs_and_keeps_every_hash(runs, acme, acme_config):
    retention_policy_set(workspace_id=acme.pk, run_data_days=30, actor="test")
    prompt_history = list(acme_config["prompt"].history.values_list("history_id", "body"))
    # The old run waiting for review is cancelled first, then redacted with the finished one.
    assert retention_apply() == {acme.pk: NOTHING | {"cancelled": 1, "runs": 2}}

    old = Run.objects.get(pk=runs["old"].pk)
    assert old.input == TOMBSTONE and old.output == TOMBSTONE
    assert old.input_sha256 == runs["old"].input_sha256
    step = StepRun.objects.get(run=old)
    assert step.input == TOMBSTONE and step.output == TOMBSTONE and step.output_sha256 == "b" * 64
    for name in ("fresh", "other"):
        assert Run.objects.get(pk=runs[name].pk).input != TOMBSTONE, name
    event = AuditEvent.objects.get(action="run.data_redacted", object_id=str(old.pk))
    assert event.payload_data["reason"].startswith("retention")
    # Configuration history is never touched; a second pass finds nothing to do.
    assert list(acme_config["prompt"].history.values_list("history_id", "body")) == prompt_history
    assert retention_apply() == {acme.pk: NOTHING}
    assert audit_chain_verify().ok


def test_retention_settings_are_recorded_and_checked(acme):
    retention_policy_set(workspace_id=acme.pk, run_data_days=90, actor="test")
    assert AuditEvent.objects.filter(action="retention.set", workspace_id=acme.pk).exists()
    with pytest.raises(ValidationError) as caught:
        retention_policy_set(workspace_id=acme.pk, run_data_days=0, actor="test")
    assert "run_data_days" in caught.value.message_dict
    with pytest.raises(CommandError, match="--days: Keep run data for at least one day"):
        call_command("audit_retention", workspace="acme", days=0)
    with pytest.raises(CommandError, match="--workspace: there is no workspace 'nowhere'"):
        call_command("audit_retention", workspace="nowhere", days=5)


def test_a_data_subject_search_finds_only_their_runs_and_is_recorded_by_hash(runs, capsys):
    found = set(subject_runs_find(identifier="ADA@example.com").values_list("pk", flat=True))
    assert found == {runs["old"].pk, runs["fresh"].pk, runs["waiting"].pk}
    call_command("audit_subject", "ada@example.com")
    event = AuditEvent.objects.get(action="subject.searched")
    assert sorted(event.payload_data["runs"]) == sorted(found)
    assert "ada@example.com" not in event.payload and "ada@example.com" not in event.object_id
    with pytest.raises(CommandError, match="at least 3 characters"):
        call_command("audit_subject", "a")


def test_a_data_subject_export_holds_their_runs(runs, tmp_path):
    target = tmp_path / "ada.json"
    call_command("audit_subject", "ada@example.com", export=str(target))
    document = json.loads(target.read_text())
    assert {run["run"] for run in document["runs"]} == {runs["old"].pk, runs["fresh"].pk, runs["waiting"].pk}
    assert document["runs"][0]["input"]["customer_email"] == "ada@example.com"
    assert AuditEvent.objects.filter(action="subject.exported").exists()


def test_erasure_redacts_their_data_and_events_and_the_chain_still_verifies(runs, tmp_path):
    mention = audit_record(
        action="run.cancelled",
        object_type="run",
        object_id=runs["fresh"].pk,
        payload={"reason": "customer ada@example.com asked us to stop"},
        workspace_id=runs["fresh"].pipeline.workspace_id,
        pipeline_id=runs["fresh"].pipeline_id,
    )
    with pytest.raises(CommandError, match="--reason is required"):
        call_command("audit_subject", "ada@example.com", erase=True)
    call_command("audit_subject", "ada@example.com", erase=True, reason="DSR-2026-001")

    assert not subject_runs_find(identifier="ada@example.com").exists()
    assert Run.objects.get(pk=runs["other"].pk).input["customer_email"] == "grace@example.org"
    assert AuditEvent.objects.get(seq=mention.seq).is_redacted
    assert AuditEvent.objects.filter(action="run.data_redacted").count() == 3
    erased = AuditEvent.objects.get(action="subject.erased")
    assert erased.payload_data["reason"] == "DSR-2026-001"
    assert audit_chain_verify().ok
    path = tmp_path / "after.jsonl"
    call_command("audit_export", output=str(path))
    assert verify(path).returncode == 0
    assert b"ada@example.com" not in path.read_bytes()


def test_retention_cancels_unfinished_runs_past_their_age_through_the_cancel_service_then_redacts_them(
    acme, acme_config, superuser
):
    old = {
        status: make_run(
            acme_config["pipeline"],
            superuser,
            status=status,
            lease_owner="worker-1" if status == Run.Status.RUNNING else "",
        )
        for status in (Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING_REVIEW)
    }
    fresh = make_run(acme_config["pipeline"], superuser, status=Run.Status.WAITING_REVIEW)
    for run in old.values():
        age(run, 40)
    retention_policy_set(workspace_id=acme.pk, run_data_days=30, actor="test")

    assert retention_apply()[acme.pk] == NOTHING | {"cancelled": 3, "runs": 3}

    for previous, run in old.items():
        run.refresh_from_db()
        assert run.status == Run.Status.CANCELLED and run.input == TOMBSTONE and run.lease_owner == ""
        cancelled = AuditEvent.objects.get(action="run.cancelled", object_id=str(run.pk))
        assert cancelled.actor_name == "system:retention"
        assert cancelled.payload_data["previous_status"] == previous
        # Cancelled first, then redacted.
        assert cancelled.seq < AuditEvent.objects.get(action="run.data_redacted", object_id=str(run.pk)).seq
    fresh.refresh_from_db()
    assert fresh.status == Run.Status.WAITING_REVIEW and fresh.input["customer_email"] == "ada@example.com"
    assert audit_chain_verify().ok


def test_retention_redacts_an_old_run_s_document_and_the_events_that_name_its_file(acme, acme_config, superuser):
    from pipelines.runs.documents import document_read, document_store

    run = make_run(acme_config["pipeline"], superuser)
    data = b"Contract between Ada Lovelace and Acme.\n"
    with acting_as(superuser):
        read = document_read(data=data, content_type="text/plain", filename="lovelace-contract.txt")
        document = document_store(run=run, data=data, document=read, source="scanner 4", actor=superuser)
    stored = AuditEvent.objects.get(action="run.document_stored")
    age(run, 40)
    retention_policy_set(workspace_id=acme.pk, run_data_days=30, actor="test")

    retention_apply()

    document.refresh_from_db()
    assert (bytes(document.content), document.filename, document.source) == (b"", "", "")
    assert (document.sha256, document.size) == (read["sha256"], len(data))  # what it was stays provable
    assert AuditEvent.objects.get(seq=stored.seq).is_redacted
    named = AuditEvent.objects.get(action="audit.redacted", object_id=str(stored.seq))
    assert named.payload_data["seq"] == stored.seq
    assert audit_chain_verify().ok


def test_retention_redacts_old_evaluation_cases_and_the_results_of_old_evaluations(acme, acme_config, superuser):
    pipeline = acme_config["pipeline"]
    run = make_run(pipeline, superuser)
    release = run.release
    old_case = EvaluationCase.objects.create(
        pipeline=pipeline, name="Ada's refund", input={"customer_email": "ada@example.com"},
        required_phrases=["Ada"], forbidden_phrases=["ada@example.com"],
    )  # fmt: skip
    new_case = EvaluationCase.objects.create(pipeline=pipeline, name="Grace", input={"customer_email": "g@x.org"})
    old_evaluation, new_evaluation = (
        Evaluation.objects.create(release=release),
        Evaluation.objects.create(release=release),
    )
    for evaluation in (old_evaluation, new_evaluation):
        EvaluationResult.objects.create(
            evaluation=evaluation, case=new_case, passed=False, output={"reply": "Dear Grace"},
            failures=["'Dear Grace' is too long"], comparison="new",
        )  # fmt: skip
    past = timezone.now() - timedelta(days=40)
    EvaluationCase.objects.filter(pk=old_case.pk).update(created_at=past)
    Evaluation.objects.filter(pk=old_evaluation.pk).update(created_at=past)
    retention_policy_set(workspace_id=acme.pk, run_data_days=30, actor="test")

    assert retention_apply()[acme.pk] == NOTHING | {"evaluation_cases": 1, "evaluations": 1}

    old_case.refresh_from_db()
    assert old_case.input == TOMBSTONE and old_case.name == f"redacted case {old_case.pk}"
    assert old_case.required_phrases == [] and old_case.forbidden_phrases == []
    assert EvaluationCase.objects.get(pk=new_case.pk).input == {"customer_email": "g@x.org"}
    old_result = EvaluationResult.objects.get(evaluation=old_evaluation)
    assert old_result.output == TOMBSTONE and old_result.failures == []
    assert EvaluationResult.objects.get(evaluation=new_evaluation).output == {"reply": "Dear Grace"}
    assert AuditEvent.objects.filter(action="evaluation_case.data_redacted", object_id=str(old_case.pk)).exists()
    assert AuditEvent.objects.filter(action="evaluation.data_redacted", object_id=str(old_evaluation.pk)).exists()
    assert retention_apply()[acme.pk] == NOTHING
    assert audit_chain_verify().ok


def test_a_request_is_recorded_under_an_hmac_keyed_by_the_deployment_not_a_bare_hash(runs, settings):
    def keyed(secret: str) -> str:
        key = hashlib.sha256(b"keel.data-subject" + secret.encode()).digest()  # Django's salted_hmac
        return hmac.new(key, b"ada@example.com", hashlib.sha256).hexdigest()

    call_command("audit_subject", " ADA@example.com ")
    settings.KEEL_SUBJECT_KEY = "a-deployment-key"
    call_command("audit_subject", "ada@example.com")

    first, second = AuditEvent.objects.filter(action="subject.searched").order_by("seq")
    assert first.object_id == keyed(settings.SECRET_KEY)
    assert second.object_id == keyed("a-deployment-key")
    bare = hashlib.sha256(b"ada@example.com").hexdigest()
    for event in (first, second):
        assert bare[:32] not in event.object_id + event.payload
        assert "ada@example.com" not in event.object_id + event.payload.lower()


def test_an_erasure_refuses_a_reason_that_names_the_person(runs):
    with pytest.raises(CommandError, match="--reason: .*must not name the identifier"):
        call_command("audit_subject", "ada@example.com", erase=True, reason="request of ADA@example.com")
    assert not AuditEvent.objects.filter(action__in=["subject.erased", "run.data_redacted"]).exists()


def test_the_retention_command_applies_it_and_says_what_it_redacted(runs, acme, capsys):
    retention_policy_set(workspace_id=acme.pk, run_data_days=30, actor="test")

    call_command("audit_retention", apply=True)

    out = capsys.readouterr().out
    assert f"workspace {acme.pk}: redacted cancelled 1, runs 2, evaluation cases 0, evaluations 0" in out
    assert Run.objects.get(pk=runs["waiting"].pk).status == Run.Status.CANCELLED


def test_the_search_and_the_erasure_name_the_kept_configuration_that_still_holds_the_identifier(
    runs, acme_config, capsys
):
    pipeline = acme_config["pipeline"]
    Pipeline.objects.filter(pk=pipeline.pk).update(description="Escalations go to ada@example.com")

    call_command("audit_subject", "ada@example.com")
    assert "kept, never erased: pipelines_pipeline 1" in capsys.readouterr().out
    call_command("audit_subject", "ada@example.com", erase=True, reason="DSR-2026-002")

    assert "kept, never erased: pipelines_pipeline 1" in capsys.readouterr().out
    assert Pipeline.objects.get(pk=pipeline.pk).description == "Escalations go to ada@example.com"
    erased = AuditEvent.objects.get(action="subject.erased")
    assert erased.payload_data["kept"] == {"pipelines_pipeline": 1}
