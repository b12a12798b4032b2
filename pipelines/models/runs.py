from django.conf import settings
from django.db import models

from pipelines.models.config import Pipeline, PipelinePart
from pipelines.models.releases import Release


class Run(PipelinePart, models.Model):
    """One execution of one release on one input."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        WAITING_REVIEW = "waiting_review"
        COMPLETED = "completed"
        REJECTED = "rejected"
        FAILED = "failed"
        CANCELLED = "cancelled"

    class Trigger(models.TextChoices):
        API = "api"
        ADMIN = "admin"
        CLI = "cli"
        SCHEDULE = "schedule"

    FINISHED = (Status.COMPLETED, Status.REJECTED, Status.FAILED, Status.CANCELLED)

    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="runs")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="runs")
    environment = models.CharField(max_length=20)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED, db_index=True)
    input = models.JSONField()
    input_sha256 = models.CharField(max_length=64)
    source = models.CharField(max_length=200, blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # The person who asked for the run: the actor, or for a run started with a
    # token the token's creator (separation of duties counts them as its requester).
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    seed = models.BigIntegerField()
    # The position of the next step to run; everything before it has completed.
    next_position = models.PositiveSmallIntegerField(default=1)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    failure_reason = models.TextField(blank=True)
    output = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # When sending the run's task message last failed (the broker was away);
    # null once sent. The recovery beat task sends it again (engine.runs_resend).
    send_failed_at = models.DateTimeField(null=True, blank=True)

    # What erasure and retention redact (pipelines/runs/personal_data.py).
    personal_fields = ("input", "output", "failure_reason", "source", "idempotency_key")

    class Meta:
        ordering = ["-created_at", "-pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["pipeline", "idempotency_key"],
                condition=models.Q(idempotency_key__isnull=False),
                name="run_idempotency_key_unique_per_pipeline",
            )
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.pipeline.slug} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class StepRun(models.Model):
    """One step of one run: its input, output, and everything learned from
    outside (model requests and responses exactly as sent and received)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETED = "completed"
        WAITING_REVIEW = "waiting_review"
        FAILED = "failed"

    # Indexed by steprun_unique_position, which leads with the run.
    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="steps", db_index=False)
    position = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    input = models.JSONField()
    output = models.JSONField(null=True, blank=True)
    output_sha256 = models.CharField(max_length=64, blank=True)
    decision = models.JSONField(null=True, blank=True)
    recordings = models.JSONField(default=list, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    personal_fields = ("input", "output", "decision", "recordings", "error")
    personal_parent = "run"

    class Meta:
        ordering = ["run", "position"]
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="steprun_unique_position")]

    def __str__(self) -> str:
        return f"{self.run_id}.{self.position} {self.name} ({self.status})"
