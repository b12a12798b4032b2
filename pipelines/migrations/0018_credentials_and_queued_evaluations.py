"""Named credentials replace environment variable names, and evaluations run on a worker.

Each model config's ``api_key_env`` and each webhook step's ``secret_env``
becomes a credential of its workspace mapped to that variable (one per
variable and workspace), and the config or step refers to it. Nothing is
refused here: a credential whose variable the operator has not allow-listed,
or that names Keel's own settings, is refused with its name when it is used,
and a lead fixes it in the admin. Release snapshots are never changed: one
cut before this keeps the variable's name, and is served by the workspace's
credential mapped to it. Evaluations that exist are finished (``done``).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.utils.text import slugify


def _credential_for(Credential, workspace_id: int, env_name: str):
    existing = Credential.objects.filter(workspace_id=workspace_id, source="env", env_name=env_name).first()
    if existing is not None:
        return existing
    base = slugify(env_name.lower().replace("_", "-"))[:90] or "credential"
    slug, n = base, 1
    while Credential.objects.filter(workspace_id=workspace_id, slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return Credential.objects.create(
        workspace_id=workspace_id, slug=slug, name=env_name, source="env", env_name=env_name,
        description="Made from an environment variable name when credentials were introduced.",
    )  # fmt: skip


def to_credentials(apps, schema_editor):
    Credential = apps.get_model("governance", "Credential")
    ModelConfig = apps.get_model("pipelines", "ModelConfig")
    Step = apps.get_model("pipelines", "Step")
    for config in ModelConfig.objects.exclude(api_key_env=""):
        config.credential = _credential_for(Credential, config.workspace_id, config.api_key_env)
        config.save(update_fields=["credential"])
    for step in Step.objects.filter(kind="deliver").select_related("pipeline"):
        config = step.config if isinstance(step.config, dict) else {}
        name = config.get("secret_env")
        if not name:
            continue
        credential = _credential_for(Credential, step.pipeline.workspace_id, name)
        step.config = {**{k: v for k, v in config.items() if k != "secret_env"}, "credential": credential.slug}
        step.save(update_fields=["config"])


def to_env_names(apps, schema_editor):
    ModelConfig = apps.get_model("pipelines", "ModelConfig")
    Step = apps.get_model("pipelines", "Step")
    Credential = apps.get_model("governance", "Credential")
    for config in ModelConfig.objects.exclude(credential=None).select_related("credential"):
        config.api_key_env = config.credential.env_name
        config.save(update_fields=["api_key_env"])
    for step in Step.objects.filter(kind="deliver").select_related("pipeline"):
        config = step.config if isinstance(step.config, dict) else {}
        slug = config.get("credential")
        if not slug:
            continue
        credential = Credential.objects.filter(workspace_id=step.pipeline.workspace_id, slug=slug).first()
        rest = {k: v for k, v in config.items() if k != "credential"}
        step.config = {**rest, "secret_env": credential.env_name if credential else ""}
        step.save(update_fields=["config"])


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0004_credentials_and_allowed_hosts"),
        ("pipelines", "0017_truncate_guards"),
    ]

    operations = [
        migrations.AddField(
            model_name="historicalmodelconfig",
            name="credential",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                help_text="The workspace credential sent as the API key; empty for a server that wants none.",
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to="governance.credential",
            ),  # noqa: E501
        ),
        migrations.AddField(
            model_name="modelconfig",
            name="credential",
            field=models.ForeignKey(
                blank=True,
                help_text="The workspace credential sent as the API key; empty for a server that wants none.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="model_configs",
                to="governance.credential",
            ),  # noqa: E501
        ),
        migrations.RunPython(to_credentials, to_env_names),
        migrations.RemoveField(model_name="historicalmodelconfig", name="api_key_env"),
        migrations.RemoveField(model_name="modelconfig", name="api_key_env"),
        migrations.AddField(
            model_name="evaluation",
            name="done",
            field=models.PositiveIntegerField(default=0, help_text="Cases run so far."),
        ),
        migrations.AddField(model_name="evaluation", name="error", field=models.TextField(blank=True)),
        migrations.AddField(
            model_name="evaluation", name="finished_at", field=models.DateTimeField(blank=True, null=True)
        ),
        # Evaluations made so far ran in the request and are finished.
        migrations.AddField(
            model_name="evaluation",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                default="done",
                max_length=20,
            ),  # noqa: E501
        ),
        migrations.AlterField(
            model_name="evaluation",
            name="status",
            field=models.CharField(
                choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done"), ("failed", "Failed")],
                default="queued",
                max_length=20,
            ),  # noqa: E501
        ),
        migrations.AddField(
            model_name="evaluation",
            name="total",
            field=models.PositiveIntegerField(default=0, help_text="Cases to run."),
        ),
    ]
