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
