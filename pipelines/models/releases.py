import functools
import json
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from simple_history.models import HistoricalRecords

from audit.context import history_user
from pipelines.models.config import Pipeline, PipelinePart


class Release(PipelinePart, models.Model):
    """An immutable, numbered snapshot of one pipeline's whole resolved
    configuration, as canonical JSON with its SHA-256 fingerprint.

    The database refuses UPDATE and DELETE on this table (pipelines/db.py);
    a release's later life is a series of ReleaseTransition rows.
    """

    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="releases")
    number = models.PositiveIntegerField()
    # The canonical JSON exactly as fingerprinted (pipelines/releases/cut.py).
    snapshot = models.TextField()
    fingerprint = models.CharField(max_length=64, db_index=True)
    keel_version = models.CharField(max_length=40)
    notes = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    audit_noun = "release"

    class Meta:
        ordering = ["pipeline", "-number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="release_number_unique")]

    def __str__(self) -> str:
        return f"{self.pipeline.slug} #{self.number}"

    @property
    def snapshot_data(self) -> dict:
        """The parsed snapshot. A saved release never changes, so each process
        parses it once and every run of it shares the result: read it, never
        change it. (Keyed by fingerprint too: a key names one content.)"""
        if self.pk is None:
            return json.loads(self.snapshot)
        return _parsed_snapshot(self.pk, self.fingerprint)

    @property
    def short_fingerprint(self) -> str:
        return self.fingerprint[:12]


@functools.lru_cache(maxsize=256)
def _parsed_snapshot(pk: int, fingerprint: str) -> dict:
    return json.loads(Release.objects.values_list("snapshot", flat=True).get(pk=pk, fingerprint=fingerprint))


class ReleaseTransition(models.Model):
    """One step in a release's life; rows are only ever added."""

    class State(models.TextChoices):
        SUBMITTED = "submitted"
        # One approver's vote; "approved" follows once the change policy's count is reached.
        APPROVAL = "approval"
        APPROVED = "approved"
        REJECTED = "rejected"
        RETIRED = "retired"

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="transitions")
    state = models.CharField(max_length=20, choices=State.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+")
    reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["release", "created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.release} {self.state}"


class Deployment(PipelinePart, models.Model):
    """Per pipeline and environment, which release is live. Deploy, roll back,
    canary and pause only move this pointer; its history is the record of what
    was live when."""

    class Environment(models.TextChoices):
        STAGING = "staging"
        PRODUCTION = "production"

    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="deployments")
    environment = models.CharField(max_length=20, choices=Environment.choices)
    release = models.ForeignKey(Release, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    canary_release = models.ForeignKey(Release, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    canary_share = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
        help_text="Percent of traffic sent to the canary release (0 to 100).",
    )
    # Sources (a run's ``source``) always sent to the canary, whatever its share.
    canary_sources = models.JSONField(default=list, blank=True)
    canary_started_at = models.DateTimeField(null=True, blank=True)
    paused = models.BooleanField(default=False)
    pause_reason = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    history = HistoricalRecords(get_user=history_user)

    audit_noun = "deployment"
    # Its services record what a move means (deployment.set, .rolled_back);
    # a generic "deployment.changed" per history record would only repeat it.
    audit_history = False

    class Meta:
        ordering = ["pipeline", "environment"]
        constraints = [
            models.UniqueConstraint(fields=["pipeline", "environment"], name="deployment_unique_per_environment")
        ]

    def __str__(self) -> str:
        live = f"#{self.release.number}" if self.release_id else "nothing"
        return f"{self.pipeline.slug} {self.environment}: {live}"
