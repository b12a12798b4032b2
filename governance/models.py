from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from audit.context import history_user
from governance.credential_sources import env_name_problem, file_name_problem
from governance.egress import allowed_hosts_problems
from governance.rules import validate_rules

# Rights that can be granted on a pipeline, or on a workspace for every pipeline in it.
PIPELINE_RIGHTS = (
    ("approve_release", "Approve releases"),
    ("deploy_pipeline", "Deploy, roll back and pause"),
    ("review_output", "Review outputs"),
    ("view_audit", "Read the audit trail"),
)


class Workspace(models.Model):
    """A client of an agency, or a small business's own space. A right granted
    on a workspace applies to everything in it."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    description = models.TextField(blank=True)
    allowed_hosts = models.JSONField(
        default=list,
        blank=True,
        help_text='Hosts its model calls and webhooks may reach, e.g. ["api.openai.com", "*.example.com"]; '
        "none when empty. Private and loopback addresses need the operator's KEEL_EGRESS_ALLOW_PRIVATE too.",
    )
    change_reason_required = models.BooleanField(
        default=False,
        verbose_name="change reasons required",
        help_text="Every edit of this workspace's configuration must say why (the reason goes into the history "
        "and the audit trail); otherwise a reason is asked for but optional.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "workspace"

    class Meta:
        ordering = ["name"]
        permissions = [
            ("change_config", "Change pipelines, prompts, model configs and policies"),
            *PIPELINE_RIGHTS,
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        problems = allowed_hosts_problems(self.allowed_hosts)
        if problems:
            raise ValidationError({"allowed_hosts": problems})
        self.allowed_hosts = [host.lower() for host in self.allowed_hosts]

    @property
    def audit_workspace_id(self) -> int:
        return self.pk


class WorkspaceUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class WorkspaceGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class Credential(models.Model):
    """A named key or signing secret of a workspace: where its value lives (an
    environment variable the operator allow-lists, or a file in the operator's
    credential directory), never the value. Model configs and webhook steps of
    the workspace refer to it by its slug; only a governance lead of the
    workspace, or a superuser, manages one."""

    class Source(models.TextChoices):
        ENV = "env", "Environment variable"
        FILE = "file", "File in the credential directory"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="credentials")
    slug = models.SlugField(max_length=100)
    name = models.CharField(max_length=200)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.ENV)
    env_name = models.CharField(
        "environment variable",
        max_length=100,
        blank=True,
        help_text="The variable that holds the value; it must be in KEEL_CREDENTIAL_ENV_ALLOWLIST.",
    )
    file_name = models.CharField(
        max_length=200, blank=True, help_text="The file in KEEL_CREDENTIAL_FILE_DIR that holds the value."
    )
    description = models.TextField(blank=True)

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "credential"
    permission_parent_field = "workspace"

    class Meta:
        ordering = ["workspace__name", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "slug"], name="credential_slug_unique_in_workspace")
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.slug})"

    def clean(self) -> None:
        if self.source == self.Source.ENV:
            problem, field = env_name_problem(self.env_name), "env_name"
            self.file_name = ""
        else:
            problem, field = file_name_problem(self.file_name), "file_name"
            self.env_name = ""
        if problem:
            raise ValidationError({field: problem})

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id


def validate_credential_workspace(credential: Credential | None, workspace_id: int | None, field: str) -> None:
    if credential is not None and workspace_id is not None and credential.workspace_id != workspace_id:
        raise ValidationError({field: "The credential must belong to the same workspace."})


class ApprovalPolicy(models.Model):
    """When a person must see an output before it goes out."""

    class ReviewMode(models.TextChoices):
        ALWAYS = "always", "Always (pre-publication review of every output)"
        EXCEPTIONS = "exceptions", "Exceptions (low confidence or a rule matches)"
        NEVER = "never", "Never"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="approval_policies")
    name = models.CharField(max_length=200)
    review_mode = models.CharField(max_length=20, choices=ReviewMode.choices, default=ReviewMode.EXCEPTIONS)
    confidence_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.800"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Outputs below this confidence go to review (0 to 1).",
    )
    rules = models.JSONField(
        default=list,
        blank=True,
        help_text='Rules that force review, e.g. [{"field": "label", "operator": "eq", "value": "refund"}].',
    )
    sample_rate = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal("0.050"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text="Share of passed outputs copied to a non-blocking QA review (0 to 1).",
    )
    required_approvals = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="Distinct reviewers who must approve (1 to 3).",
    )
    review_deadline_hours = models.PositiveIntegerField(
        default=24,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 30)],
        help_text="Hours before an open review is escalated (1 to 720).",
    )

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "policy"
    # A policy carries no rights of its own: it answers to its workspace.
    permission_parent_field = "workspace"

    class Meta:
        ordering = ["workspace__name", "name"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="policy_name_unique_in_workspace"),
            models.CheckConstraint(
                condition=models.Q(confidence_threshold__gte=0, confidence_threshold__lte=1),
                name="policy_confidence_0_1",
            ),
            models.CheckConstraint(
                condition=models.Q(sample_rate__gte=0, sample_rate__lte=1), name="policy_sample_rate_0_1"
            ),
            models.CheckConstraint(
                condition=models.Q(required_approvals__gte=1, required_approvals__lte=3),
                name="policy_approvals_1_3",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.workspace})"

    def clean(self) -> None:
        validate_rules(self.rules)

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id


def validate_policy_workspace(policy: ApprovalPolicy | None, workspace_id: int | None, field: str) -> None:
    if policy is not None and workspace_id is not None and policy.workspace_id != workspace_id:
        raise ValidationError({field: "The approval policy must belong to the same workspace."})


def _rate_field(default: str, help_text: str) -> models.DecimalField:
    return models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default=Decimal(default),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("1"))],
        help_text=help_text,
    )


class ChangePolicy(models.Model):
    """What a release must pass before it reaches production, and when a
    canary rolls itself back. One per pipeline, else the workspace's own
    (``pipeline`` empty); a pipeline with neither gets the defaults below.

    Release control always reads the pipeline's current policy, never anything
    stored in the candidate release, so a release cannot lower its own bar.
    Only a governance lead changes one (the admin and ``change_policy_for``'s
    callers check that).
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="change_policies")
    # By name, not import: governance sits below pipelines (DESIGN.md "Layers").
    pipeline = models.OneToOneField(
        "pipelines.Pipeline",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="change_policy",
        help_text="Empty: the workspace's policy, for every pipeline without one of its own.",
    )
    approvals_required = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(3)],
        help_text="Distinct approvers a release needs (1 to 3); never its author or its editors.",
    )
    min_pass_rate = _rate_field("1.000", "Share of evaluation cases a release must pass (0 to 1).")
    block_regressions = models.BooleanField(
        default=True, help_text="Refuse a release that fails a case the production release passes."
    )
    canary_max_failure_rate = _rate_field("0.100", "A canary failing more runs than this rolls back (0 to 1).")
    canary_max_rejection_rate = _rate_field(
        "0.200", "A canary whose outputs reviewers reject more often than this rolls back (0 to 1)."
    )
    canary_min_runs = models.PositiveIntegerField(
        default=20,
        validators=[MinValueValidator(1), MaxValueValidator(100_000)],
        help_text="Finished canary runs needed before it is judged.",
    )
    notify = models.JSONField(
        default=list, blank=True, help_text='E-mail addresses told of an automatic rollback, e.g. ["oncall@acme.test"].'
    )

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "change_policy"
    permission_parent_field = "workspace"

    class Meta:
        ordering = ["workspace__name", "pk"]
        verbose_name_plural = "change policies"
        constraints = [
            models.UniqueConstraint(
                fields=["workspace"], condition=models.Q(pipeline=None), name="change_policy_one_per_workspace"
            ),
            models.CheckConstraint(
                condition=models.Q(approvals_required__gte=1, approvals_required__lte=3),
                name="change_policy_approvals_1_3",
            ),
            models.CheckConstraint(
                condition=models.Q(min_pass_rate__gte=0, min_pass_rate__lte=1), name="change_policy_pass_rate_0_1"
            ),
        ]

    def __str__(self) -> str:
        scope = f"pipeline {self.pipeline.slug}" if self.pipeline_id else "workspace default"
        return f"Change policy: {scope} ({self.workspace})" if self.workspace_id else "Change policy (defaults)"

    def clean(self) -> None:
        from django.core.validators import validate_email

        if not isinstance(self.notify, list) or not all(isinstance(a, str) for a in self.notify):
            raise ValidationError({"notify": 'List e-mail addresses, e.g. ["oncall@acme.test"].'})
        for address in self.notify:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError({"notify": f"{address!r} is not an e-mail address."}) from None
        if self.pipeline_id and self.workspace_id and self.pipeline.workspace_id != self.workspace_id:
            raise ValidationError({"pipeline": "The pipeline must belong to the policy's workspace."})

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id

    @property
    def audit_pipeline_id(self) -> int | None:
        return self.pipeline_id


def change_policy_for(pipeline) -> ChangePolicy:
    """The change policy that governs ``pipeline`` now: its own, else its
    workspace's, else an unsaved policy with the defaults."""
    policies = {p.pipeline_id: p for p in ChangePolicy.objects.filter(workspace_id=pipeline.workspace_id)
                .filter(models.Q(pipeline_id=pipeline.pk) | models.Q(pipeline=None))}  # fmt: skip
    return policies.get(pipeline.pk) or policies.get(None) or ChangePolicy(workspace_id=pipeline.workspace_id)


# --- Service accounts (issue 15, point 2) -------------------------------------------------------


class ServiceAccount(models.Model):
    """A user that is not a person: the identity a business system's API token
    acts as, in one workspace. It has no sign-in (an unusable password, and
    the authentication backend refuses it whatever its flags say); a
    governance lead of its workspace creates it and grants its rights like
    anyone's. Created only by ``service_account_create``."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, related_name="service_accounts")
    description = models.TextField(blank=True, help_text="What system uses this account.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    audit_noun = "service_account"

    class Meta:
        ordering = ["workspace__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user.get_username()} (service account of {self.workspace})"

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id
