"""The walk over every model that finds where personal data is stored: a
free-text column nobody accounted for fails it."""

from django.db import models
from django.test.utils import isolate_apps

from pipelines.models import Document, EvaluationCase, Run, StepRun
from pipelines.runs.personal_data import KEPT_MODELS, coverage_gaps, free_text_fields, holders
from reviews.models import ReviewDecision


def test_every_free_text_column_of_every_model_is_redacted_or_kept_with_a_reason():
    assert coverage_gaps() == []


def test_the_walk_finds_every_table_the_erasure_must_reach():
    tables = {holder.table for holder in holders()}

    assert {
        "pipelines_run", "pipelines_steprun", "pipelines_document", "pipelines_delivery",
        "pipelines_evaluationcase", "pipelines_evaluationresult", "reviews_reviewtask",
        "reviews_reviewdecision", "audit_auditevent", "django_admin_log",
    } <= tables  # fmt: skip


def test_configuration_and_its_history_are_kept_by_name_with_a_reason():
    for label in ("pipelines.PromptTemplate", "pipelines.HistoricalPromptTemplate", "pipelines.Release"):
        assert KEPT_MODELS[label]
    assert all(reason.strip() for reason in KEPT_MODELS.values())


def test_a_document_s_bytes_and_name_and_a_decision_s_outputs_are_personal():
    by_model = {holder.model: holder for holder in holders()}

    assert {"content", "filename"} <= set(by_model[Document].fields)
    assert {"original_output", "edited_output", "diff", "reason"} <= set(by_model[ReviewDecision].fields)
    assert {"input", "output"} <= set(by_model[Run].fields)
    assert "recordings" in by_model[StepRun].fields
    assert "input" in by_model[EvaluationCase].fields


@isolate_apps("pipelines")
def test_a_new_model_with_free_text_and_no_say_on_it_is_reported():
    class Note(models.Model):
        body = models.TextField()
        status = models.CharField(max_length=10, choices=[("a", "a")])

        class Meta:
            app_label = "pipelines"

    assert [field.name for field in free_text_fields(Note)] == ["body"]
    assert coverage_gaps([Note]) == ["pipelines.Note: body hold free text; declare personal_fields or keep it"]


@isolate_apps("pipelines")
def test_a_new_free_text_column_on_a_covered_model_is_reported():
    class Letter(models.Model):
        body = models.TextField()
        signature = models.CharField(max_length=100)

        personal_fields = ("body",)

        class Meta:
            app_label = "pipelines"

    assert coverage_gaps([Letter]) == [
        "pipelines.Letter.signature holds free text; add it to personal_fields or KEPT_FIELDS"
    ]
