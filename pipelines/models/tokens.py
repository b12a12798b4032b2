from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from governance.models import Workspace
from pipelines.models.config import Pipeline


class ServiceToken(models.Model):
    """An API credential acting as one user, within one workspace or one pipeline.

    Only the SHA-256 of the secret is kept: the secret is shown once, when the
    token is created, and cannot be read back. ``prefix`` is the short visible
    start of the token, so people can tell their tokens apart. A request made
    with the token holds the user's object rights *and* stays inside the scope.
    """

    name = models.CharField(max_length=200)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="service_tokens")
    workspace = models.ForeignKey(
        Workspace, on_delete=models.PROTECT, null=True, blank=True, related_name="service_tokens"
    )
    pipeline = models.ForeignKey(
        Pipeline, on_delete=models.PROTECT, null=True, blank=True, related_name="service_tokens"
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_sha256 = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "service token"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(workspace__isnull=True, pipeline__isnull=False)
                | models.Q(workspace__isnull=False, pipeline__isnull=True),
                name="servicetoken_one_scope",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def clean(self) -> None:
        if (self.workspace_id is None) == (self.pipeline_id is None):
            raise ValidationError("Scope a token to one workspace or one pipeline.")

    @property
    def scope(self) -> Workspace | Pipeline:
        return self.pipeline if self.pipeline_id else self.workspace

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def audit_workspace_id(self) -> int:
        return self.workspace_id or self.pipeline.workspace_id

    @property
    def audit_pipeline_id(self) -> int | None:
        return self.pipeline_id


class Heartbeat(models.Model):
    """The last sign of life of a background component (``worker``, ``beat``),
    read by /health/ready. One row per component, overwritten."""

    component = models.CharField(max_length=50, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.component} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
