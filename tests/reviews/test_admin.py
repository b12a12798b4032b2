"""The admin's read-only review task and decision pages: who sees which."""

import pytest
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from reviews.models import ReviewDecision
from reviews.services import review_decide
from tests.reviews.conftest import hold, task_of

STAFF_WITH_RIGHTS = ["lead", "author", "auditor", "operator"]


def _decide(task, user, decision, **kwargs):
    with acting_as(user):
        return review_decide(task=task, actor=user, decision=decision, **kwargs)


@pytest.fixture
def tasks(gated, globex_gated, reviewer, superuser):
    """An acme task rejected by the reviewer, an acme task edited, and a globex task still open."""
    rejected = task_of(hold(gated))
    _decide(rejected, reviewer, "reject", reason="Promises a refund.")
    edited_run = hold(gated, draft="We guarantee a refund.")
    edited = task_of(edited_run)
    _decide(edited, reviewer, "edit", edited_output={**edited_run.input, "draft": "We will check."})
    return {"rejected": rejected, "edited": edited, "globex": task_of(hold(globex_gated))}


def _get(client, user, name, *args):
    client.force_login(user)
    return client.get(reverse(name, args=args))


@pytest.mark.parametrize("persona", STAFF_WITH_RIGHTS)
def test_staff_see_the_tasks_and_decisions_of_their_pipelines_only(tasks, client, persona, request):
    user = request.getfixturevalue(persona)
    listing = _get(client, user, "admin:reviews_reviewtask_changelist")
    assert listing.status_code == 200
    shown = {task.pk for task in listing.context["cl"].result_list}
    assert shown == {tasks["rejected"].pk, tasks["edited"].pk}
    page = _get(client, user, "admin:reviews_reviewtask_change", tasks["rejected"].pk)
    assert page.status_code == 200 and "Promises a refund." in page.text
    # Another client's task is not there at all (the admin redirects as for a missing object).
    assert _get(client, user, "admin:reviews_reviewtask_change", tasks["globex"].pk).status_code == 302

    decisions = _get(client, user, "admin:reviews_reviewdecision_changelist")
    assert decisions.status_code == 200
    assert {d.task_id for d in decisions.context["cl"].result_list} == {tasks["rejected"].pk, tasks["edited"].pk}


def test_the_superuser_sees_every_client(tasks, client, superuser):
    listing = _get(client, superuser, "admin:reviews_reviewtask_changelist")
    assert {t.pk for t in listing.context["cl"].result_list} == {t.pk for t in tasks.values()}


def test_staff_without_a_role_are_refused_and_reviewers_use_the_review_app(tasks, client, outsider, reviewer):
    for name, args in [("admin:reviews_reviewtask_changelist", ()),
                       ("admin:reviews_reviewtask_change", (tasks["rejected"].pk,)),
                       ("admin:reviews_reviewdecision_changelist", ())]:  # fmt: skip
        assert _get(client, outsider, name, *args).status_code == 403
        response = _get(client, reviewer, name, *args)  # not staff: the admin sends them to sign in
        assert response.status_code == 302 and "/login/" in response["Location"]


@pytest.mark.parametrize("persona", ["lead", "superuser"])
def test_nothing_is_added_changed_or_deleted_here(tasks, client, persona, request):
    client.force_login(request.getfixturevalue(persona))
    task = tasks["rejected"]
    decision = ReviewDecision.objects.get(task=task)
    assert client.get(reverse("admin:reviews_reviewtask_add")).status_code == 403
    assert client.get(reverse("admin:reviews_reviewdecision_add")).status_code == 403
    assert client.post(reverse("admin:reviews_reviewtask_delete", args=[task.pk]), {"post": "yes"}).status_code == 403
    url = reverse("admin:reviews_reviewdecision_delete", args=[decision.pk])
    assert client.post(url, {"post": "yes"}).status_code == 403
    url = reverse("admin:reviews_reviewdecision_change", args=[decision.pk])
    assert client.post(url, {"reason": "rewritten"}).status_code == 403
    decision.refresh_from_db()
    assert decision.reason == "Promises a refund."


def test_viewing_an_edit_is_on_the_record(tasks, client, auditor):
    decision = ReviewDecision.objects.get(task=tasks["edited"])
    page = _get(client, auditor, "admin:reviews_reviewdecision_change", decision.pk)
    assert page.status_code == 200 and "We will check." in page.text
    [event] = AuditEvent.objects.filter(action="run.personal_data_viewed", actor_name="auditor")
    assert event.object_id == str(tasks["edited"].run_id) and event.payload_data["decision"] == decision.pk
