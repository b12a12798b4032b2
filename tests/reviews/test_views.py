"""The reviewer web app through Django's test client: who sees what, and how
refusals read."""

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.models import Run, StepRun
from pipelines.releases.cut import release_cut
from reviews.models import PendingApproval, ReviewDecision, ReviewTask
from tests.releasing import release_to_production
from tests.reviews.conftest import finalize_approvals, gated_pipeline, hold, task_of


def _client(user) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def held(gated, globex_gated):
    """One held run in acme and one in globex."""
    return task_of(hold(gated)), task_of(hold(globex_gated, subject="Globex secret"))


# persona -> may review acme's pipeline (review_output through a role on acme)
MAY_REVIEW = {"lead": True, "reviewer": True, "superuser": True,
              "author": False, "auditor": False, "operator": False, "outsider": False}  # fmt: skip


@pytest.mark.parametrize("persona", sorted(MAY_REVIEW))
@pytest.mark.parametrize("page", ["detail", "decide", "undo", "qa", "release"])
def test_every_task_page_is_open_only_to_those_with_review_output(persona, page, held, personas, superuser):
    user = superuser if persona == "superuser" else personas[persona]
    task, _ = held
    url = reverse(f"reviews-{page}", args=[task.pk])
    response = _client(user).get(url) if page == "detail" else _client(user).post(url, {"decision": "approve"})
    if not MAY_REVIEW[persona]:
        assert response.status_code == 404
        assert not AuditEvent.objects.filter(object_type="review_task", actor_name=user.username).exists()
    elif page == "detail":
        assert response.status_code == 200 and b"Review #" in response.content
    else:
        assert response.status_code in (200, 302, 400)


@pytest.mark.parametrize("page", ["queue", "mine", "next", "detail", "decide"])
def test_every_page_sends_the_signed_out_to_the_sign_in_page(page, held):
    task, _ = held
    url = reverse(f"reviews-{page}", args=[task.pk] if page in ("detail", "decide") else [])
    response = Client().get(url) if page != "decide" else Client().post(url, {"decision": "approve"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("reviews-login"))
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW


@pytest.mark.parametrize("persona", sorted(MAY_REVIEW))
def test_the_queue_never_shows_a_pipeline_without_review_output(persona, held, personas, superuser):
    user = superuser if persona == "superuser" else personas[persona]
    acme_task, globex_task = held
    response = _client(user).get(reverse("reviews-queue"))
    assert response.status_code == 200
    tasks = {t.pk for t in response.context["page"]}
    expected = {acme_task.pk} if MAY_REVIEW[persona] else set()
    if persona == "superuser":
        expected.add(globex_task.pk)
    assert tasks == expected
    if persona != "superuser":
        assert b"Globex" not in response.content


def test_the_queue_filters_by_pipeline_and_reason_and_counts(acme, superuser, author, reviewer, gated):
    rules = [{"field": "draft", "operator": "contains", "value": "refund"}]
    other = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-other", review_mode="exceptions",
                           rules=rules)  # fmt: skip
    hold(gated), hold(gated), hold(other, draft="A refund it is.")
    client = _client(reviewer)
    assert client.get(reverse("reviews-queue")).context["counts"]["total"] == 3
    assert client.get(reverse("reviews-queue"), {"pipeline": "acme-other"}).context["counts"]["total"] == 1
    assert client.get(reverse("reviews-queue"), {"reason": "rule"}).context["counts"]["total"] == 1
    assert client.get(reverse("reviews-queue"), {"reason": "always"}).context["counts"]["total"] == 2
    assert client.get(reverse("reviews-queue"), {"age": "24"}).context["counts"]["total"] == 0
    response = client.get(reverse("reviews-queue"), {"pipeline": "globex-replies"})
    assert response.status_code == 400 and "pipeline" in response.context["form"].errors


def test_the_queue_page_makes_the_same_number_of_queries_whatever_its_size(gated, reviewer):
    client = _client(reviewer)
    hold(gated)
    with CaptureQueriesContext(connection) as small:
        client.get(reverse("reviews-queue"))
    for _ in range(6):
        hold(gated)
    with CaptureQueriesContext(connection) as large:
        response = client.get(reverse("reviews-queue"))
    assert len(response.context["page"]) == 7
    assert len(large) == len(small)


def test_opening_a_task_claims_it_and_a_second_reviewer_is_told(held, reviewer, second_reviewer):
    task, _ = held
    _client(reviewer).get(reverse("reviews-detail", args=[task.pk]))
    task.refresh_from_db()
    assert task.claimed_by == reviewer
    response = _client(second_reviewer).get(reverse("reviews-detail", args=[task.pk]))
    assert "reviewer is working on this review" in response.content.decode()
    response = _client(second_reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 400 and "holds this review" in response.content.decode()
    assert not ReviewDecision.objects.exists()


def test_a_post_without_a_csrf_token_is_refused(held, reviewer):
    task, _ = held
    client = Client(enforce_csrf_checks=True)
    client.force_login(reviewer)
    response = client.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 403
    assert not ReviewDecision.objects.exists() and Run.objects.get(pk=task.run_id).status == "waiting_review"


def test_a_reject_without_a_reason_is_refused_naming_the_field(held, reviewer):
    task, _ = held
    response = _client(reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "reject", "reason": ""})
    assert response.status_code == 400
    assert "A rejection needs a reason." in response.content.decode()
    assert not ReviewDecision.objects.exists()


def _held(task: ReviewTask) -> dict:
    return StepRun.objects.get(run_id=task.run_id, position=task.position).input


def _edit(original: dict, **changes) -> dict:
    """The edit form's POST: one field per output field, in the held output's order."""
    data = {"decision": "edit"}
    for index, key in enumerate(original):
        value = changes.get(key, original[key])
        data[f"field_{index}"] = value if isinstance(value, str) else json.dumps(value)
    return data


def _name(original: dict, key: str) -> str:
    return f"field_{list(original).index(key)}"


def test_an_edit_that_breaks_a_field_is_refused_naming_the_field(gated, reviewer):
    task = task_of(hold(gated, confidence=0.4))
    held = _held(task)
    response = _client(reviewer).post(reverse("reviews-decide", args=[task.pk]), _edit(held, confidence="high"))
    assert response.status_code == 400
    page = response.content.decode()
    assert 'class="edit-field invalid"' in page and "Enter a number for confidence." in page
    assert "high" in page  # what the reviewer typed is kept
    assert not ReviewDecision.objects.exists()


def test_an_edit_is_made_field_by_field_and_shown_as_a_word_diff(gated, reviewer):
    task = task_of(hold(gated, draft="We will look into it.", confidence=0.4))
    held = _held(task)
    client = _client(reviewer)
    page = client.get(reverse("reviews-detail", args=[task.pk])).content.decode()
    assert f'name="{_name(held, "draft")}" value="We will look into it."' in page  # a line of text, not JSON
    assert f'<input type="number" name="{_name(held, "confidence")}"' in page
    response = client.post(reverse("reviews-decide", args=[task.pk]), _edit(held, draft="We will refund it today."))
    assert response.status_code == 302
    decision = ReviewDecision.objects.get()
    assert decision.edited_output == {**held, "draft": "We will refund it today."}
    page = client.get(reverse("reviews-detail", args=[task.pk])).content.decode()
    diff = page.split('<p class="diff">')[1].split("</p>")[0]
    assert diff == "We will <del>look into it.</del><ins>refund it today.</ins>"


def test_a_select_offers_the_choices_the_output_shape_names(acme, superuser, author, reviewer):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-labelled")
    pipeline.input_schema = {**pipeline.input_schema, "properties": {
        **pipeline.input_schema["properties"], "label": {"enum": ["refund", "question", "complaint"]}}}  # fmt: skip
    pipeline.save()
    with acting_as(superuser):
        release_to_production(release_cut(pipeline=pipeline, actor=author), actor=superuser)
    task = task_of(hold(pipeline, label="question"))
    client = _client(reviewer)
    page = client.get(reverse("reviews-detail", args=[task.pk])).content.decode()
    held = _held(task)
    assert f'<select name="{_name(held, "label")}"' in page and "complaint" in page
    response = client.post(reverse("reviews-decide", args=[task.pk]), _edit(held, label="refund"))
    assert response.status_code == 302
    assert ReviewDecision.objects.get().edited_output["label"] == "refund"
    task2 = task_of(hold(pipeline, label="question"))
    bad = _edit(_held(task2))
    bad[_name(_held(task2), "label")] = "spam"
    response = client.post(reverse("reviews-decide", args=[task2.pk]), bad)
    assert response.status_code == 400
    assert "label: choose one of refund, question, complaint." in response.content.decode()


def test_a_decision_on_a_decided_task_gets_a_clear_message(held, reviewer, second_reviewer):
    task, _ = held
    response = _client(reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 302
    # In its undo window the approver still holds the task.
    response = _client(second_reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 400 and "reviewer holds this review" in response.content.decode()
    finalize_approvals()
    response = _client(second_reviewer).post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 409 and "already decided" in response.content.decode()
    assert ReviewDecision.objects.count() == 1


def test_approving_through_the_web_resumes_the_run_when_the_undo_window_closes(held, reviewer):
    task, _ = held
    client = _client(reviewer)
    response = client.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    assert response.status_code == 302 and response["Location"].startswith(reverse("reviews-next"))
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW
    assert not ReviewDecision.objects.exists()
    page = client.get(reverse("reviews-queue")).content.decode()
    assert f'id="undo-{task.pk}"' in page  # the undo toast
    finalize_approvals()
    assert Run.objects.get(pk=task.run_id).status == Run.Status.QUEUED
    assert f'id="undo-{task.pk}"' not in client.get(reverse("reviews-queue")).content.decode()
    mine = client.get(reverse("reviews-mine"))
    assert [d.task_id for d in mine.context["page"]] == [task.pk]


def test_an_undone_approval_leaves_the_task_open_and_records_no_decision(held, reviewer):
    task, _ = held
    client = _client(reviewer)
    client.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    response = client.post(reverse("reviews-undo", args=[task.pk]))
    assert response.status_code == 302 and response["Location"] == task.get_absolute_url()
    assert finalize_approvals() == []
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.OPEN and task.claimed_by == reviewer
    assert Run.objects.get(pk=task.run_id).status == Run.Status.WAITING_REVIEW
    assert not ReviewDecision.objects.exists() and not PendingApproval.objects.exists()
    events = AuditEvent.objects.filter(object_type="review_task", object_id=task.pk).order_by("seq")
    actions = list(events.values_list("action", flat=True))
    assert actions[-2:] == ["review.approval_pending", "review.approval_undone"]
    assert "review.decided" not in actions
    # Once the window has closed there is nothing left to undo.
    client.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"})
    finalize_approvals()
    response = client.post(reverse("reviews-undo", args=[task.pk]), follow=True)
    assert "Too late to undo" in response.content.decode()
    assert ReviewDecision.objects.get().decision == "approve"


def test_two_reviewers_each_count_once_when_an_approval_is_in_its_window(acme, superuser, author, reviewer,
                                                                        second_reviewer):  # fmt: skip
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-two", required_approvals=2)
    task = task_of(hold(pipeline))
    first, second = _client(reviewer), _client(second_reviewer)
    assert first.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"}).status_code == 302
    assert second.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"}).status_code == 400
    finalize_approvals()  # the first approval is written; the claim goes back to the queue
    assert second.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"}).status_code == 302
    assert first.post(reverse("reviews-decide", args=[task.pk]), {"decision": "approve"}).status_code in (400, 409)
    finalize_approvals()
    assert list(ReviewDecision.objects.order_by("pk").values_list("reviewer__username", flat=True)) == [
        "reviewer", "reviewer2"]  # fmt: skip
    assert ReviewTask.objects.get(pk=task.pk).status == ReviewTask.Status.APPROVED


def test_the_task_page_shows_the_redacted_input_and_never_the_raw_one(acme, superuser, author, reviewer):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, slug="acme-redacted", redact=True)
    run = hold(pipeline, draft="Write to ada@example.com about it.")
    task = task_of(run)
    page = _client(reviewer).get(reverse("reviews-detail", args=[task.pk])).content.decode()
    assert "ada@example.com" not in page
    assert "Write to" in page and f"#{run.release.number}" in page and run.release.short_fingerprint in page


def test_a_qa_sample_is_marked_correct_or_incorrect_without_blocking(acme, superuser, author, reviewer):
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="never", sample_rate="1")
    run = hold(pipeline)
    task = ReviewTask.objects.get(run=run, kind="qa_sample")
    client = _client(reviewer)
    response = client.post(reverse("reviews-qa", args=[task.pk]), {"verdict": "incorrect", "category": ""})
    assert response.status_code == 400 and "Say what kind of error" in response.content.decode()
    response = client.post(reverse("reviews-qa", args=[task.pk]), {"verdict": "incorrect", "category": "tone",
                                                                   "note": "Too curt."})  # fmt: skip
    assert response.status_code == 302
    decision = ReviewDecision.objects.get(task=task)
    assert (decision.decision, decision.category, decision.reason) == ("incorrect", "tone", "Too curt.")
    assert Run.objects.get(pk=run.pk).status == Run.Status.COMPLETED
    assert AuditEvent.objects.filter(action="review.qa_recorded", object_id=str(task.pk)).exists()


def test_next_goes_to_the_soonest_deadline_not_held_by_someone_else(gated, reviewer, second_reviewer):
    first, second = task_of(hold(gated)), task_of(hold(gated))
    _client(second_reviewer).get(reverse("reviews-detail", args=[first.pk]))  # claims the first
    response = _client(reviewer).get(reverse("reviews-next"))
    assert response["Location"] == reverse("reviews-detail", args=[second.pk])


def test_opening_a_task_of_a_cancelled_run_closes_it(held, reviewer, superuser):
    from pipelines.runs.engine import run_cancel

    task, _ = held
    run_cancel(run=task.run, actor=superuser, reason="Customer withdrew the ticket.")
    response = _client(reviewer).get(reverse("reviews-detail", args=[task.pk]))
    assert response.status_code == 200
    task.refresh_from_db()
    assert task.status == ReviewTask.Status.CLOSED and task.claimed_by is None
    assert AuditEvent.objects.filter(action="review.closed", object_id=str(task.pk)).exists()
    assert task.pk not in {t.pk for t in _client(reviewer).get(reverse("reviews-queue")).context["page"]}


def test_a_held_run_of_a_rolled_back_release_is_flagged_in_the_queue_and_on_its_page(
    gated, reviewer, superuser, author
):
    run = hold(gated)
    task = task_of(run)
    client = _client(reviewer)
    assert "rolled back" not in client.get(reverse("reviews-queue")).content.decode()

    # A new release goes live while the run waits: the release it was made by is withdrawn.
    with acting_as(author):
        store = gated.steps.get(kind="deliver")
        store.name = "store the reply"
        store.save()
        newer = release_cut(pipeline=gated, actor=author)
    release_to_production(newer, actor=superuser)

    queue = client.get(reverse("reviews-queue")).content.decode()
    assert f'data-task="{task.pk}"' in queue and "rolled back" in queue
    page = client.get(reverse("reviews-detail", args=[task.pk])).content.decode()
    assert 'id="release-withdrawn"' in page and f"Release #{run.release.number} has been rolled back" in page
