"""No secret reaches a listener through anything a prompt engineer can build.

A real chat-completions server on 127.0.0.1 stands for "a URL of the
attacker's choosing". Prompt engineers edit model configs and steps, and start
evaluations; governance leads manage credentials and the workspace's allowed
hosts; the operator allows loopback only in the tests that say so. Each attack
is tried where the admin takes it (refused on save, naming the field) and, for
rows already stored, where the call is made (a recorded failure, nothing sent).
"""

import json

import pytest
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from governance.models import Credential, Workspace
from pipelines.models import Delivery, EvaluationCase, EvaluationResult, ModelConfig, Pipeline, Run, Step, StepRun
from pipelines.providers import openai as provider
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from tests import factories
from tests.pipelines.chat_server import ChatServer, Reply, completion
from tests.pipelines.webhook_server import WebhookServer
from tests.releasing import classifier_pipeline, evaluate_now, release_to_production

ACME_KEY = "acme-provider-key-0123456789"
GLOBEX_KEY = "globex-provider-key-0123456789"
SERVER_SECRET = "the-servers-own-secret-key-0123456789"


@pytest.fixture(autouse=True)
def secrets_in_the_environment(monkeypatch, settings):
    monkeypatch.setenv("TEST_ACME_KEY", ACME_KEY)
    monkeypatch.setenv("TEST_GLOBEX_KEY", GLOBEX_KEY)
    monkeypatch.setenv("SECRET_KEY", SERVER_SECRET)
    monkeypatch.setenv("KEEL_CHECKPOINT_KEY", SERVER_SECRET)
    settings.SECRET_KEY = SERVER_SECRET
    monkeypatch.setattr(provider, "BACKOFF_BASE_SECONDS", 0.0)


@pytest.fixture
def listener():
    with ChatServer() as server:
        yield server


@pytest.fixture
def credentials(acme, globex, superuser):
    """Each workspace's provider key, made by a superuser (as a lead would)."""
    with acting_as(superuser):
        return {
            "acme": factories.CredentialFactory(workspace=acme, slug="provider", env_name="TEST_ACME_KEY"),
            "globex": factories.CredentialFactory(workspace=globex, slug="globex-provider", env_name="TEST_GLOBEX_KEY"),
        }


def _no_secret_received(server) -> None:
    sent = json.dumps(server.requests, default=str)
    for secret in (ACME_KEY, GLOBEX_KEY, SERVER_SECRET):
        assert secret not in sent


def _allow(workspace: Workspace, hosts: list[str]) -> None:
    Workspace.objects.filter(pk=workspace.pk).update(allowed_hosts=hosts)
    workspace.allowed_hosts = hosts


def _model_form(acme, **fields) -> dict:
    return {"workspace": acme.pk, "slug": "attack", "name": "Attack", "provider": "openai", "model_name": "gpt",
            "model_version": "", "temperature": "0", "top_p": "1", "max_tokens": "64", "seed": "",
            "timeout_seconds": "5", "extra_params": "{}", "price_input_per_1k": "0", "price_output_per_1k": "0",
            "credential": "", **fields}  # fmt: skip


def _port(server) -> int:
    return int(server.base_url.split(":")[2].split("/")[0])


ATTACKS = {
    # (the URL, the hosts the workspace allows, the networks the operator allows, the field refused)
    "a loopback URL the workspace does not allow": ("http://127.0.0.1:{port}/v1", ["api.acme.test"],
                                                    ["127.0.0.1/32"], "not among the workspace"),
    "a name that resolves to loopback": ("http://localhost:{port}/v1", ["localhost"], [], "loopback"),
    "an allowed host in the userinfo": ("http://api.acme.test@127.0.0.1:{port}/v1", ["api.acme.test", "127.0.0.1"],
                                        ["127.0.0.1/32"], "user name or password"),
    "IPv6 loopback": ("http://[::1]:{port}/v1", ["::1"], [], "loopback"),
    "the loopback address as a number": ("http://2130706433:{port}/v1", ["api.acme.test"], ["127.0.0.1/32"],
                                          "Enter a valid URL"),
    "cloud metadata (link-local)": ("http://169.254.169.254/latest", ["169.254.169.254"], [], "link-local"),
    "a private address": ("http://10.0.0.7:{port}/v1", ["10.0.0.7"], [], "private"),
}  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_prompt_engineer_cannot_point_a_model_config_with_a_key_at_a_url_of_their_choosing(
    client, settings, acme, author, credentials, listener, attack
):
    url, hosts, networks, reason = ATTACKS[attack]
    _allow(acme, hosts)
    settings.KEEL_EGRESS_ALLOW_PRIVATE = networks
    client.force_login(author)
    form = _model_form(acme, base_url=url.format(port=_port(listener)), credential=credentials["acme"].pk)
    page = client.post(reverse("admin:pipelines_modelconfig_add"), form)
    assert page.status_code == 200 and reason in page.content.decode()
    assert not ModelConfig.objects.filter(slug="attack").exists()
    assert listener.requests == []


def test_a_prompt_engineer_cannot_use_another_workspaces_credential(client, acme, author, credentials, listener):
    client.force_login(author)
    form = _model_form(acme, base_url=listener.base_url, credential=credentials["globex"].pk)
    page = client.post(reverse("admin:pipelines_modelconfig_add"), form)
    assert page.status_code == 200 and "Select a valid choice" in page.content.decode()
    model = ModelConfig(workspace=acme, slug="attack", name="Attack", provider="openai", model_name="gpt",
                        credential=credentials["globex"], base_url=listener.base_url)  # fmt: skip
    with pytest.raises(Exception) as raised:
        model.full_clean()
    assert "credential" in raised.value.message_dict
    assert listener.requests == []


def test_a_prompt_engineer_cannot_create_a_credential_at_all(client, author):
    client.force_login(author)
    response = client.post(reverse("admin:governance_credential_add"),
                           {"name": "k", "slug": "k", "source": "env", "env_name": "TEST_ACME_KEY"})  # fmt: skip
    assert response.status_code == 403 and not Credential.objects.exists()


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"url": "{listener}", "credential": "provider"}, "not among the workspace's allowed hosts"),
        ({"url": "https://api.acme.test/hook", "credential": "globex-provider"}, "no credential 'globex-provider'"),
        ({"url": "https://api.acme.test/hook", "secret_env": "SECRET_KEY"}, "secret_env"),
        ({"url": "https://api.acme.test@127.0.0.1/hook", "credential": "provider"}, "user name or password"),
    ],
)
def test_a_prompt_engineer_cannot_build_a_webhook_step_that_signs_for_a_url_of_their_choosing(
    acme, author, credentials, listener, config, reason
):
    _allow(acme, ["api.acme.test"])
    pipeline = factories.PipelineFactory(workspace=acme, owner=author)
    config = {"channel": "webhook", **config, "url": config["url"].format(listener=listener.base_url)}
    step = Step(pipeline=pipeline, position=1, name="hook", kind="deliver", config=config)
    with pytest.raises(Exception) as raised:
        step.full_clean()
    assert reason in " ".join(raised.value.message_dict["config"])
    assert listener.requests == []


@pytest.fixture
def pipeline(acme, superuser, author, credentials, listener):
    """A model step on an OpenAI-compatible model on the listener (allowed by
    the lead and the operator) whose text is the output, with one evaluation case."""
    _allow(acme, ["127.0.0.1"])
    pipeline = classifier_pipeline(acme, actor=superuser)
    pipeline.steps.filter(name="parse").delete()
    pipeline.steps.filter(name="store").update(position=2)
    ModelConfig.objects.filter(steps__pipeline=pipeline).update(
        provider="openai", model_name="gpt", base_url=listener.base_url, credential=credentials["acme"]
    )
    EvaluationCase.objects.create(pipeline=pipeline, name="parcel", input={"subject": "Parcel late"})
    return Pipeline.objects.get(pk=pipeline.pk)


def _evaluate(pipeline, author) -> EvaluationResult:
    evaluation = evaluate_now(release=release_cut(pipeline=pipeline, actor=author), actor=author)
    return evaluation.results.get()


def test_a_lead_built_allowed_configuration_sends_the_key_and_records_nothing_of_it(pipeline, author, listener):
    # The model echoes the key it was sent, in its text and elsewhere in its reply.
    echo = completion(f"You sent {ACME_KEY}")
    echo.body["system_fingerprint"] = ACME_KEY
    listener.script = [echo]
    result = _evaluate(pipeline, author)
    [received] = listener.requests
    assert received["headers"]["authorization"] == f"Bearer {ACME_KEY}"
    assert ACME_KEY not in json.dumps(result.output) and "[redacted]" in json.dumps(result.output)
    assert not AuditEvent.objects.filter(payload__contains=ACME_KEY).exists()


def test_a_run_records_its_model_call_scrubbed_of_the_key_even_when_it_fails(
    pipeline, author, listener, django_capture_on_commit_callbacks
):
    listener.script = [completion(f"echo: {ACME_KEY}")] * 2
    release_to_production(release_cut(pipeline=pipeline, actor=author))
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input={"subject": "Parcel late"}, actor=None, trigger="cli")
    run = run_execute(run.pk)
    listener.script = [Reply(status=400, body=f"bad key {ACME_KEY}".encode())]
    with django_capture_on_commit_callbacks(execute=False):
        failing, _ = run_start(pipeline=pipeline, input={"subject": "Refund"}, actor=None, trigger="cli")
    failing = run_execute(failing.pk)
    assert failing.status == Run.Status.FAILED and "[redacted]" in failing.failure_reason
    stored = json.dumps([list(StepRun.objects.values("recordings", "output", "error")),
                         list(Run.objects.values("output", "failure_reason"))], default=str)  # fmt: skip
    assert ACME_KEY not in stored and "[redacted]" in stored
    assert not AuditEvent.objects.filter(payload__contains=ACME_KEY).exists()


def test_stored_rows_that_name_another_workspaces_credential_or_keels_settings_are_refused_when_called(
    pipeline, acme, author, credentials, listener
):
    model = ModelConfig.objects.get(steps__pipeline=pipeline)
    # Written around validation, as a row stored before the rules (or by hand) would be.
    ModelConfig.objects.filter(pk=model.pk).update(credential=credentials["globex"])
    result = _evaluate(pipeline, author)
    assert "has no credential 'globex-provider'" in result.failures[0]
    sneaky = Credential.objects.create(workspace=acme, slug="sneaky", name="s", env_name="SECRET_KEY")
    ModelConfig.objects.filter(pk=model.pk).update(credential=sneaky, name="sneaky")
    model.refresh_from_db()
    with acting_as(author):
        model.save()  # a new version, so a new release can be cut
    result = _evaluate(pipeline, author)
    assert "SECRET_KEY is part of Keel's own configuration" in result.failures[0]
    assert listener.requests == []


def test_a_release_cut_before_credentials_cannot_name_a_keel_setting(pipeline, acme, author, listener):
    from pipelines.providers import call_model
    from pipelines.steps import execute_step
    from pipelines.steps.base import StepContext, StepError

    step = release_cut(pipeline=pipeline, actor=author).snapshot_data["steps"][0]
    del step["model"]["credential"]
    step["model"]["api_key_env"] = "SECRET_KEY"  # the shape of a snapshot cut before credentials
    ctx = StepContext(run_id=0, pipeline_slug=pipeline.slug, step_position=1, seed=1, step=step, policy=None,
                      input_schema={}, call_model=call_model, workspace_id=acme.pk)  # fmt: skip
    with pytest.raises(StepError, match="no credential for the environment variable SECRET_KEY"):
        execute_step("model", {"subject": "Parcel late"}, ctx)
    assert listener.requests == []


def test_a_url_allowed_when_saved_is_refused_at_call_time_once_the_policy_no_longer_allows_it(
    pipeline, settings, acme, author, listener
):
    release = release_cut(pipeline=pipeline, actor=author)
    settings.KEEL_EGRESS_ALLOW_PRIVATE = []
    result = evaluate_now(release=release, actor=author).results.get()
    assert "egress refused" in result.failures[0] and "loopback" in result.failures[0]
    settings.KEEL_EGRESS_ALLOW_PRIVATE = ["127.0.0.1/32"]
    _allow(acme, ["api.acme.test"])
    result = evaluate_now(release=release, actor=author).results.get()
    assert "not among the workspace's allowed hosts" in result.failures[0]
    assert listener.requests == []


def test_a_stored_webhook_step_to_a_url_or_credential_not_allowed_sends_nothing(
    acme, superuser, author, credentials, monkeypatch, django_capture_on_commit_callbacks
):
    from pipelines.delivery import webhooks as deliveries

    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)
    _allow(acme, ["127.0.0.1"])
    with WebhookServer() as receiver:
        pipeline = classifier_pipeline(acme, actor=superuser, slug="acme-hook")
        store = pipeline.steps.get(name="store")
        with acting_as(superuser):
            store.config = {"channel": "webhook", "url": receiver.url, "credential": "provider"}
            store.full_clean()
            store.save()
        release_to_production(release_cut(pipeline=pipeline, actor=author))
        _allow(acme, ["api.acme.test"])  # the lead narrows the hosts after the release went out
        with django_capture_on_commit_callbacks(execute=False):
            run, _ = run_start(pipeline=pipeline, input={"subject": "Parcel late"}, actor=None, trigger="cli")
        run = run_execute(run.pk)
        assert run.status == Run.Status.FAILED and "egress refused" in run.failure_reason
        delivery = Delivery.objects.get(run=run)
        assert delivery.status == "failed" and "not among the workspace's allowed hosts" in delivery.last_error
        assert receiver.requests == []


def test_a_webhook_receiver_echoing_the_signing_secret_leaves_no_trace_of_it(
    acme, superuser, author, credentials, monkeypatch, django_capture_on_commit_callbacks
):
    from pipelines.delivery import webhooks as deliveries
    from tests.pipelines.webhook_server import Answer

    monkeypatch.setattr(deliveries, "BACKOFF_BASE_SECONDS", 0.0)
    with WebhookServer() as receiver:
        receiver.script = [Answer(status=400, body=f"bad signature for {ACME_KEY}".encode(),
                                  headers={"X-Receiver": f"orders {ACME_KEY}"})]  # fmt: skip
        pipeline = classifier_pipeline(acme, actor=superuser, slug="acme-echo")
        store = pipeline.steps.get(name="store")
        with acting_as(superuser):
            store.config = {"channel": "webhook", "url": receiver.url, "credential": "provider"}
            store.full_clean()
            store.save()
        release_to_production(release_cut(pipeline=pipeline, actor=author))
        with django_capture_on_commit_callbacks(execute=False):
            run, _ = run_start(pipeline=pipeline, input={"subject": "Parcel late"}, actor=None, trigger="cli")
        run = run_execute(run.pk)
        assert len(receiver.requests) == 1 and ACME_KEY not in json.dumps(receiver.requests, default=str)
    delivery = Delivery.objects.get(run=run)
    assert "[redacted]" in delivery.last_error and ACME_KEY not in delivery.last_error + delivery.receiver
    assert not AuditEvent.objects.filter(payload__contains=ACME_KEY).exists()


def test_a_webhook_step_added_with_a_new_pipeline_is_checked_too(client, acme, author, credentials, listener):
    _allow(acme, ["api.acme.test"])
    client.force_login(author)
    form = {
        "workspace": acme.pk,
        "name": "Hook",
        "slug": "hook",
        "input_schema": '{"type": "object"}',
        "owner": author.pk,
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-0-position": "1",
        "steps-0-name": "hook",
        "steps-0-kind": "deliver",
        "steps-0-config": json.dumps({"channel": "webhook", "url": listener.base_url, "credential": "provider"}),
    }
    page = client.post(reverse("admin:pipelines_pipeline_add"), form)  # fmt: skip
    assert page.status_code == 200 and "not among the workspace&#x27;s allowed hosts" in page.content.decode()
    assert not Pipeline.objects.filter(slug="hook").exists()
