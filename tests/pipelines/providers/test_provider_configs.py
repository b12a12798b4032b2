"""Model configs of the anthropic and azure_openai providers: what each needs is
refused by field when missing, released as set, and a run on each calls its
loopback server, records the exchange and replays from it."""

import pytest
from django.core.exceptions import ValidationError

from audit.context import acting_as
from audit.selectors import audit_chain_verify
from pipelines.models import ModelConfig, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from pipelines.runs.replay import run_replay
from tests import factories
from tests.pipelines.provider_servers import AnthropicServer, AzureServer, anthropic_message, azure_completion
from tests.releasing import release_to_production

KEY = "provider-config-test-key-0123456789"


@pytest.fixture
def credential(acme, monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    return factories.CredentialFactory(workspace=acme, slug="provider", env_name="TEST_PROVIDER_KEY")


def errors_of(config: ModelConfig) -> dict:
    with pytest.raises(ValidationError) as caught:
        config.full_clean()
    return caught.value.message_dict


def config(acme, **fields) -> ModelConfig:
    defaults = {"workspace": acme, "slug": "m", "name": "M", "model_name": "x", "base_url": "http://127.0.0.1:9/"}
    return ModelConfig(**{**defaults, **fields})


def test_azure_needs_a_deployment_and_an_api_version(acme, credential):
    errors = errors_of(config(acme, provider="azure_openai", credential=credential))

    assert errors["deployment"] == ["An Azure OpenAI model needs its deployment's name (it chooses the model)."]
    assert errors["api_version"] == ["An Azure OpenAI model needs the api-version, e.g. 2024-10-21."]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"deployment": "my deployment", "api_version": "2024-10-21"}, "deployment", "letters, digits"),
        ({"deployment": "prod", "api_version": "latest"}, "api_version", "is a date"),
        ({"deployment": "prod", "api_version": "2024-10-21", "base_url": ""}, "base_url", "resource's endpoint"),
    ],
)
def test_an_azure_setting_in_the_wrong_form_is_named(acme, credential, fields, field, words):
    errors = errors_of(config(acme, provider="azure_openai", credential=credential, **fields))

    assert words in " ".join(errors[field])


def test_anthropic_needs_a_base_url_a_credential_and_a_temperature_up_to_one(acme):
    errors = errors_of(config(acme, provider="anthropic", base_url="", temperature="1.5"))

    assert "https://api.anthropic.com" in errors["base_url"][0]
    assert "x-api-key" in errors["credential"][0]
    assert errors["temperature"] == ["Anthropic takes a temperature from 0 to 1."]


def test_anthropic_needs_max_tokens(acme, credential):
    errors = errors_of(config(acme, provider="anthropic", credential=credential, max_tokens=None))

    assert "max_tokens" in errors


@pytest.mark.parametrize("provider", ["openai", "builtin"])
def test_a_deployment_or_api_version_is_refused_where_the_provider_takes_none(acme, provider):
    errors = errors_of(config(acme, provider=provider, deployment="prod", api_version="2024-10-21"))

    assert errors["deployment"] == ["Only an Azure OpenAI model names a deployment."]
    assert errors["api_version"] == ["Only Azure OpenAI and Anthropic models take an api_version."]


def test_valid_configs_of_each_provider_pass(acme, credential):
    config(acme, provider="anthropic", credential=credential, api_version="2023-06-01").full_clean()
    config(acme, provider="azure_openai", credential=credential, deployment="gpt-4o.prod_1",
           api_version="2025-04-01-preview").full_clean()  # fmt: skip


def _pipeline(acme, superuser, model: ModelConfig):
    prompt = factories.PromptTemplateFactory(workspace=acme, body="Classify: {{ subject }}", variables=["subject"])
    pipeline = factories.PipelineFactory(workspace=acme)
    steps = [
        ("classify", "model", {"output_field": "classification"}, prompt, model),
        ("parse", "parse", {"format": "label_confidence", "input_field": "classification"}, None, None),
    ]
    for position, (name, kind, step_config, step_prompt, step_model) in enumerate(steps, start=1):
        factories.StepFactory(pipeline=pipeline, position=position, name=name, kind=kind, config=step_config,
                              prompt=step_prompt, model_config=step_model)  # fmt: skip
    return pipeline


def _run(pipeline, django_capture_on_commit_callbacks) -> Run:
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=pipeline, input={"subject": "Charged twice"}, actor=None, trigger="cli")
    run_execute(run.pk)
    run.refresh_from_db()
    return run


def test_a_run_on_anthropic_records_the_exchange_and_replays_without_a_call(
    acme, superuser, credential, django_capture_on_commit_callbacks
):
    with AnthropicServer(KEY) as server, acting_as(superuser):
        model = ModelConfig.objects.create(workspace=acme, slug="claude", name="Claude", provider="anthropic",
                                           model_name="claude-sonnet-4-5", base_url=server.base_url,
                                           credential=credential, max_tokens=256, price_input_per_1k="3",
                                           price_output_per_1k="15")  # fmt: skip
        pipeline = _pipeline(acme, superuser, model)
        release = release_cut(pipeline=pipeline, actor=superuser)
        release_to_production(release, actor=superuser)
        assert "deployment" not in release.snapshot_data["steps"][0]["model"]
        server.script = [anthropic_message("label: billing\nconfidence: 0.93", input_tokens=100, output_tokens=10)]

        run = _run(pipeline, django_capture_on_commit_callbacks)

        assert run.status == Run.Status.COMPLETED and run.output["label"] == "billing"
        step = StepRun.objects.get(run=run, position=1)
        (recording,) = step.recordings
        assert recording["request"]["provider"] == "anthropic"
        assert recording["request_body"] == server.requests[0]["body"]
        assert (step.input_tokens, step.output_tokens) == (100, 10)
        assert float(step.cost) == pytest.approx(0.45)
        assert KEY not in str(recording)
        report = run_replay(run)
        assert report.ok, report.problems
        assert len(server.requests) == 1
    assert audit_chain_verify().ok


def test_a_run_on_azure_releases_its_deployment_and_records_it(
    acme, superuser, credential, django_capture_on_commit_callbacks
):
    with AzureServer(KEY, "gpt-4o-mini-prod") as server, acting_as(superuser):
        model = ModelConfig.objects.create(workspace=acme, slug="azure", name="Azure", provider="azure_openai",
                                           model_name="gpt-4o-mini", base_url=server.base_url, credential=credential,
                                           deployment="gpt-4o-mini-prod", api_version="2024-10-21")  # fmt: skip
        pipeline = _pipeline(acme, superuser, model)
        release = release_cut(pipeline=pipeline, actor=superuser)
        release_to_production(release, actor=superuser)
        released = release.snapshot_data["steps"][0]["model"]
        assert (released["deployment"], released["api_version"]) == ("gpt-4o-mini-prod", "2024-10-21")
        server.script = [azure_completion("label: refund\nconfidence: 0.88")]

        run = _run(pipeline, django_capture_on_commit_callbacks)

        assert run.status == Run.Status.COMPLETED and run.output["label"] == "refund"
        (recording,) = StepRun.objects.get(run=run, position=1).recordings
        assert (recording["request"]["deployment"], recording["request"]["api_version"]) == (
            "gpt-4o-mini-prod",
            "2024-10-21",
        )
        assert server.requests[0]["path"].endswith("?api-version=2024-10-21")
        assert run_replay(run).ok
        assert len(server.requests) == 1
