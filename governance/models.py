from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from audit.context import history_user
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

    @property
    def audit_workspace_id(self) -> int:
        return self.pk


class WorkspaceUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


class WorkspaceGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Workspace, on_delete=models.CASCADE)


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
