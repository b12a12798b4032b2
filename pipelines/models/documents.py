from django.conf import settings
from django.db import models

from pipelines.models.config import PipelinePart
from pipelines.models.runs import Run


class Document(PipelinePart, models.Model):
    """A document uploaded as a run's input, kept as the original bytes.

    A text document's text is part of the run's input (``input.document``),
    so the input hash and replay cover it. A PDF's entry there holds its
    SHA-256 and the text is extracted on the worker into ``text`` (the run's
    first step reads it from here); the bytes stay here for whoever must see
    what was actually sent.
    """

    class ContentType(models.TextChoices):
        TEXT = "text/plain"
        PDF = "application/pdf"

    run = models.OneToOneField(Run, on_delete=models.PROTECT, related_name="document")
    pipeline = models.ForeignKey("pipelines.Pipeline", on_delete=models.PROTECT, related_name="documents")
    content = models.BinaryField()
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveIntegerField()
    content_type = models.CharField(max_length=50, choices=ContentType.choices)
    filename = models.CharField(max_length=255, blank=True)
    source = models.CharField(max_length=200, blank=True, help_text="The sender's identifier for the document.")
    pages = models.PositiveIntegerField(null=True, blank=True)
    # A PDF's text, extracted on the worker before the run's first step (null until then).
    text = models.TextField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    personal_fields = ("content", "filename", "source", "text")
    personal_parent = "run"

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.filename or self.sha256[:12]} ({self.content_type}, {self.size} bytes)"
