import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from governance.permissions import user_can
from pipelines.models import Pipeline, Step


def test_the_demo_creates_a_working_configuration_and_is_idempotent(db, capsys):
    call_command("keel_demo")
    pipeline = Pipeline.objects.get(slug="support-triage")
    assert [s.kind for s in pipeline.steps.all()] == [
        "validate",
        "redact",
        "model",
        "parse",
        "model",
        "gate",
        "deliver",
    ]
    for step in Step.objects.all():
        step.full_clean()
    users = get_user_model().objects
    assert user_can(users.get(username="lead"), "change", pipeline)
    assert user_can(users.get(username="reviewer"), "review_output", pipeline)
    assert not user_can(users.get(username="auditor"), "change", pipeline)
    assert "password: keel-demo" in capsys.readouterr().out
    counts = (AuditEvent.objects.count(), Pipeline.history.count(), Step.history.count(), users.count())

    call_command("keel_demo")
    assert (AuditEvent.objects.count(), Pipeline.history.count(), Step.history.count(), users.count()) == counts
    assert users.get(username="lead").check_password("keel-demo")
    assert audit_chain_verify().ok


def test_the_demo_deploys_its_pipeline_and_runs_sample_tickets_inline(db, capsys):
    from pipelines.models import Run

    call_command("keel_demo", "--runs", "12", "--inline")
    out = capsys.readouterr().out
    assert Run.objects.count() == 12
    assert not Run.objects.filter(status__in=["queued", "running", "failed"]).exists()
    assert "Runs: " in out and "Labels: " in out
    assert audit_chain_verify().ok


def test_a_negative_run_count_is_refused(db):
    import pytest
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--runs must be zero or more"):
        call_command("keel_demo", "--runs", "-1")


def test_the_demo_has_a_second_lead_who_approves_what_the_lead_releases(db):
    """The README's walk-through has the lead edit a prompt and cut a release; the
    lead may not approve their own release, so the demo's approver does."""
    from django.core.exceptions import PermissionDenied

    from audit.context import acting_as
    from pipelines.models import PromptTemplate
    from pipelines.releases.approval import release_approve, release_state, release_submit
    from pipelines.releases.cut import release_cut

    call_command("keel_demo")
    users = get_user_model().objects
    lead, approver = users.get(username="lead"), users.get(username="approver")
    pipeline = Pipeline.objects.get(slug="support-triage")
    with acting_as(lead):
        prompt = PromptTemplate.objects.get(slug="reply-draft")
        prompt.body += "\nSign off as the Northwind support team."
        prompt.save()
        release = release_cut(pipeline=pipeline, actor=lead, notes="A sign-off in every reply.")
        release_submit(release=release, actor=lead, notes="A sign-off in every reply.")
        with pytest.raises(PermissionDenied, match="author of a release cannot approve it"):
            release_approve(release=release, actor=lead)
    with acting_as(approver):
        release_approve(release=release, actor=approver)
    assert release_state(release) == "approved"


def test_the_demo_deploys_a_pipeline_for_uploaded_letters(db):
    from pipelines.models import Run
    from pipelines.runs.engine import run_execute, run_start

    call_command("keel_demo")
    letters = Pipeline.objects.get(slug="customer-letters")
    assert letters.deployments.get(environment="production").release.number == 1
    assert [s.kind for s in letters.steps.all()][:3] == ["ingest", "transform", "redact"]
    document = {"text": "The parcel never came. Call me on +44 20 7946 1000.", "filename": "letter.txt"}
    run, _ = run_start(pipeline=letters, input={"document": document}, actor=None, trigger="cli", enqueue=False)
    run = run_execute(run.pk)
    assert run.status in (Run.Status.COMPLETED, Run.Status.WAITING_REVIEW), run.failure_reason
    redacted = run.steps.get(kind="redact").output
    assert "7946" not in redacted["body"] and "7946" not in redacted["document"]["text"]
    assert run.steps.get(kind="parse").output["label"] == "shipping"
