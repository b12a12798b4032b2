"""The migration that introduces credentials: environment variable names
become credentials of their workspace, and old release snapshots still work."""

import json

import pytest
from django.core.management import call_command
from django.db import connection

from governance.models import Credential
from pipelines.models import ModelConfig, Step
from tests import factories


def _set(table: str, column: str, value: str, pk: int, *, json_value: bool = False) -> None:
    placeholder = "CAST(%s AS jsonb)" if json_value and connection.vendor == "postgresql" else "%s"
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {column} = {placeholder} WHERE id = %s", [value, pk])


@pytest.mark.django_db(transaction=True)
def test_environment_variable_names_become_credentials_of_their_workspace(acme, globex, superuser):
    pipeline = factories.PipelineFactory(workspace=acme, owner=superuser)
    hook = factories.StepFactory(pipeline=pipeline, position=1, kind="deliver", config={"channel": "stored"})
    shared = factories.ModelConfigFactory(workspace=acme, slug="one")
    again = factories.ModelConfigFactory(workspace=acme, slug="two")
    theirs = factories.ModelConfigFactory(workspace=globex, slug="three")
    keyless = factories.ModelConfigFactory(workspace=acme, slug="four")
    call_command("migrate", "pipelines", "0017", verbosity=0)
    call_command("migrate", "governance", "0003", verbosity=0)
    try:
        for model, name in ((shared, "OPENAI_API_KEY"), (again, "OPENAI_API_KEY"), (theirs, "OPENAI_API_KEY")):
            _set("pipelines_modelconfig", "api_key_env", name, model.pk)
        config = {"channel": "webhook", "url": "https://hooks.acme.test/in", "secret_env": "ORDERS_SECRET"}
        _set("pipelines_step", "config", json.dumps(config), hook.pk, json_value=True)
    finally:
        call_command("migrate", verbosity=0)
    acme_key = Credential.objects.get(workspace=acme, env_name="OPENAI_API_KEY")
    assert (acme_key.slug, acme_key.source) == ("openai-api-key", "env")
    assert ModelConfig.objects.get(pk=shared.pk).credential == ModelConfig.objects.get(pk=again.pk).credential
    assert ModelConfig.objects.get(pk=shared.pk).credential == acme_key  # one per variable and workspace
    assert ModelConfig.objects.get(pk=theirs.pk).credential.workspace == globex  # never another workspace's
    assert ModelConfig.objects.get(pk=keyless.pk).credential is None
    orders = Credential.objects.get(workspace=acme, env_name="ORDERS_SECRET")
    assert Step.objects.get(pk=hook.pk).config == {"channel": "webhook", "url": "https://hooks.acme.test/in",
                                                   "credential": orders.slug}  # fmt: skip
