"""Instant rollback to any earlier approved release, and the emergency pause
that stops new runs and holds deliveries until resumed."""

import io

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.delivery.dead_letters import delivery_send_held
from pipelines.models import Delivery, Deployment, Run
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback, deployment_set
from pipelines.releases.pause import pipeline_pause, pipeline_unpause
from pipelines.runs.engine import RunRefused, run_execute, run_start
from tests import factories
from tests.pipelines.webhook_server import WebhookServer
from tests.releasing import classifier_pipeline, prompt_edit, release_approved, release_to_production

SECRET_ENV = "TEST_PAUSE_SECRET"
TICKET = {"subject": "Where is my parcel? The tracking is stuck"}


@pytest.fixture
def pipeline(acme, superuser):
    return classifier_pipeline(acme, actor=superuser)


def _three_releases(pipeline, author):
    """#1 approved and live, then #2 approved and live, then #3 never approved."""
    releases = []
    for n in range(3):
        prompt_edit(pipeline, actor=author, body=f"Version {n}: {{{{ subject }}}}")
        releases.append(release_cut(pipeline=pipeline, actor=author, notes=f"v{n}"))
    release_to_production(releases[0])
    release_approved(releases[1])
    with acting_as(author):
        deployment_set(release=releases[1], environment="production", actor=author)
    return releases


def _live(pipeline):
    return Deployment.objects.get(pipeline=pipeline, environment="production").release


def test_rollback_puts_an_earlier_approved_release_live_at_once(pipeline, author, operator, capture_callbacks):
    first, second, _ = _three_releases(pipeline, author)
    with capture_callbacks(execute=False):
        started, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli")
    deployment_rollback(pipeline=pipeline, to_number=1, actor=operator, reason="drafts went wrong")
    assert _live(pipeline) == first
    # A run started before the rollback finishes on the release it started with.
    assert run_execute(started.pk).release == second
    with capture_callbacks(execute=False):
        after, _ = run_start(pipeline=pipeline, input={"subject": "Other"}, actor=None, trigger="cli")
    assert after.release == first
    event = AuditEvent.objects.get(action="deployment.rolled_back").payload_data
    assert (event["from_release"], event["to_release"], event["reason"]) == (2, 1, "drafts went wrong")


@pytest.mark.parametrize(
    ("number", "message"),
    [(3, "not earlier"), (9, "has no release #9"), (2, "not earlier")],
)
def test_rollback_refuses_a_target_that_is_not_an_earlier_approved_release(pipeline, author, operator, number, message):
    _three_releases(pipeline, author)
    with pytest.raises(ValidationError, match=message):
        deployment_rollback(pipeline=pipeline, to_number=number, actor=operator)
    assert _live(pipeline).number == 2


def test_rollback_refuses_a_release_never_approved(pipeline, author, operator):
    prompt_edit(pipeline, actor=author, body="A: {{ subject }}")
    unapproved = release_cut(pipeline=pipeline, actor=author)
    prompt_edit(pipeline, actor=author, body="B: {{ subject }}")
    release_to_production(release_cut(pipeline=pipeline, actor=author))
    with pytest.raises(ValidationError, match="never approved"):
        deployment_rollback(pipeline=pipeline, to_number=unapproved.number, actor=operator)
    assert _live(pipeline).number == 2


def test_rollback_with_nothing_live_or_without_the_right_is_refused(pipeline, author, personas):
    with pytest.raises(ValidationError, match="Nothing is live"):
        deployment_rollback(pipeline=pipeline, to_number=1, actor=author)
    with pytest.raises(PermissionDenied):
        deployment_rollback(pipeline=pipeline, to_number=1, actor=personas["auditor"])


def test_the_rollback_command_moves_production_or_exits_with_the_reason(pipeline, author, operator):
    _three_releases(pipeline, author)
    out = io.StringIO()
    call_command("deploy_rollback", pipeline.slug, "--to", "1", "--user", operator.username, stdout=out)
    assert "release #1 is live" in out.getvalue() and _live(pipeline).number == 1
    with pytest.raises(CommandError, match="not earlier than the live release #1"):
        call_command("deploy_rollback", pipeline.slug, "--to", "3", "--user", "operator")
    with pytest.raises(CommandError, match="no active user"):
        call_command("deploy_rollback", pipeline.slug, "--to", "1", "--user", "nobody")
    with pytest.raises(CommandError, match="No pipeline"):
        call_command("deploy_rollback", "missing", "--to", "1", "--user", "operator")


@pytest.fixture
def capture_callbacks(django_capture_on_commit_callbacks):
    return django_capture_on_commit_callbacks


@pytest.fixture
def webhook_pipeline(pipeline, author, monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "pause-secret")
    with WebhookServer() as server:
        store = pipeline.steps.get(name="store")
        with acting_as(author):
            store.config = {
                "channel": "webhook",
                "url": server.url,
                "credential": factories.credential_in(pipeline.workspace, SECRET_ENV),
            }
            store.save()
        release = release_cut(pipeline=pipeline, actor=author)
        release_to_production(release)
        with acting_as(author):
            deployment_set(release=release, environment="staging", actor=author)
        yield pipeline, server


def test_pause_refuses_new_runs_with_the_reason_and_resume_lets_them_in(webhook_pipeline, operator, capture_callbacks):
    pipeline, _ = webhook_pipeline
    pipeline_pause(pipeline=pipeline, actor=operator, reason="Drafts quote wrong prices")
    with pytest.raises(RunRefused, match="paused in production: Drafts quote wrong prices"):
        run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="api")
    with pytest.raises(ValidationError, match="already paused"):
        pipeline_pause(pipeline=pipeline, actor=operator, reason="again")
    with capture_callbacks(execute=False):
        pipeline_unpause(pipeline=pipeline, actor=operator)
        run, created = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="api")
    assert created
    actions = list(AuditEvent.objects.filter(object_type="pipeline").values_list("action", flat=True))
    assert actions[-2:] == ["pipeline.paused", "pipeline.resumed"]


def test_deliveries_are_held_while_paused_and_sent_on_resume(webhook_pipeline, operator, capture_callbacks):
    pipeline, server = webhook_pipeline
    with capture_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="api")
    pipeline_pause(pipeline=pipeline, actor=operator, reason="incident")
    run = run_execute(run.pk)  # started before the pause: it finishes, but its delivery waits
    assert run.status == Run.Status.COMPLETED
    delivery = Delivery.objects.get(run=run)
    assert delivery.status == Delivery.Status.HELD and server.requests == []
    with capture_callbacks(execute=False) as callbacks:
        assert pipeline_unpause(pipeline=pipeline, actor=operator, reason="fixed") == 1
    assert len(callbacks) == 1  # one resend task, enqueued on commit
    record = delivery_send_held(delivery.pk)
    assert record["status"] == "delivered" and record["delivery_id"] == str(delivery.delivery_id)
    [request] = server.requests
    assert request["headers"]["x-keel-delivery"] == str(delivery.delivery_id)
    assert delivery_send_held(delivery.pk) is None  # sent once; a repeat does nothing


def test_staging_runs_never_deliver_to_external_consumers(webhook_pipeline, capture_callbacks):
    pipeline, server = webhook_pipeline
    with capture_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="cli", environment="staging")
    run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED
    assert server.requests == [] and not Delivery.objects.filter(run=run).exists()
    decision = run.steps.get(name="store").decision
    assert decision["status"] == "withheld" and decision["environment"] == "staging"


def test_the_pause_command_pauses_and_resumes(pipeline, operator, personas):
    release_to_production(release_cut(pipeline=pipeline, actor=personas["author"]))
    out = io.StringIO()
    call_command("pipeline_pause", pipeline.slug, "--reason", "incident 42", "--user", "operator", stdout=out)
    assert "is paused" in out.getvalue()
    assert Deployment.objects.get(pipeline=pipeline, environment="production").pause_reason == "incident 42"
    with pytest.raises(CommandError, match="already paused"):
        call_command("pipeline_pause", pipeline.slug, "--reason", "again", "--user", "operator")
    with pytest.raises(CommandError, match="Refused"):
        call_command("pipeline_pause", pipeline.slug, "--user", "auditor", "--resume")
    call_command("pipeline_pause", pipeline.slug, "--user", "operator", "--resume", stdout=out)
    assert not Deployment.objects.get(pipeline=pipeline, environment="production").paused
    with pytest.raises(CommandError, match="Say why"):
        call_command("pipeline_pause", pipeline.slug, "--user", "operator")


def test_a_run_of_a_rolled_back_release_is_flagged_as_withdrawn(pipeline, author, operator, capture_callbacks):
    from pipelines.releases.pause import run_release_withdrawn

    _three_releases(pipeline, author)
    with capture_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input=TICKET, actor=None, trigger="api")
    assert not run_release_withdrawn(run)
    deployment_rollback(pipeline=pipeline, to_number=1, actor=operator)
    assert run_release_withdrawn(run)
