"""The metrics page: is the pipeline paying?"""

from datetime import UTC

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from pipelines.runs.engine import run_execute
from reviews.metrics import percentile, review_metrics, review_metrics_daily, wilson_interval
from reviews.models import PipelineReviewSettings, ReviewTask
from reviews.services import review_decide, review_qa_record
from tests.reviews.conftest import gated_pipeline, hold, task_of


def test_the_wilson_interval_matches_its_textbook_values():
    low, high = wilson_interval(5, 10)
    assert round(low, 4) == 0.2366 and round(high, 4) == 0.7634
    low, high = wilson_interval(0, 10)
    assert low == 0 and round(high, 4) == 0.2775
    assert wilson_interval(0, 0) is None


def test_percentiles_are_nearest_rank():
    assert percentile([4, 1, 3, 2], 0.5) == 2 and percentile(list(range(1, 101)), 0.95) == 95
    assert percentile([], 0.5) is None


@pytest.fixture
def worked(acme, superuser, author, reviewer, second_reviewer):
    """Two passed and sampled outputs (one marked incorrect), three held: approved, edited, rejected."""
    rules = [{"field": "draft", "operator": "contains", "value": "hold"}]
    pipeline = gated_pipeline(acme, superuser=superuser, author=author, review_mode="exceptions", rules=rules,
                              sample_rate="1")  # fmt: skip
    passed = [hold(pipeline, subject=f"fine {n}", draft="All good.") for n in (1, 2)]
    held = [hold(pipeline, subject=f"held {n}", draft="Please hold.") for n in (1, 2, 3)]
    qa = [ReviewTask.objects.get(run=run, kind="qa_sample") for run in passed]
    review_qa_record(task=qa[0], actor=reviewer, verdict="correct")
    review_qa_record(task=qa[1], actor=second_reviewer, verdict="incorrect", category="tone")
    review_decide(task=task_of(held[0]), actor=reviewer, decision="approve")
    review_decide(task=task_of(held[1]), actor=reviewer, decision="edit",
                  edited_output={**held[1].input, "draft": "Edited."})  # fmt: skip
    review_decide(task=task_of(held[2]), actor=reviewer, decision="reject", reason="No.")
    run_execute(held[0].pk), run_execute(held[1].pk)
    return pipeline


def test_it_counts_gates_decisions_samples_and_time_saved(worked, superuser):
    from reviews.services import review_settings_set

    review_settings_set(pipeline=worked, minutes_per_item=6, actor=worked.owner)
    m = review_metrics(pipeline=worked)
    assert (m.gated, m.passed, m.held, m.sampled) == (5, 2, 3, 2)
    assert (m.decided, m.approved, m.edited, m.rejected) == (3, 2, 1, 1)
    assert (m.approval_rate, m.edit_rate, m.rejection_rate) == (1 / 3, 1 / 3, 1 / 3)
    assert (m.qa_checked, m.qa_incorrect, m.qa_error_rate) == (2, 1, 0.5)
    assert m.breaches == 0 and m.median_seconds is not None
    assert m.delivered_unedited == 3 and m.hours_saved == pytest.approx(0.3)


def test_the_metrics_page_is_for_those_who_review_or_view_the_pipeline(worked, reviewer, outsider, lead):
    url = reverse("reviews-metrics", args=[worked.slug])
    for user, status in ((reviewer, 200), (lead, 200), (outsider, 404)):
        client = Client()
        client.force_login(user)
        assert client.get(url).status_code == status
    client = Client()
    client.force_login(reviewer)
    assert client.post(url, {"minutes_per_item": "5"}).status_code == 403  # not the owner
    assert not PipelineReviewSettings.objects.exists()
    client.force_login(lead)
    assert 'id="minutes-form"' not in client.get(url).content.decode()  # may change the pipeline, does not own it
    assert client.post(url, {"minutes_per_item": "5"}).status_code == 403
    assert not PipelineReviewSettings.objects.exists()
    client.force_login(worked.owner)
    assert client.post(url, {"minutes_per_item": "-1"}).status_code == 400
    assert client.post(url, {"minutes_per_item": "5"}).status_code == 302
    assert PipelineReviewSettings.objects.get(pipeline=worked).minutes_per_item == 5
    assert AuditEvent.objects.get(action="review_settings.changed").actor_name == worked.owner.get_username()
    page = client.get(url).content.decode()
    assert "50.0%" in page  # the sampled error rate, as a percentage
    assert 'id="minutes-form"' in page  # the owner sets it


def test_the_metrics_page_shows_percentages_and_charts_and_the_minutes_form_only_to_its_owner(worked, reviewer):
    client = Client()
    client.force_login(reviewer)
    page = client.get(reverse("reviews-metrics", args=[worked.slug])).content.decode()
    assert 'id="minutes-form"' not in page  # a reviewer neither owns nor may change the pipeline
    assert "0.333" not in page and "0.667" not in page
    for chart in ("volume", "held", "rates", "wait"):
        assert f'<svg class="chart" id="chart-{chart}"' in page
    assert "<script" not in page.split("</main>")[0]  # drawn on the server: no script in the page body
    assert '<span class="figure" id="held-share">60%</span>' in page  # 3 of 5 held
    assert '<span class="figure" id="approval-rate">33%</span>' in page
    assert '<span class="figure" id="edit-rate">33%</span>' in page


def test_the_daily_series_counts_each_day_and_fills_the_empty_ones(worked):
    days = review_metrics_daily(pipeline=worked, days=30)
    assert len(days) == 30 and days[-1].date == timezone.now().astimezone(UTC).date()
    today = days[-1]
    assert (today.gated, today.held, today.decided) == (5, 3, 3)
    assert (today.approved, today.edited, today.rejected) == (2, 1, 1)
    assert today.held_share == pytest.approx(0.6) and today.median_seconds is not None
    assert all(day.gated == 0 and day.decided == 0 and day.median_seconds is None for day in days[:-1])
