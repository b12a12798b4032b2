"""Bad configuration is refused with a message naming the field, in the model
and through the admin, and nothing is half-saved."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from audit.models import AuditEvent
from pipelines.models import ModelConfig, Pipeline, PromptTemplate, Step
from tests import factories


def errors_of(instance) -> dict:
    with pytest.raises(ValidationError) as caught:
        instance.full_clean()
    return caught.value.message_dict


@pytest.mark.parametrize(
    ("body", "variables", "message"),
    [
        ("Hello {{ name ", ["name"], "Template syntax error on line 1"),
        ("{% if %}x{% endif %}", [], "Template syntax error"),
        ("Hello {{ name }} from {{ company }}", ["name"], "undeclared variables: company"),
    ],
)
def test_a_prompt_with_bad_syntax_or_undeclared_variables_is_refused(acme, body, variables, message):
    prompt = factories.PromptTemplateFactory.build(workspace=acme, owner=acme.owner, body=body, variables=variables)
    assert message in " ".join(errors_of(prompt)["body"])


def test_declared_variables_must_be_names(acme):
    prompt = factories.PromptTemplateFactory.build(workspace=acme, owner=acme.owner, variables=["ok", "not ok"])
    assert "variables" in errors_of(prompt)


def test_a_prompt_renders_in_the_sandbox_and_undefined_variables_are_errors():
    from jinja2.exceptions import SecurityError, UndefinedError

    from pipelines.steps.prompts import render_prompt

    assert render_prompt("Hi {{ name|upper }}", {"name": "ada"}) == "Hi ADA"
    with pytest.raises(UndefinedError):
        render_prompt("Hi {{ name }}", {})
    with pytest.raises(SecurityError):
        render_prompt("{{ ''.__class__.__mro__[1].__subclasses__() }}", {})


def test_an_invalid_input_schema_is_refused(acme):
    pipeline = factories.PipelineFactory.build(workspace=acme, owner=acme.owner, input_schema={"type": "nonsense"})
    assert "Invalid JSON Schema" in errors_of(pipeline)["input_schema"][0]


def test_a_pipeline_cannot_use_another_workspaces_policy(acme, globex):
    policy = factories.ApprovalPolicyFactory(workspace=globex)
    pipeline = factories.PipelineFactory.build(workspace=acme, owner=acme.owner, approval_policy=policy)
    assert "same workspace" in errors_of(pipeline)["approval_policy"][0]


@pytest.mark.parametrize(
    ("kind", "config", "field", "message"),
    [
        ("transform", {}, "config", "'mapping' is a required property"),
        ("transform", {"mapping": {"out": 3}}, "config", "config.mapping.out: 3 is not of type 'string'"),
        ("parse", {"format": "xml"}, "config", "config.format: 'xml' is not one of"),
        ("deliver", {"channel": "webhook"}, "config", "'url' is a required property"),
        ("deliver", {"channel": "webhook", "url": "ftp://x", "secret_env": "K"}, "config", "config.url"),
        ("redact", {"patterns": [{"name": "x", "regex": "("}]}, "config", "not a valid regex"),
        ("validate", {"schema": {"type": 5}}, "config", "Invalid JSON Schema"),
        ("gate", {"surprise": 1}, "config", "Additional properties are not allowed"),
        ("model", {}, "prompt", "needs a prompt template"),
        ("teleport", {}, "kind", "is not a valid choice"),
    ],
)
def test_a_step_config_that_does_not_fit_its_kind_is_refused(acme, kind, config, field, message):
    pipeline = factories.PipelineFactory(workspace=acme, owner=acme.owner)
    step = Step(pipeline=pipeline, position=1, name="s", kind=kind, config=config)
    assert message in " ".join(errors_of(step)[field])


def test_a_step_cannot_use_a_prompt_from_another_workspace(acme, globex):
    pipeline = factories.PipelineFactory(workspace=acme, owner=acme.owner)
    prompt = factories.PromptTemplateFactory(workspace=globex)
    model = factories.ModelConfigFactory(workspace=acme)
    step = Step(pipeline=pipeline, position=1, name="s", kind="model", prompt=prompt, model_config=model)
    assert "pipeline's workspace" in errors_of(step)["prompt"][0]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"provider": "skynet"}, "provider"),
        ({"temperature": "2.5"}, "temperature"),
        ({"top_p": "1.5"}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"timeout_seconds": 601}, "timeout_seconds"),
        ({"provider": "openai", "base_url": "http://models.elsewhere.test"}, "base_url"),
        ({"provider": "openai", "base_url": ""}, "base_url"),
        ({"extra_params": [1, 2]}, "extra_params"),
    ],
)
def test_a_model_config_out_of_range_or_unknown_provider_is_refused(acme, changes, field):
    model = factories.ModelConfigFactory.build(workspace=acme, **changes)
    assert field in errors_of(model)


def test_the_admin_answers_bad_input_with_a_form_error_and_saves_nothing(client, superuser, acme):
    client.force_login(superuser)
    before = (PromptTemplate.objects.count(), AuditEvent.objects.count())
    response = client.post(
        reverse("admin:pipelines_prompttemplate_add"),
        {
            "workspace": acme.pk,
            "slug": "broken",
            "name": "Broken",
            "body": "Hi {{ name",
            "variables": '["name"]',
            "owner": superuser.pk,
        },
    )
    assert response.status_code == 200
    assert "Template syntax error" in response.content.decode()
    assert (PromptTemplate.objects.count(), AuditEvent.objects.count()) == before


def test_a_pipeline_with_a_bad_step_saves_neither_pipeline_nor_steps(client, superuser, acme):
    client.force_login(superuser)
    before = (Pipeline.objects.count(), Step.objects.count(), AuditEvent.objects.count())
    response = client.post(
        reverse("admin:pipelines_pipeline_add"),
        {
            "workspace": acme.pk,
            "name": "Triage",
            "slug": "triage",
            "input_schema": '{"type": "object"}',
            "owner": superuser.pk,
            "steps-TOTAL_FORMS": "1",
            "steps-INITIAL_FORMS": "0",
            "steps-0-position": "1",
            "steps-0-name": "reshape",
            "steps-0-kind": "transform",
            "steps-0-config": "{}",
        },
    )
    assert response.status_code == 200
    assert "mapping" in response.content.decode()
    assert (Pipeline.objects.count(), Step.objects.count(), AuditEvent.objects.count()) == before


def test_model_configs_never_store_keys(acme):
    field_names = {f.name for f in ModelConfig._meta.get_fields()}
    assert "api_key" not in field_names and "api_key_env" not in field_names
    assert ModelConfig._meta.get_field("credential").related_model._meta.label == "governance.Credential"
