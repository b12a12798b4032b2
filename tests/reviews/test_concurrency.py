"""Two reviewers deciding the same task at the same moment, on real threads
with their own database connections: one decision counts, the run resumes once."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import Run
from reviews.models import ReviewDecision, ReviewTask
from reviews.services import review_decide
from tests.reviews.conftest import hold, task_of


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("second", ["approve", "reject"])
def test_two_reviewers_deciding_at_once_make_one_decision_and_one_resumption(second, gated, reviewer, second_reviewer):
    run = hold(gated)
    task = task_of(run)
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def decide(user, decision):
        try:
            barrier.wait(timeout=10)
            review_decide(task=ReviewTask.objects.get(pk=task.pk), actor=user, decision=decision, reason="No.")
            outcomes[user.username] = "decided"
        except ValidationError as error:
            outcomes[user.username] = error.messages[0]
        finally:
            connection.close()

    threads = [
        threading.Thread(target=decide, args=(reviewer, "approve")),
        threading.Thread(target=decide, args=(second_reviewer, second)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes.values(), key=lambda v: v != "decided")[0] == "decided"
    refused = [message for message in outcomes.values() if message != "decided"]
    assert len(refused) == 1 and "already decided" in refused[0]
    assert ReviewDecision.objects.filter(task=task).count() == 1
    resumed = AuditEvent.objects.filter(action__in=["run.resumed", "run.rejected"], object_id=str(run.pk)).count()
    assert resumed == 1
    assert Run.objects.get(pk=run.pk).status in (Run.Status.QUEUED, Run.Status.REJECTED)
    assert audit_chain_verify().ok
