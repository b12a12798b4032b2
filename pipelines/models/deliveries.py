import uuid

from django.db import models

from pipelines.models.runs import Run


class Delivery(models.Model):
    """One deliver step of one run sending its output to a consumer.

    The row exists before anything is sent, and every attempt (including one
    made by another worker after a crash) carries its ``delivery_id``, so a
    receiver can drop repeats. ``payload_sha256`` pins the id to one body:
    an id is never sent with two different outputs.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"
        # Not sent while its pipeline is paused; resuming sends it.
        HELD = "held"

    class Channel(models.TextChoices):
        WEBHOOK = "webhook"

    run = models.ForeignKey(Run, on_delete=models.PROTECT, related_name="deliveries")
    position = models.PositiveSmallIntegerField()
    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    channel = models.CharField(max_length=20, choices=Channel.choices)
    url = models.CharField(max_length=2000)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # SHA-256 of the body as sent: the canonical JSON (delivery id, run, pipeline, output), or the PDF report.
    payload_sha256 = models.CharField(max_length=64)
    # Who answered: the URL's host and what the server said it was (X-Receiver, Server).
    receiver = models.CharField(max_length=500, blank=True)
    # "" for a deliver step's output; an event name (run.rejected) for a notice
    # that tells the consumer what became of a run it gets no output for
    # (pipelines/delivery/notices.py), with the notice's fields, sent again as recorded.
    event = models.CharField(max_length=40, blank=True, default="")
    notice = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    # A receiver's error may quote the body; a notice carries the run's reason.
    personal_fields = ("last_error", "notice")
    personal_parent = "run"

    class Meta:
        ordering = ["run", "position"]
        verbose_name_plural = "deliveries"
        constraints = [models.UniqueConstraint(fields=["run", "position"], name="delivery_unique_per_step")]

    def __str__(self) -> str:
        return f"delivery {self.delivery_id} of run {self.run_id}.{self.position} ({self.status})"


class DeadLetterManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(DEAD)


# Exhausted: refused outright, or still pending although its run has finished
# (the engine gave up retrying the step and failed the run). A notice is sent
# after its run finished, so it is dead only once its task gives up (failed).
DEAD = models.Q(status=Delivery.Status.FAILED) | models.Q(
    status=Delivery.Status.PENDING, run__status__in=Run.FINISHED, event=""
)


class DeadLetter(Delivery):
    """A delivery that exhausted its retries: the admin's dead-letter list."""

    permission_parent_field = "run"  # it answers to its run, which answers to its pipeline

    objects = DeadLetterManager()

    class Meta:
        proxy = True
        verbose_name = "dead-letter delivery"
        verbose_name_plural = "dead-letter deliveries"
