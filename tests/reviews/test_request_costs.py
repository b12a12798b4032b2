"""What the reviewer app does to stay fast must not change what it answers:
the per-request permission cache, the cached queue counts and the decision's
single audit append."""

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from guardian.shortcuts import assign_perm, remove_perm

from audit.models import AuditEvent
from governance.permissions import permission_cache, user_can
from tests.reviews.conftest import finalize_approvals, hold, task_of


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_outside_a_cache_block_a_revocation_is_seen_at_once(gated, outsider):
    assign_perm("pipelines.review_output", outsider, gated)
    assert user_can(outsider, "review_output", gated)
    remove_perm("pipelines.review_output", outsider, gated)
    assert not user_can(outsider, "review_output", gated)


def test_a_cache_block_asks_once_per_user_and_answers_each_user_for_themselves(gated, reviewer, outsider):
    with permission_cache():
        with CaptureQueriesContext(connection) as first:
            assert user_can(reviewer, "review_output", gated)
        with CaptureQueriesContext(connection) as again:
            assert user_can(reviewer, "review_output", gated)
        assert len(first) > 0 and len(again) == 0
        assert not user_can(outsider, "review_output", gated)  # another user: their own answer
        assert not user_can(reviewer, "change", gated)  # another action: its own answer


def test_a_new_cache_block_sees_a_revocation(gated, outsider):
    assign_perm("pipelines.review_output", outsider, gated)
    with permission_cache():
        assert user_can(outsider, "review_output", gated)
    remove_perm("pipelines.review_output", outsider, gated)
    with permission_cache():  # the next request asks again
        assert not user_can(outsider, "review_output", gated)


def test_an_inactive_user_is_refused_even_with_a_cached_answer(gated, reviewer):
    with permission_cache():
        assert user_can(reviewer, "review_output", gated)
        reviewer.is_active = False
        assert not user_can(reviewer, "review_output", gated)


def test_the_queue_counts_follow_a_decision_at_once(gated, reviewer):
    first, _second = task_of(hold(gated)), task_of(hold(gated))
    client = _client(reviewer)
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 2
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 2  # cached, same answer
    response = client.post(reverse("reviews-decide", args=[first.pk]), {"decision": "approve"})
    assert response.status_code == 302
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 2  # the approval may still be undone
    finalize_approvals()
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 1
    hold(gated)
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 2


def test_the_queue_counts_of_one_reviewer_never_reach_one_with_other_rights(gated, globex_gated, reviewer, lead):
    hold(gated)
    hold(globex_gated)
    assert _client(reviewer).get(reverse("reviews-queue")).context["counts"]["total"] == 1


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_decision_records_its_events_in_order_and_consecutively(gated, reviewer, decision):
    task = task_of(hold(gated))
    client = _client(reviewer)  # signing in is an event of its own (user.signed_in)
    last = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    response = client.post(reverse("reviews-decide", args=[task.pk]), {"decision": decision, "reason": "Wrong tone."})
    assert response.status_code == 302
    if decision == "approve":  # held for its undo window, then written by the worker
        assert AuditEvent.objects.filter(seq__gt=last).get().action == "review.approval_pending"
        last += 1
        finalize_approvals()
    events = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq").values_list("seq", "action"))
    actions = [a for _, a in events]
    expected = ["review.decided", "step.completed", "run.resumed"] if decision == "approve" else [
        "review.decided", "run.rejected"]  # fmt: skip
    assert actions == expected
    assert [s for s, _ in events] == list(range(last + 1, last + 1 + len(expected)))


def test_without_a_working_cache_the_queue_counts_every_time(gated, reviewer):
    from django.test import override_settings

    hold(gated)
    with override_settings(CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}):
        client = _client(reviewer)
        assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 1
        hold(gated)
        assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 2


def test_a_decision_asks_each_thing_once_and_locks_only_the_task_and_the_run(gated, reviewer):
    """One permission question, one read of the gate and of the run, no
    savepoint inside the decision's own, and no lock on the pipeline or
    release rows (which every other decision and new run of the pipeline needs)."""
    task = task_of(hold(gated))
    assert _client(reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"}).status_code == 302
    with CaptureQueriesContext(connection) as queries:  # the approval written when its undo window closes
        assert len(finalize_approvals()) == 1
    statements = [q["sql"] for q in queries.captured_queries]

    def count(*needles):
        return sum(all(n in sql for n in needles) for sql in statements)

    assert count("objectpermission") == 1
    assert count('FROM "pipelines_steprun"') == 1
    assert count('FROM "pipelines_run"') == 1
    # review_decide's own block is a savepoint inside the finalizer's transaction.
    assert count("SAVEPOINT", "RELEASE") == 2 and count("SAVEPOINT") - count("RELEASE") == 2
    locks = [sql for sql in statements if "FOR " in sql and "UPDATE" in sql.split("FOR ")[-1]]
    if connection.features.has_select_for_update_of:
        assert len(locks) == 2 and all(" OF " in sql.split("FOR ")[-1] for sql in locks)
