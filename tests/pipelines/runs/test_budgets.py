"""Monthly budgets over real runs: the soft limit e-mails the owner once, the
hard limit holds new runs as failed (budget_exceeded) or pauses the pipeline
until a governance lead raises it, and the spend shows in the admin."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.models import Budget, Deployment, ModelConfig, Run
from pipelines.runs.budgets import budget_save, budget_spend
from pipelines.runs.engine import RunRefused, run_execute, run_start
from tests.pipelines.integration.api.conftest import deploy

TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved since Monday."}


@pytest.fixture
def pipeline(acme_config, superuser):
    # A price, so that runs cost money as well as tokens.
    ModelConfig.objects.filter(pk=acme_config["model"].pk).update(price_input_per_1k=Decimal("2"))
    return deploy(acme_config["pipeline"], superuser)


def _run(pipeline, capture) -> Run:
    with capture(execute=True):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli", enqueue=False)
    return run


def _budget(lead, **fields) -> Budget:
    with acting_as(lead):
        return budget_save(budget=Budget(**fields), actor=lead)


def test_spend_counts_this_months_tokens_and_money(pipeline, lead, django_capture_on_commit_callbacks):
    run_execute(_run(pipeline, django_capture_on_commit_callbacks).pk)
    tokens = _budget(lead, pipeline=pipeline, unit="tokens", soft_limit=10**6, hard_limit=10**6)
    money = _budget(lead, workspace=pipeline.workspace, unit="money", soft_limit=10**6, hard_limit=10**6)
    assert budget_spend(budget=tokens) > 0 and budget_spend(budget=money) > 0


def test_the_soft_limit_emails_the_owner_once(pipeline, lead, mailoutbox, django_capture_on_commit_callbacks):
    run_execute(_run(pipeline, django_capture_on_commit_callbacks).pk)
    _budget(lead, pipeline=pipeline, unit="tokens", soft_limit=1, hard_limit=10**6)
    first = _run(pipeline, django_capture_on_commit_callbacks)
    second = _run(pipeline, django_capture_on_commit_callbacks)
    assert first.status == second.status == Run.Status.QUEUED  # the soft limit holds nothing
    assert len(mailoutbox) == 1 and mailoutbox[0].to == [pipeline.owner.email]
    assert "soft limit" in mailoutbox[0].subject
    assert AuditEvent.objects.filter(action="budget.soft_limit_crossed").count() == 1


def test_the_hard_limit_holds_new_runs_as_failed(pipeline, lead, django_capture_on_commit_callbacks):
    run_execute(_run(pipeline, django_capture_on_commit_callbacks).pk)
    budget = _budget(lead, workspace=pipeline.workspace, unit="money", soft_limit=0, hard_limit=Decimal("0.0001"))
    held = _run(pipeline, django_capture_on_commit_callbacks)
    assert held.status == Run.Status.FAILED and held.failure_reason.startswith("budget_exceeded:")
    event = AuditEvent.objects.get(action="run.failed", object_id=str(held.pk))
    assert event.payload_data["reason"] == "budget_exceeded" and event.payload_data["budget"] == budget.pk
    assert run_execute(held.pk) is None  # nothing for a worker to claim
    # A governance lead raises it: runs go through again.
    budget.hard_limit = Decimal("1000")
    budget_save(budget=budget, actor=lead)
    assert _run(pipeline, django_capture_on_commit_callbacks).status == Run.Status.QUEUED


def test_pause_mode_pauses_the_pipeline_until_the_budget_is_raised(pipeline, lead, django_capture_on_commit_callbacks):
    run_execute(_run(pipeline, django_capture_on_commit_callbacks).pk)
    budget = _budget(lead, pipeline=pipeline, unit="tokens", soft_limit=0, hard_limit=1, on_hard_limit="pause")
    assert _run(pipeline, django_capture_on_commit_callbacks).status == Run.Status.FAILED
    assert Deployment.objects.get(pipeline=pipeline, environment="production").paused
    with pytest.raises(RunRefused, match="paused"):
        _run(pipeline, django_capture_on_commit_callbacks)
    budget.hard_limit = 10**6
    budget_save(budget=budget, actor=lead)
    assert not Deployment.objects.get(pipeline=pipeline, environment="production").paused
    assert _run(pipeline, django_capture_on_commit_callbacks).status == Run.Status.QUEUED


def test_only_a_lead_of_the_scope_sets_a_budget(pipeline, author, globex):
    with pytest.raises(PermissionDenied):
        budget_save(budget=Budget(pipeline=pipeline, unit="tokens", soft_limit=1, hard_limit=2), actor=author)
    assert not Budget.objects.exists()


def test_spend_by_pipeline_model_and_month_is_in_the_admin(pipeline, lead, client, django_capture_on_commit_callbacks):
    run_execute(_run(pipeline, django_capture_on_commit_callbacks).pk)
    budget = _budget(lead, workspace=pipeline.workspace, unit="money", soft_limit=100, hard_limit=200)
    client.force_login(lead)
    listing = client.get("/admin/pipelines/budget/").content.decode()
    assert str(budget) in listing
    page = client.get(f"/admin/pipelines/budget/{budget.pk}/change/").content.decode()
    assert pipeline.slug in page and "builtin" in page


def test_a_soft_limit_above_the_hard_limit_is_a_form_error(pipeline, lead, client):
    client.force_login(lead)
    response = client.post(
        "/admin/pipelines/budget/add/",
        {"pipeline": pipeline.pk, "unit": "tokens", "soft_limit": "10", "hard_limit": "5", "on_hard_limit": "fail"},
    )
    assert response.status_code == 200
    assert "soft limit cannot be above" in str(response.context["adminform"].form.errors)
    assert not Budget.objects.exists()
