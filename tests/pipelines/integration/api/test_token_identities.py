"""Whom a token acts as: its creator, or a service account of a workspace the
creator governs; never another person. Every API event names the token and
its creator, and separation of duties counts the creator as the requester."""

import io
import json

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from audit.context import acting_as
from audit.models import AuditEvent
from governance.accounts import service_account_create
from governance.roles import GOVERNANCE_LEADS
from governance.services import role_grant
from pipelines.integration.tokens import token_create
from pipelines.models import Deployment, Run, ServiceToken
from pipelines.runs.engine import run_execute
from reviews.models import ReviewDecision
from reviews.services import review_decide
from tests.pipelines.integration.api.conftest import TICKET
from tests.reviews.conftest import gated_pipeline, task_of


def _create(actor, user, **scope):
    with acting_as(actor):
        return token_create(user=user, name="crm", actor=actor, **scope)


def test_a_lead_cannot_create_a_token_for_admin(lead, superuser, acme_pipeline):
    with pytest.raises(ValidationError) as refused:
        _create(lead, superuser, pipeline=acme_pipeline)
    assert "user" in refused.value.message_dict and "another person" in refused.value.message_dict["user"][0]
    assert not ServiceToken.objects.exists()
    assert not AuditEvent.objects.filter(action="token.created").exists()


def test_a_lead_cannot_create_a_token_for_another_person_of_their_workspace(lead, author, acme_pipeline):
    with pytest.raises(ValidationError, match="another person"):
        _create(lead, author, workspace=acme_pipeline.workspace)
    assert not ServiceToken.objects.exists()


def test_a_superuser_cannot_create_a_token_for_another_person(superuser, author, acme_pipeline):
    with pytest.raises(ValidationError, match="another person"):
        _create(superuser, author, pipeline=acme_pipeline)
    assert not ServiceToken.objects.exists()


def test_a_token_needs_a_person_as_its_creator(author, acme_pipeline):
    with pytest.raises(ValidationError, match="created by a person"):
        token_create(user=author, name="crm", actor=None, pipeline=acme_pipeline)
    assert not ServiceToken.objects.exists()


def test_a_lead_creates_a_token_for_a_service_account_of_their_workspace(lead, service_account, acme_pipeline):
    token, _ = _create(lead, service_account, pipeline=acme_pipeline)
    assert token.user == service_account and token.created_by == lead
    event = AuditEvent.objects.get(action="token.created")
    assert event.actor_name == "lead" and event.payload_data["user_id"] == service_account.pk
    assert event.payload_data["created_by_id"] == lead.pk


def test_a_lead_cannot_create_a_token_for_a_service_account_of_a_workspace_they_do_not_govern(
    lead, superuser, globex, globex_pipeline, acme_pipeline
):
    with acting_as(superuser):
        account = service_account_create(workspace=globex, username="globex-bot", actor=superuser)
    with pytest.raises(ValidationError, match="which you do not govern"):
        _create(lead, account.user, pipeline=globex_pipeline)
    # Nor scoped into the lead's own workspace: the account belongs to globex.
    with pytest.raises(ValidationError, match="which you do not govern"):
        _create(lead, account.user, pipeline=acme_pipeline)
    assert not ServiceToken.objects.exists()


def test_a_service_account_token_is_scoped_inside_its_workspace(superuser, globex_pipeline, service_account):
    with pytest.raises(ValidationError, match="scope its token there"):
        _create(superuser, service_account, pipeline=globex_pipeline)
    assert not ServiceToken.objects.exists()


def test_the_command_refuses_a_token_acting_as_another_person(lead, author, acme_pipeline):
    with pytest.raises(CommandError, match="another person"):
        call_command("token_create", "author", "--by", "lead", "--pipeline", acme_pipeline.slug,
                     stdout=io.StringIO(), stderr=io.StringIO())  # fmt: skip
    assert not ServiceToken.objects.exists()


def test_the_command_creates_a_service_account_token_for_its_lead(lead, acme_pipeline, service_account):
    out = io.StringIO()
    call_command("token_create", "crm-bot", "--by", "lead", "--pipeline", acme_pipeline.slug, stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    token = ServiceToken.objects.get()
    assert token.user == service_account and token.created_by == lead
    assert AuditEvent.objects.get(action="token.created").actor_name == "lead"


def test_the_admin_form_offers_only_the_lead_and_their_service_accounts(client, lead, author, superuser,
                                                                        acme_pipeline, service_account):  # fmt: skip
    client.force_login(lead)
    form = client.get("/admin/pipelines/servicetoken/add/").context["adminform"].form
    assert set(form.fields["user"].queryset) == {lead, service_account}
    for other in (author, superuser):
        refused = client.post(
            "/admin/pipelines/servicetoken/add/", {"name": "x", "user": other.pk, "pipeline": acme_pipeline.pk}
        )
        assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert not ServiceToken.objects.exists()


def test_the_admin_form_refuses_a_forged_choice_at_the_service_too(lead, author, acme_pipeline, rf):
    from pipelines.admin.integration import ServiceTokenForm

    request = rf.post("/")
    request.user = lead
    form = ServiceTokenForm(data={"name": "x", "user": author.pk, "pipeline": acme_pipeline.pk}, request=request)
    form.fields["user"].queryset = type(author).objects.all()  # as if the choice list had been widened
    assert not form.is_valid() and "another person" in form.errors["user"][0]


def test_the_token_list_shows_only_tokens_of_workspaces_the_lead_governs(
    client, lead, superuser, author, acme, globex, acme_pipeline, globex_pipeline, make_token
):
    make_token(superuser, pipeline=globex_pipeline, name="root on globex")
    make_token(author, pipeline=acme_pipeline, name="author in acme")
    # The lead also works as a prompt engineer in globex, without governing it.
    from governance.roles import PROMPT_ENGINEERS

    with acting_as(superuser):
        role_grant(actor=superuser, role=PROMPT_ENGINEERS, user=lead, workspace=globex)
        other = service_account_create(workspace=globex, username="globex-bot", actor=superuser)
        role_grant(actor=superuser, role=PROMPT_ENGINEERS, user=other.user, workspace=globex)
    _create(superuser, other.user, pipeline=globex_pipeline)
    make_token(lead, pipeline=acme_pipeline, name="the lead's own")
    client.force_login(lead)
    page = client.get("/admin/pipelines/servicetoken/").content.decode()
    assert "author in acme" in page and "the lead&#x27;s own" in page
    assert "root on globex" not in page and "globex-bot" not in page


def test_an_api_pause_with_a_service_account_token_names_the_token_and_its_creator(
    lead, acme_pipeline, service_account, api_for
):
    token, plain = _create(lead, service_account, pipeline=acme_pipeline)
    api = api_for(plain)
    response = api.client.post(f"/api/v1/pipelines/{acme_pipeline.slug}/pause", json.dumps({"reason": "incident"}),
                               content_type="application/json", headers=api.headers)  # fmt: skip
    assert response.status_code == 200, response.json()
    assert Deployment.objects.get(pipeline=acme_pipeline, environment="production").paused
    events = list(AuditEvent.objects.filter(pipeline_id=acme_pipeline.pk, seq__gt=_seq_of(token)))
    assert events and all(e.actor_name == "crm-bot" for e in events)
    for event in events:
        assert event.payload_data["via_token"] == {
            "id": token.pk, "prefix": token.prefix, "created_by_id": lead.pk, "created_by": "lead",
        }  # fmt: skip


def test_an_api_run_names_the_token_and_records_its_creator_as_requester(lead, acme_pipeline, service_account, api_for):
    token, plain = _create(lead, service_account, pipeline=acme_pipeline)
    response = api_for(plain).post_run(acme_pipeline.slug, {"input": TICKET})
    assert response.status_code == 201, response.json()
    run = Run.objects.get()
    assert run.actor == service_account and run.requested_by == lead
    started = AuditEvent.objects.get(action="run.started")
    assert started.actor_name == "crm-bot" and started.payload_data["via_token"]["prefix"] == token.prefix


def test_the_token_does_not_leak_into_the_next_request(lead, client, acme_pipeline, service_account, api_for):
    _, plain = _create(lead, service_account, pipeline=acme_pipeline)
    assert api_for(plain).get("/api/v1/runs").status_code == 200
    with acting_as(lead):
        from audit.services import audit_record

        event = audit_record(action="test.after", object_type="test", object_id=1)
    assert "via_token" not in event.payload_data and event.actor_name == "lead"


def test_a_lead_who_starts_a_run_with_a_token_cannot_approve_its_review(
    acme, lead, author, superuser, service_account, api_for
):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author)
    _, plain = _create(lead, service_account, pipeline=pipeline)
    body = {"input": {"subject": "Refund please", "draft": "We will look into it."}}
    response = api_for(plain).post_run(pipeline.slug, body)
    assert response.status_code == 201, response.json()
    run = run_execute(Run.objects.get().pk)
    task = task_of(run)
    with acting_as(lead), pytest.raises(PermissionDenied, match="started this run"):
        review_decide(task=task, actor=lead, decision="approve")
    assert not ReviewDecision.objects.exists()
    assert Run.objects.get(pk=run.pk).status == Run.Status.WAITING_REVIEW


def test_a_lead_who_starts_a_run_with_their_own_token_cannot_approve_its_review(
    acme, lead, author, superuser, api_for, make_token
):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author)
    _, plain = make_token(lead, pipeline=pipeline)
    body = {"input": {"subject": "Refund please", "draft": "We will look into it."}}
    assert api_for(plain).post_run(pipeline.slug, body).status_code == 201
    task = task_of(run_execute(Run.objects.get().pk))
    with acting_as(lead), pytest.raises(PermissionDenied, match="started this run"):
        review_decide(task=task, actor=lead, decision="approve")
    assert not ReviewDecision.objects.exists()


def test_another_lead_may_approve_a_run_started_with_a_service_account_token(
    acme, lead, author, superuser, service_account, api_for
):
    from tests.conftest import _persona

    other_lead = _persona("lead2", GOVERNANCE_LEADS, acme, superuser)
    pipeline = gated_pipeline(acme, superuser=superuser, author=author)
    _, plain = _create(lead, service_account, pipeline=pipeline)
    body = {"input": {"subject": "Refund please", "draft": "We will look into it."}}
    assert api_for(plain).post_run(pipeline.slug, body).status_code == 201
    task = task_of(run_execute(Run.objects.get().pk))
    with acting_as(other_lead):
        review_decide(task=task, actor=other_lead, decision="approve")
    assert ReviewDecision.objects.get().reviewer == other_lead


def _seq_of(token) -> int:
    return AuditEvent.objects.get(action="token.created", object_id=str(token.pk)).seq
