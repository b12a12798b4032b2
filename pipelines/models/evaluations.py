from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from pipelines.models.config import Pipeline, PipelinePart
from pipelines.models.releases import Release
from pipelines.steps import validate_json_schema


class EvaluationCase(PipelinePart, models.Model):
    """One input of a pipeline's evaluation set and what its output must satisfy.

    Every expectation is optional; a case with none passes when the run
    finishes without failing. ``expected_label`` is compared with the output's
    ``label`` field; phrases are searched in the output's text (its JSON)."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.PROTECT, related_name="evaluation_cases")
    name = models.CharField(max_length=200)
    input = models.JSONField(blank=True)
    expected_label = models.CharField(max_length=200, blank=True)
    required_phrases = models.JSONField(default=list, blank=True)
    forbidden_phrases = models.JSONField(default=list, blank=True)
    output_schema = models.JSONField(default=dict, blank=True, help_text="A JSON Schema the output must satisfy.")
    max_length = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Most characters in the output's text."
    )
    # The reviewed run it was made from, when it was.
    source_run = models.ForeignKey("pipelines.Run", on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    audit_noun = "evaluation_case"
    # A case made from a run is part of that run's story; one made by hand is its own root.
    personal_fields = ("name", "input", "required_phrases", "forbidden_phrases")
    personal_parent = "source_run"

    class Meta:
        ordering = ["pipeline", "pk"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "name"], name="evaluation_case_name_unique")]

    def __str__(self) -> str:
        return self.name

    def personal_redacted_values(self) -> dict:
        # Names are unique per pipeline: each redacted case keeps one of its own.
        return {"name": f"redacted case {self.pk}"}

    def clean(self) -> None:
        if not isinstance(self.input, dict):
            raise ValidationError({"input": "The input must be a JSON object."})
        for field in ("required_phrases", "forbidden_phrases"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
                raise ValidationError({field: 'List phrases as strings, e.g. ["refund"].'})
        validate_json_schema(self.output_schema, field="output_schema")


class Evaluation(models.Model):
    """One release run against its pipeline's evaluation set in the sandbox
    (pipelines/evaluation/services.py): no run rows, nothing delivered, nothing reviewed,
    nothing counted in metrics or canary statistics. It runs on a worker:
    ``queued`` when asked for, ``running`` with ``done`` of ``total`` cases
    so far, then ``done`` with its results, or ``failed`` with the reason."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="evaluations")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0, help_text="Cases to run.")
    done = models.PositiveIntegerField(default=0, help_text="Cases run so far.")
    error = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Production's release when the evaluation ran, compared case by case.
    baseline = models.ForeignKey(Release, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    cases = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    fixed = models.PositiveIntegerField(default=0)
    broken = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    permission_parent_field = "release"

    # Why it failed may quote what a case held (an exception's message).
    personal_fields = ("error",)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        if self.status != self.Status.DONE:
            return f"evaluation of {self.release}: {self.status} ({self.done}/{self.total})"
        return f"evaluation of {self.release}: {self.passed}/{self.cases}"

    @property
    def pass_rate(self) -> float:
        return self.passed / self.cases if self.cases else 0.0


class EvaluationResult(models.Model):
    class Comparison(models.TextChoices):
        FIXED = "fixed"
        BROKEN = "broken"
        UNCHANGED = "unchanged"
        NEW = "new"  # no baseline result for the case

    evaluation = models.ForeignKey(Evaluation, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvaluationCase, on_delete=models.PROTECT, related_name="results")
    passed = models.BooleanField()
    # What the sandbox produced: the last output, or the one a gate held.
    output = models.JSONField(null=True, blank=True)
    held = models.BooleanField(default=False)
    failures = models.JSONField(default=list)
    baseline_passed = models.BooleanField(null=True)
    comparison = models.CharField(max_length=20, choices=Comparison.choices)

    # What the sandbox produced from the case's input, and failures quoting it.
    personal_fields = ("output", "failures")
    personal_parent = "case"

    class Meta:
        ordering = ["evaluation", "case"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "case"], name="evaluation_result_unique")]

    def __str__(self) -> str:
        return f"{self.case}: {'pass' if self.passed else 'fail'} ({self.comparison})"
