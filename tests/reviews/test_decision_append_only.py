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
