import re
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.text import normalize_newlines
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from jinja2 import meta
from simple_history.models import HistoricalRecords

from audit.context import history_user
from governance.egress import url_problem
from governance.models import (
    PIPELINE_RIGHTS,
    ApprovalPolicy,
    Credential,
    Workspace,
    validate_credential_workspace,
    validate_policy_workspace,
)
from pipelines.steps import FIELD_NAME, KIND_CHOICES, KINDS, validate_json_schema, validate_step_config
from pipelines.steps.prompts import check_template, parse_template

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PromptTemplate(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="prompts")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    body = models.TextField(help_text="Jinja2, rendered in a sandbox; every variable must be declared.")
    variables = models.JSONField(default=list, blank=True, help_text='Declared variables, e.g. ["subject", "body"].')
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "prompt"

    class Meta:
        ordering = ["workspace__name", "slug"]
        constraints = [models.UniqueConstraint(fields=["workspace", "slug"], name="prompt_slug_unique_in_workspace")]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def save(self, *args, **kwargs) -> None:
        # A browser sends a textarea's lines ending CRLF; the body is stored with LF
        # only, so the same text always makes the same version and release fingerprint.
        self.body = normalize_newlines(self.body)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.body = normalize_newlines(self.body)
        if not isinstance(self.variables, list) or not all(
            isinstance(v, str) and IDENTIFIER.match(v) for v in self.variables
        ):
            raise ValidationError({"variables": 'Variables must be a list of names such as ["subject", "body"].'})
        check_template(self.body, self.variables)

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id


class PromptTemplateUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE)


class PromptTemplateGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE)


class ModelConfig(models.Model):
    class Provider(models.TextChoices):
        BUILTIN = "builtin", "Built-in deterministic model (no network)"
        OPENAI = "openai", "OpenAI-compatible chat completions"
        ANTHROPIC = "anthropic", "Anthropic Messages API"
        AZURE_OPENAI = "azure_openai", "Azure OpenAI (a deployment of a resource)"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="model_configs")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    provider = models.CharField(max_length=20, choices=Provider.choices)
    model_name = models.CharField(max_length=200)
    model_version = models.CharField(max_length=100, blank=True)
    base_url = models.URLField(
        blank=True,
        help_text="The API's base URL: the chat-completions endpoint's (openai), https://api.anthropic.com "
        "(anthropic), the resource's endpoint https://<resource>.openai.azure.com (azure_openai).",
    )
    deployment = models.CharField(max_length=64, blank=True, help_text="Azure OpenAI: the deployment's name.")
    api_version = models.CharField(
        max_length=40,
        blank=True,
        help_text="Azure OpenAI: the api-version, e.g. 2024-10-21. Anthropic: the anthropic-version "
        "header (empty sends 2023-06-01).",
    )
    temperature = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("2"))],
    )
    top_p = models.DecimalField(
        max_digits=3,
        decimal_places=2,
        default=Decimal("1"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
    )
    max_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(1), MaxValueValidator(200_000)])
    seed = models.BigIntegerField(null=True, blank=True, help_text="A fixed seed; empty derives one per run.")
    timeout_seconds = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1), MaxValueValidator(600)])
    extra_params = models.JSONField(default=dict, blank=True)
    price_input_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    price_output_per_1k = models.DecimalField(
        max_digits=12, decimal_places=6, default=Decimal("0"), validators=[MinValueValidator(Decimal("0"))]
    )
    credential = models.ForeignKey(
        Credential,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="model_configs",
        help_text="The workspace credential sent as the API key; empty for a server that wants none.",
    )

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "model_config"

    class Meta:
        ordering = ["workspace__name", "slug"]
        verbose_name = "model config"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="modelconfig_slug_unique_in_workspace")
        ]

    def __str__(self) -> str:
        version = f"@{self.model_version}" if self.model_version else ""
        return f"{self.name} ({self.provider}:{self.model_name}{version})"

    def clean(self) -> None:
        if not isinstance(self.extra_params, dict):
            raise ValidationError({"extra_params": "Extra parameters must be a JSON object."})
        if self.provider == self.Provider.OPENAI and not self.base_url:
            raise ValidationError({"base_url": "An OpenAI-compatible model needs the endpoint's base URL."})
        if problems := _provider_problems(self):
            raise ValidationError(problems)
        validate_credential_workspace(self.credential, self.workspace_id, "credential")
        if self.base_url and self.workspace_id:
            problem = url_problem(self.base_url, self.workspace.allowed_hosts)
            if problem:
                raise ValidationError({"base_url": problem})

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id


# Azure's deployment names; the API versions both providers date (2024-10-21, 2025-04-01-preview).
DEPLOYMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
API_VERSION = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?$")


def _provider_problems(config: "ModelConfig") -> dict:
    """What the Anthropic and Azure OpenAI providers need that a model config lacks, by field
    (docs/providers.md has the table)."""
    provider, problems = config.provider, {}
    anthropic, azure = provider == ModelConfig.Provider.ANTHROPIC, provider == ModelConfig.Provider.AZURE_OPENAI
    if not (anthropic or azure):
        if config.deployment:
            problems["deployment"] = "Only an Azure OpenAI model names a deployment."
        if config.api_version:
            problems["api_version"] = "Only Azure OpenAI and Anthropic models take an api_version."
        return problems
    if not config.base_url:
        problems["base_url"] = (
            "An Anthropic model needs the API's base URL, e.g. https://api.anthropic.com."
            if anthropic
            else "An Azure OpenAI model needs the resource's endpoint, e.g. https://<resource>.openai.azure.com."
        )
    if config.credential_id is None:
        header = "x-api-key" if anthropic else "api-key"
        problems["credential"] = f"This provider needs the workspace credential holding its API key (sent as {header})."
    if anthropic and config.temperature is not None and config.temperature > 1:
        problems["temperature"] = "Anthropic takes a temperature from 0 to 1."
    if anthropic and config.deployment:
        problems["deployment"] = "Only an Azure OpenAI model names a deployment."
    if azure and not config.deployment:
        problems["deployment"] = "An Azure OpenAI model needs its deployment's name (it chooses the model)."
    elif azure and not DEPLOYMENT.match(config.deployment):
        problems["deployment"] = "A deployment name is up to 64 letters, digits, '.', '_' and '-'."
    if azure and not config.api_version:
        problems["api_version"] = "An Azure OpenAI model needs the api-version, e.g. 2024-10-21."
    elif config.api_version and not API_VERSION.match(config.api_version):
        problems["api_version"] = "An API version is a date, e.g. 2024-10-21 (or 2025-04-01-preview)."
    return problems


class ModelConfigUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(ModelConfig, on_delete=models.CASCADE)


class ModelConfigGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(ModelConfig, on_delete=models.CASCADE)


class PipelinePart:
    """A row that belongs to one pipeline: it carries no rights of its own
    (it answers to its pipeline) and names the pipeline and its workspace in
    the audit trail."""

    permission_parent_field = "pipeline"

    @property
    def audit_workspace_id(self) -> int:
        return self.pipeline.workspace_id

    @property
    def audit_pipeline_id(self) -> int:
        return self.pipeline_id


class Pipeline(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="pipelines")
    slug = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    team = models.ForeignKey(Group, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    escalation_contact = models.EmailField(blank=True)
    runbook = models.TextField(blank=True, help_text="Responsibilities and the escalation path, in Markdown.")
    approval_policy = models.ForeignKey(
        ApprovalPolicy, on_delete=models.PROTECT, null=True, blank=True, related_name="pipelines"
    )
    input_schema = models.JSONField(default=dict, blank=True, help_text="A JSON Schema the run input must satisfy.")
    # The reviewer app's queue names each item by this field of the output under review.
    title_field = models.CharField(
        max_length=100,
        blank=True,
        validators=[RegexValidator(FIELD_NAME, "A field name, such as subject or ticket.title.")],
        help_text="The field a review queue row shows as the item's title (e.g. subject).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "pipeline"

    class Meta:
        ordering = ["workspace__name", "name"]
        permissions = list(PIPELINE_RIGHTS)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        validate_json_schema(self.input_schema, field="input_schema")
        validate_policy_workspace(self.approval_policy, self.workspace_id, "approval_policy")

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id

    @property
    def audit_pipeline_id(self) -> int:
        return self.pk


class PipelineUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Pipeline, on_delete=models.CASCADE)


class PipelineGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Pipeline, on_delete=models.CASCADE)


class Step(PipelinePart, models.Model):
    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=KIND_CHOICES)
    config = models.JSONField(default=dict, blank=True)
    prompt = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, null=True, blank=True, related_name="steps")
    model_config = models.ForeignKey(ModelConfig, on_delete=models.PROTECT, null=True, blank=True, related_name="steps")

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "step"

    class Meta:
        ordering = ["pipeline", "position"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "position"], name="step_position_unique")]

    def __str__(self) -> str:
        return f"{self.position}. {self.name} ({self.kind})"

    def clean(self) -> None:
        if self.kind not in KINDS:
            return  # the choices check already names the field
        validate_step_config(self.kind, self.config)
        kind = KINDS[self.kind]
        errors = {}
        # An e-mail's body is the step's prompt template.
        email = self.kind == "deliver" and self.config.get("channel") == "email"
        needs_prompt = kind.needs_prompt or email
        if needs_prompt and self.prompt_id is None:
            needed = "An e-mail step needs a prompt template (its body)."
            errors["prompt"] = needed if email else f"A {self.kind} step needs a prompt template."
        if kind.needs_model and self.model_config_id is None:
            errors["model_config"] = f"A {self.kind} step needs a model config."
        if not needs_prompt and self.prompt_id is not None:
            errors["prompt"] = f"A {self.kind} step takes no prompt template."
        if not kind.needs_model and self.model_config_id is not None:
            errors["model_config"] = f"A {self.kind} step takes no model config."
        workspace_id = self.pipeline.workspace_id if self.pipeline_id else None
        for field, model, noun in (
            ("prompt", PromptTemplate, "prompt template"),
            ("model_config", ModelConfig, "model config"),
        ):
            related_id = getattr(self, f"{field}_id")
            if related_id is None or workspace_id is None or field in errors:
                continue
            # Looked up rather than followed: a revert may name one deleted since.
            related = model.objects.filter(pk=related_id).values_list("workspace_id", flat=True).first()
            if related is None:
                errors[field] = f"The {noun} #{related_id} no longer exists."
            elif related != workspace_id:
                errors[field] = f"The {noun} must belong to the pipeline's workspace."
        if not errors and self.kind == "deliver" and self.config.get("channel") == "webhook":
            # Followed rather than read from pipeline_id: a step added with a new pipeline has no id yet.
            try:
                workspace = self.pipeline.workspace
            except (Pipeline.DoesNotExist, Workspace.DoesNotExist):
                workspace = None
            if workspace is not None:
                errors.update(_webhook_problems(self.config, workspace))
        if not errors and email:
            errors.update(_subject_problems(self.config["subject"], self.prompt_id))
        if errors:
            raise ValidationError(errors)


def _subject_problems(subject: str, prompt_id: int) -> dict:
    """An e-mail's subject renders over its prompt's variables: it may use no other."""
    declared = PromptTemplate.objects.filter(pk=prompt_id).values_list("variables", flat=True).first() or []
    undeclared = sorted(meta.find_undeclared_variables(parse_template(subject, field="config")) - set(declared))
    if undeclared:
        return {"config": f"config.subject uses variables its prompt does not declare: {', '.join(undeclared)}."}
    return {}


def _webhook_problems(config: dict, workspace: Workspace) -> dict:
    """A webhook step's URL must be one its workspace may reach, and its
    credential one of the workspace's own."""
    problems = []
    problem = url_problem(config["url"], workspace.allowed_hosts)
    if problem:
        problems.append(f"config.url: {problem}")
    if not Credential.objects.filter(workspace=workspace, slug=config["credential"]).exists():
        problems.append(f"config.credential: the workspace has no credential {config['credential']!r}.")
    return {"config": problems} if problems else {}
