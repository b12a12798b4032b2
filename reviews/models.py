"""Review tasks (a gate that holds a run, or a sampled output to check) and
the decisions people make on them."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse
from django.utils import timezone

from pipelines.models import Pipeline, Run
from pipelines.models.config import PipelinePart

# Why a task is in the queue: the gate's reasons, or a sample.
REASONS = {
    "always": "Pre-publication review",
    "low_confidence": "Low confidence",
    "invalid_confidence": "Unreadable confidence",
    "rule": "A rule matched",
    "parse_uncertain": "Parsing was uncertain",
    "sample": "QA sample",
}


class ReviewTask(PipelinePart, models.Model):
    class Kind(models.TextChoices):
        PRE_PUBLICATION = "pre_publication", "Pre-publication review"
        EXCEPTION = "exception", "Exception review"
        QA_SAMPLE = "qa_sample", "QA sample (non-blocking)"

    class Status(models.TextChoices):
        OPEN = "open"
        APPROVED = "approved"
        REJECTED = "rejected"
        REVIEWED = "reviewed", "Reviewed (QA)"
        CLOSED = "closed", "Closed (the run ended otherwise)"

    BLOCKING = (Kind.PRE_PUBLICATION, Kind.EXCEPTION)

    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="review_tasks")
    # The run's pipeline, kept on the task so that the queue filters by right without a join.
    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="review_tasks")
    position = models.PositiveSmallIntegerField(help_text="The gate step's position in the run.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    reasons = models.JSONField(default=list, blank=True)
    # The reasons as ",low_confidence,rule," so that the queue can filter by one on either database.
    reason_codes = models.CharField(max_length=200, blank=True, editable=False)
    rule_hits = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    required_approvals = models.PositiveSmallIntegerField(default=1)
    deadline_at = models.DateTimeField(null=True, blank=True, db_index=True)
    second_deadline_at = models.DateTimeField(null=True, blank=True)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    claim_expires_at = models.DateTimeField(null=True, blank=True)
    # 0: within its deadline or not yet looked at; 1: the escalation contact was told; 2: the owner was.
    escalation_level = models.PositiveSmallIntegerField(default=0)
    escalated_at = models.DateTimeField(null=True, blank=True)
    # A task drawn by the periodic random sample records the seed of its draw.
    sample_seed = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    audit_noun = "review_task"
    # Rule hits quote what matched in the output.
    personal_fields = ("rule_hits",)
    personal_parent = "run"

    class Meta:
        ordering = ["deadline_at", "pk"]
        indexes = [
            models.Index(fields=["status", "deadline_at"], name="reviewtask_queue"),
            # Covers the queue's counts (status, pipeline, overdue) for an index-only scan.
            models.Index(fields=["status", "pipeline", "deadline_at"], name="reviewtask_counts"),
        ]
        constraints = [
            # One blocking review and at most one QA review per held gate: a
            # repeated signal (a retried transaction) never makes a second one.
            models.UniqueConstraint(
                fields=["run", "position"],
                condition=models.Q(kind__in=["pre_publication", "exception"]),
                name="reviewtask_one_blocking_per_gate",
            ),
            models.UniqueConstraint(
                fields=["run", "position"],
                condition=models.Q(kind="qa_sample"),
                name="reviewtask_one_sample_per_gate",
            ),
            models.CheckConstraint(
                condition=models.Q(required_approvals__gte=1, required_approvals__lte=3),
                name="reviewtask_approvals_1_3",
            ),
        ]

    def __str__(self) -> str:
        return f"review {self.pk} of run {self.run_id} ({self.get_kind_display()}, {self.status})"

    def save(self, *args, **kwargs):
        self.reason_codes = "," + ",".join(self.reasons) + "," if self.reasons else ""
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("reviews-detail", args=[self.pk])

    @property
    def is_blocking(self) -> bool:
        return self.kind in self.BLOCKING

    @property
    def is_overdue(self) -> bool:
        return self.status == self.Status.OPEN and self.deadline_at is not None and self.deadline_at < timezone.now()

    def claim_holder(self, now=None):
        """Who holds a live claim, or None (a stale claim has lapsed)."""
        now = now or timezone.now()
        if self.claimed_by_id and self.claim_expires_at and self.claim_expires_at > now:
            return self.claimed_by
        return None

    @property
    def reason_labels(self) -> list[str]:
        return [REASONS.get(reason, reason) for reason in self.reasons]


class ReviewDecision(models.Model):
    """One person's decision on one task. Rows are only ever added."""

    class Decision(models.TextChoices):
        APPROVE = "approve"
        EDIT = "edit", "Edit and approve"
        REJECT = "reject"
        CORRECT = "correct", "Correct (QA)"
        INCORRECT = "incorrect", "Incorrect (QA)"

    APPROVING = (Decision.APPROVE, Decision.EDIT)

    permission_parent_field = "task"  # it answers to its task, which answers to its pipeline

    task = models.ForeignKey(ReviewTask, on_delete=models.PROTECT, related_name="decisions")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decision = models.CharField(max_length=20, choices=Decision.choices)
    reason = models.TextField(blank=True)
    # QA verdicts name what was wrong (or right) in a few words.
    category = models.CharField(max_length=100, blank=True)
    original_output = models.JSONField(null=True, blank=True)
    edited_output = models.JSONField(null=True, blank=True)
    diff = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Set once, when the decision's personal data is redacted: the one change
    # the database allows on a decision (reviews/db.py).
    redacted_at = models.DateTimeField(null=True, blank=True, editable=False)

    personal_fields = ("reason", "category", "original_output", "edited_output", "diff")
    personal_parent = "task"

    class Meta:
        ordering = ["created_at", "pk"]
        # A person decides a task once: distinct approvers, and a double post counts once.
        constraints = [models.UniqueConstraint(fields=["task", "reviewer"], name="reviewdecision_once_per_reviewer")]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer} on review {self.task_id}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValidationError("A review decision is never changed; record a new one.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValidationError("A review decision is never deleted.")


class PipelineReviewSettings(PipelinePart, models.Model):
    """What the pipeline's owner says a person's review of one item costs, so
    that the metrics page can show the time the pipeline saves."""

    pipeline = models.OneToOneField(Pipeline, on_delete=models.CASCADE, related_name="review_settings")
    minutes_per_item = models.PositiveIntegerField(
        default=0, help_text="Minutes a person would spend on one item without the pipeline."
    )
    updated_at = models.DateTimeField(auto_now=True)

    audit_noun = "review_settings"

    class Meta:
        verbose_name_plural = "pipeline review settings"

    def __str__(self) -> str:
        return f"review settings of {self.pipeline}"


class PendingApproval(models.Model):
    """An approval a reviewer pressed and may still take back: until
    ``due_at`` (the undo window) it is only this row, and the run waits as
    before. When the window closes, reviews_approvals_finalize writes it as a
    ReviewDecision through review_decide (which resumes the run); an undo
    deletes it first. Whichever of the two deletes the row acts; the other
    finds nothing. It is never a decision, so decisions stay append-only."""

    task = models.ForeignKey(ReviewTask, on_delete=models.PROTECT, related_name="pending_approvals")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    due_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["task", "reviewer"], name="pendingapproval_once_per_reviewer")]

    def __str__(self) -> str:
        return f"approval of review {self.task_id} by {self.reviewer} pending until {self.due_at:%H:%M:%S}"
