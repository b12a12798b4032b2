from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from governance.models import Workspace
from pipelines.models.config import Pipeline


class Budget(models.Model):
    """A monthly spending limit for one pipeline or every pipeline of a workspace,
    in model tokens or in money (from the model configs' prices).

    Crossing ``soft_limit`` e-mails the owner once a month; reaching
    ``hard_limit`` holds every new run as failed (``budget_exceeded``), and in
    ``pause`` mode also pauses the pipelines, until a governance lead raises it.
    """

    class Unit(models.TextChoices):
        TOKENS = "tokens", "Model tokens (input + output)"
        MONEY = "money", "Money (the model configs' prices)"

    class OnHardLimit(models.TextChoices):
        FAIL = "fail", "Fail new runs (budget_exceeded)"
        PAUSE = "pause", "Fail new runs and pause the pipelines"

    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT, null=True, blank=True, related_name="budgets")
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, null=True, blank=True, related_name="budgets")
    unit = models.CharField(max_length=10, choices=Unit.choices, default=Unit.MONEY)
    soft_limit = models.DecimalField(
        max_digits=16, decimal_places=4, validators=[MinValueValidator(Decimal("0"))],
        help_text="Past this, the owner is e-mailed (once a month).",
    )  # fmt: skip
    hard_limit = models.DecimalField(
        max_digits=16, decimal_places=4, validators=[MinValueValidator(Decimal("0"))],
        help_text="At this, new runs are held as failed with reason budget_exceeded.",
    )  # fmt: skip
    on_hard_limit = models.CharField(max_length=10, choices=OnHardLimit.choices, default=OnHardLimit.FAIL)
    # The month (YYYY-MM) the soft-limit e-mail went out for, so it goes once.
    soft_notified_month = models.CharField(max_length=7, blank=True, editable=False)
    # Deployments this budget paused (pause mode), unpaused when it is raised above the spend.
    paused_deployments = models.JSONField(default=list, blank=True, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace__name", "pipeline__name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(workspace__isnull=True, pipeline__isnull=False)
                | models.Q(workspace__isnull=False, pipeline__isnull=True),
                name="budget_one_scope",
            ),
            models.UniqueConstraint(fields=["workspace", "unit"], name="budget_one_per_workspace_and_unit"),
            models.UniqueConstraint(fields=["pipeline", "unit"], name="budget_one_per_pipeline_and_unit"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} monthly {self.get_unit_display().split(' ')[0].lower()} budget"

    def clean(self) -> None:
        if (self.workspace_id is None) == (self.pipeline_id is None):
            raise ValidationError("A budget belongs to one workspace or one pipeline.")
        if self.soft_limit is not None and self.hard_limit is not None and self.soft_limit > self.hard_limit:
            raise ValidationError({"soft_limit": "The soft limit cannot be above the hard limit."})

    @property
    def scope(self) -> Workspace | Pipeline:
        return self.pipeline if self.pipeline_id else self.workspace

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id or self.pipeline.workspace_id

    @property
    def audit_pipeline_id(self) -> int | None:
        return self.pipeline_id
