"""Maker-checker releases and the production gate: submitted with notes,
approved by enough distinct people who neither wrote nor edited it, evaluated,
and only then deployable to production; rules read from the current policy."""

from decimal import Decimal

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from governance.models import ChangePolicy, change_policy_for
from governance.roles import GOVERNANCE_LEADS
from governance.services import role_grant
from pipelines.models import Deployment, EvaluationCase, ReleaseTransition
from pipelines.releases.approval import (
    release_approve,
    release_approvers,
    release_editors,
    release_reject,
    release_retire,
    release_state,
    release_submit,
)
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_set
from pipelines.releases.gate import release_gate_problems
from tests import factories
from tests.releasing import classifier_pipeline, evaluate_now, prompt_edit


@pytest.fixture
def pipeline(acme, superuser):
    pipeline = classifier_pipeline(acme, actor=superuser)
    EvaluationCase.objects.create(
        pipeline=pipeline, name="parcel", input={"subject": "Where is my parcel? The tracking is stuck"},
        expected_label="shipping",
    )  # fmt: skip
    return pipeline


@pytest.fixture
def lead2(acme, superuser):
    user = factories.UserFactory(username="lead2")
    with acting_as(superuser):
        role_grant(actor=superuser, role=GOVERNANCE_LEADS, user=user, workspace=acme)
    return user


def _cut(pipeline, author, body="Customer says: {{ subject }}"):
    prompt_edit(pipeline, actor=author, body=body)
    return release_cut(pipeline=pipeline, actor=author, notes="draft")


def test_a_release_is_submitted_with_notes_then_approved_by_someone_else(pipeline, author, lead):
    release = _cut(pipeline, author)
    assert release_state(release) == "draft"
    with pytest.raises(ValidationError, match="Say what this release changes"):
        release_submit(release=release, actor=author, notes="  ")
    release_submit(release=release, actor=author, notes="Reads the subject with a preamble.")
    assert release_state(release) == "submitted"
    release_approve(release=release, actor=lead)
    assert release_state(release) == "approved" and release_approvers(release) == [lead]
    states = list(release.transitions.order_by("pk").values_list("state", flat=True))
    assert states == ["submitted", "approval", "approved"]
    actions = list(
        AuditEvent.objects.filter(object_type="release", object_id=str(release.pk)).values_list("action", flat=True)
    )
    assert actions == ["release.cut", "release.submitted", "release.approval", "release.approved"]
    assert audit_chain_verify().ok


def test_the_author_cannot_approve_their_own_release_even_as_a_lead(pipeline, lead):
    release = _cut(pipeline, lead)
    release_submit(release=release, actor=lead, notes="mine")
    with pytest.raises(PermissionDenied, match="author"):
        release_approve(release=release, actor=lead)
    assert release_state(release) == "submitted"
    assert not release.transitions.filter(state=ReleaseTransition.State.APPROVAL).exists()


def test_whoever_edited_its_configuration_since_the_previous_release_cannot_approve(pipeline, author, lead, lead2):
    prompt_edit(pipeline, actor=lead, body="Lead's words: {{ subject }}")  # the lead is now one of its makers
    release = release_cut(pipeline=pipeline, actor=author, notes="x")
    assert lead.pk in release_editors(release) and author.pk in release_editors(release)
    release_submit(release=release, actor=author, notes="both of us edited")
    with pytest.raises(PermissionDenied, match="edited"):
        release_approve(release=release, actor=lead)
    release_approve(release=release, actor=lead2)
    assert release_state(release) == "approved"
    # Edits before the previous release do not count against the next one.
    second = _cut(pipeline, author, body="Second: {{ subject }}")
    assert lead.pk not in release_editors(second)


@pytest.mark.parametrize("persona", ["author", "operator", "reviewer", "auditor", "outsider"])
def test_approving_needs_the_approve_right(pipeline, personas, persona, superuser):
    release = release_cut(pipeline=pipeline, actor=superuser, notes="x")
    release_submit(release=release, actor=superuser, notes="x")
    with pytest.raises(PermissionDenied):
        release_approve(release=release, actor=personas[persona])
    assert release_state(release) == "submitted"


def test_the_number_of_approvers_comes_from_the_pipelines_current_policy(
    pipeline, acme, author, lead, lead2, superuser
):
    with acting_as(superuser):
        ChangePolicy.objects.create(workspace=acme, approvals_required=1)
        own = ChangePolicy.objects.create(workspace=acme, pipeline=pipeline, approvals_required=2)
    assert change_policy_for(pipeline) == own
    release = _cut(pipeline, author)
    release_submit(release=release, actor=author, notes="two needed")
    release_approve(release=release, actor=lead)
    assert release_state(release) == "submitted"
    with pytest.raises(ValidationError, match="already approved"):
        release_approve(release=release, actor=lead)
    release_approve(release=release, actor=lead2)
    assert release_state(release) == "approved"
    assert [u.username for u in release_approvers(release)] == ["lead", "lead2"]


def test_a_pipeline_without_a_policy_falls_back_to_its_workspaces_then_to_the_defaults(pipeline, acme, superuser):
    assert change_policy_for(pipeline).pk is None and change_policy_for(pipeline).approvals_required == 1
    with acting_as(superuser):
        workspace_policy = ChangePolicy.objects.create(workspace=acme, approvals_required=3)
    assert change_policy_for(pipeline) == workspace_policy


def test_rejecting_needs_a_reason_and_ends_the_release(pipeline, author, lead):
    release = _cut(pipeline, author)
    release_submit(release=release, actor=author, notes="x")
    with pytest.raises(ValidationError, match="Say why"):
        release_reject(release=release, actor=lead, reason="")
    release_reject(release=release, actor=lead, reason="The preamble confuses the classifier.")
    assert release_state(release) == "rejected"
    with pytest.raises(ValidationError, match="rejected, not waiting"):
        release_approve(release=release, actor=lead)
    with pytest.raises(ValidationError, match="only a new release"):
        release_submit(release=release, actor=author, notes="again")


def test_approving_a_release_retired_meanwhile_is_refused(pipeline, author, lead, operator):
    release = _cut(pipeline, author)
    release_submit(release=release, actor=author, notes="x")
    release_retire(release=release, actor=operator, reason="Superseded.")
    with pytest.raises(ValidationError, match="retired"):
        release_approve(release=release, actor=lead)
    assert release.transitions.count() == 2


def test_production_refuses_a_release_until_approved_and_evaluated(pipeline, author, lead):
    release = _cut(pipeline, author)
    with pytest.raises(ValidationError, match="is draft, not approved.*has not been evaluated"):
        deployment_set(release=release, environment="production", actor=author)
    deployment_set(release=release, environment="staging", actor=author)  # staging takes drafts
    release_submit(release=release, actor=author, notes="x")
    release_approve(release=release, actor=lead)
    with pytest.raises(ValidationError, match="has not been evaluated"):
        deployment_set(release=release, environment="production", actor=author)
    assert not Deployment.objects.filter(environment="production", release=release).exists()
    evaluation = evaluate_now(release=release, actor=author)
    assert (evaluation.cases, evaluation.passed) == (1, 1)
    deployment_set(release=release, environment="production", actor=author)
    assert Deployment.objects.get(pipeline=pipeline, environment="production").release == release


def test_a_failing_evaluation_and_a_regression_block_production(pipeline, author, lead, superuser):
    good = _cut(pipeline, author)
    for release in [good]:
        release_submit(release=release, actor=author, notes="x")
        release_approve(release=release, actor=lead)
        evaluate_now(release=release, actor=author)
    deployment_set(release=good, environment="production", actor=author)
    bad = _cut(pipeline, author, body="Length only: {{ subject | length }}")  # the classifier sees no words
    release_submit(release=bad, actor=author, notes="shorter prompt")
    release_approve(release=bad, actor=lead)
    evaluation = evaluate_now(release=bad, actor=author)
    assert (evaluation.passed, evaluation.broken, evaluation.baseline) == (0, 1, good)
    result = evaluation.results.get()
    assert result.comparison == "broken" and "expected 'shipping'" in result.failures[0]
    problems = release_gate_problems(bad)
    assert any("minimum pass rate" in p for p in problems) and any("regressions block" in p for p in problems)
    with pytest.raises(ValidationError, match="cannot go to production"):
        deployment_set(release=bad, environment="production", actor=author)
    # A policy that accepts failures and regressions lets it through: read at deploy time.
    with acting_as(superuser):
        ChangePolicy.objects.create(workspace=pipeline.workspace, pipeline=pipeline, min_pass_rate=Decimal("0"),
                                    block_regressions=False)  # fmt: skip
    assert release_gate_problems(bad) == []


def test_evaluation_cases_added_since_the_evaluation_require_a_new_one(pipeline, author, lead):
    release = _cut(pipeline, author)
    release_submit(release=release, actor=author, notes="x")
    release_approve(release=release, actor=lead)
    evaluate_now(release=release, actor=author)
    EvaluationCase.objects.create(pipeline=pipeline, name="another", input={"subject": "Invoice is wrong"})
    assert any("evaluate again" in p for p in release_gate_problems(release))


def test_a_live_release_cannot_be_retired(pipeline, author, lead, operator):
    release = _cut(pipeline, author)
    deployment_set(release=release, environment="staging", actor=author)
    with pytest.raises(ValidationError, match="is live"):
        release_retire(release=release, actor=operator, reason="old")
