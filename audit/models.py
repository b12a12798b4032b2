import json

from django.db import models

from audit.chain import REDACTED_PAYLOAD

__all__ = ["REDACTED_PAYLOAD", "AuditEvent"]


class AuditEvent(models.Model):
    """One thing that happened, as one link of the hash chain.

    No foreign keys: other objects are named by plain ids and names as they
    were, so no delete anywhere can cascade into the log. The database refuses
    UPDATE and DELETE (see audit/db.py) except the redaction of a payload.
    """

    seq = models.BigIntegerField(primary_key=True)
    ts = models.DateTimeField(db_index=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    actor_name = models.CharField(max_length=150)
    action = models.CharField(max_length=100, db_index=True)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=100)
    workspace_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    pipeline_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    # The canonical JSON exactly as hashed, so verification and exports need no
    # re-encoding and a JSON column cannot reorder or renormalise it.
    payload = models.TextField()
    payload_sha256 = models.CharField(max_length=64)
    prev_hash = models.CharField(max_length=64)
    # No index: nothing looks an event up by its hash (seq is the key), and
    # SHA-256 values land on random pages of a B-tree, so two indexes on it
    # (unique, and PostgreSQL's pattern index beside it) made each append
    # write two index pages at random, most of them whole into the WAL, while
    # holding the chain head.
    hash = models.CharField(max_length=64)
    redacted_at = models.DateTimeField(null=True, blank=True)

    # Only ``audit_redact`` changes it (pipelines/runs/personal_data.py finds it).
    personal_fields = ("payload",)

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} {self.object_type}:{self.object_id}"

    @property
    def payload_data(self):
        return json.loads(self.payload)

    @property
    def is_redacted(self) -> bool:
        return self.redacted_at is not None


class RetentionPolicy(models.Model):
    """How long a workspace keeps its runs' inputs and outputs before they are
    redacted (hashes kept). Keyed by the workspace's plain id, as everything
    in ``audit`` names other objects. Configuration history is never redacted."""

    workspace_id = models.BigIntegerField(unique=True)
    run_data_days = models.PositiveIntegerField(help_text="Redact run inputs and outputs older than this many days.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "retention policies"

    def __str__(self) -> str:
        return f"workspace {self.workspace_id}: run data kept {self.run_data_days} days"
