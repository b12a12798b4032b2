"""Review decisions are append-only in the database itself, not only in the model."""

import pytest
from django.db import DatabaseError, connection, transaction

from audit.context import acting_as
from reviews.models import ReviewDecision
from reviews.services import review_decide
from tests.reviews.conftest import hold, task_of


@pytest.fixture
def decision(gated, reviewer) -> ReviewDecision:
    task = task_of(hold(gated))
    with acting_as(reviewer):
        return review_decide(task=task, actor=reviewer, decision="reject", reason="Promises a refund.")


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE reviews_reviewdecision SET decision = 'approve', reason = ''",
        "UPDATE reviews_reviewdecision SET edited_output = NULL",
        "DELETE FROM reviews_reviewdecision",
    ],
)
def test_the_database_refuses_to_rewrite_or_remove_a_decision(decision, statement):
    with pytest.raises(DatabaseError, match="never change"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(statement)
    decision.refresh_from_db()
    assert (decision.decision, decision.reason) == ("reject", "Promises a refund.")


def test_a_queryset_update_or_delete_that_skips_the_model_is_refused_too(decision):
    rows = ReviewDecision.objects.filter(pk=decision.pk)
    with pytest.raises(DatabaseError), transaction.atomic():
        rows.update(reason="nothing to see")
    with pytest.raises(DatabaseError), transaction.atomic():
        rows._raw_delete(rows.db)
    assert ReviewDecision.objects.get(pk=decision.pk).reason == "Promises a refund."


def test_new_decisions_are_still_added(decision, gated, second_reviewer):
    task = task_of(hold(gated))
    with acting_as(second_reviewer):
        review_decide(task=task, actor=second_reviewer, decision="approve")
    assert ReviewDecision.objects.count() == 2


@pytest.fixture
def edit(gated, reviewer) -> ReviewDecision:
    run = hold(gated)
    with acting_as(reviewer):
        return review_decide(
            task=task_of(run), actor=reviewer, decision="edit", reason="Softer.",
            edited_output={**run.input, "draft": "We are sorry."},
        )  # fmt: skip


_TOMBSTONE = '{"redacted": true}'
_REDACT = "UPDATE reviews_reviewdecision SET redacted_at = CURRENT_TIMESTAMP, reason = '', category = '', diff = ''"


def _redaction(**changes: str) -> str:
    """The permitted redaction's UPDATE, with ``changes`` to its SET clause."""
    columns = {"redacted_at": "CURRENT_TIMESTAMP", "reason": "''", "category": "''", "diff": "''"}
    columns.update(original_output=f"'{_TOMBSTONE}'", edited_output=f"'{_TOMBSTONE}'", **changes)
    return "UPDATE reviews_reviewdecision SET " + ", ".join(f"{k} = {v}" for k, v in columns.items())


def _refused(sql: str, params: list | None = None) -> None:
    with pytest.raises(DatabaseError, match="never change"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def test_the_redaction_of_its_personal_data_is_the_one_change_the_database_allows(edit):
    with connection.cursor() as cursor:
        cursor.execute(f"{_REDACT}, original_output = %s, edited_output = %s", [_TOMBSTONE, _TOMBSTONE])

    stored = ReviewDecision.objects.get(pk=edit.pk)
    assert stored.redacted_at is not None
    assert (stored.reason, stored.diff, stored.original_output, stored.edited_output) == (
        "", "", {"redacted": True}, {"redacted": True}
    )  # fmt: skip
    assert (stored.decision, stored.task_id, stored.reviewer_id, stored.created_at) == (
        edit.decision, edit.task_id, edit.reviewer_id, edit.created_at
    )  # fmt: skip


def test_an_output_that_was_not_there_stays_null_when_redacted(decision):
    _refused(f"{_REDACT}, original_output = %s, edited_output = %s", [_TOMBSTONE, _TOMBSTONE])
    with connection.cursor() as cursor:
        cursor.execute(_REDACT)
    assert ReviewDecision.objects.get(pk=decision.pk).edited_output is None


@pytest.mark.parametrize(
    "change",
    [
        {"decision": "'approve'"},  # the redaction may not change what was decided
        {"reviewer_id": "reviewer_id + 1000"},
        {"created_at": "CURRENT_TIMESTAMP"},
        {"reason": "'redacted'"},  # texts are emptied, not rewritten
        {"diff": "'nothing'"},
    ],
)
def test_the_database_refuses_a_redaction_that_changes_anything_else(edit, change):
    _refused(_redaction(**change))
    assert ReviewDecision.objects.get(pk=edit.pk).redacted_at is None


def test_the_database_refuses_an_output_replaced_by_anything_but_the_tombstone(edit):
    _refused(f"{_REDACT}, original_output = %s, edited_output = %s", [_TOMBSTONE, '{"draft": "forged"}'])
    _refused(f"{_REDACT}, original_output = %s", [_TOMBSTONE])  # one output left as it was
    _refused("UPDATE reviews_reviewdecision SET redacted_at = CURRENT_TIMESTAMP")  # the mark without the redaction
    assert ReviewDecision.objects.get(pk=edit.pk).edited_output == {**edit.edited_output}


def test_the_database_refuses_to_redo_or_undo_a_redaction(edit):
    with connection.cursor() as cursor:
        cursor.execute(f"{_REDACT}, original_output = %s, edited_output = %s", [_TOMBSTONE, _TOMBSTONE])

    _refused("UPDATE reviews_reviewdecision SET redacted_at = NULL")
    _refused(f"{_REDACT}, original_output = %s, edited_output = %s", [_TOMBSTONE, _TOMBSTONE])
    _refused("UPDATE reviews_reviewdecision SET reason = 'Softer.'")
    _refused("DELETE FROM reviews_reviewdecision")
    assert ReviewDecision.objects.get(pk=edit.pk).reason == ""
