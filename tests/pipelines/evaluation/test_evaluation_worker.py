"""Evaluation runs on a worker, never in the web request, and shows its progress."""

import pytest
from celery import current_app
from django.conf import settings
from django.urls import reverse

from audit.models import AuditEvent
from pipelines.evaluation.services import evaluation_execute, release_evaluate
from pipelines.models import Evaluation, EvaluationCase, ModelConfig
from pipelines.releases.cut import release_cut
from tests.pipelines.chat_server import ChatServer, Reply, completion
from tests.releasing import classifier_pipeline
from tests.workers import celery_worker, wait_for


@pytest.fixture
def listener():
    with ChatServer() as server:
        yield server


def _remote_pipeline(acme, superuser, listener, *, cases: int = 2):
    """A classifier whose model is an OpenAI-compatible one on the listener."""
    pipeline = classifier_pipeline(acme, actor=superuser)
    ModelConfig.objects.filter(steps__pipeline=pipeline).update(provider="openai", model_name="gpt",
                                                                base_url=listener.base_url)  # fmt: skip
    for n in range(cases):
        EvaluationCase.objects.create(pipeline=pipeline, name=f"case {n}", input={"subject": f"Parcel {n}"},
                                      expected_label="shipping")  # fmt: skip
    return pipeline


def test_the_evaluate_action_queues_an_evaluation_and_calls_no_model_in_the_request(
    client, acme, superuser, author, listener
):
    pipeline = _remote_pipeline(acme, superuser, listener)
    release = release_cut(pipeline=pipeline, actor=author)
    client.force_login(author)
    page = client.post(reverse("admin:pipelines_release_changelist"),
                       {"action": "evaluate_releases", "_selected_action": [release.pk]}, follow=True)  # fmt: skip
    assert "evaluation of 2 cases queued" in page.content.decode()
    assert listener.requests == []
    evaluation = Evaluation.objects.get(release=release)
    assert (evaluation.status, evaluation.done, evaluation.total, evaluation.created_by) == ("queued", 0, 2, author)
    event = AuditEvent.objects.get(action="release.evaluation_requested")
    assert event.payload_data == {"number": release.number, "evaluation": evaluation.pk, "cases": 2}
    assert not evaluation.results.exists() and not AuditEvent.objects.filter(action="release.evaluated").exists()


def test_an_evaluation_is_run_once_and_counts_its_progress(acme, superuser, author, listener):
    listener.script = [completion("label: shipping\nconfidence: 0.9")] * 2
    release = release_cut(pipeline=_remote_pipeline(acme, superuser, listener), actor=author)
    evaluation = release_evaluate(release=release, actor=author)
    done = evaluation_execute(evaluation.pk)
    assert (done.status, done.done, done.total, done.cases, done.passed) == ("done", 2, 2, 2, 2)
    assert evaluation_execute(evaluation.pk) is None  # claimed once: a redelivered message does nothing
    assert len(listener.requests) == 2
    assert AuditEvent.objects.get(action="release.evaluated").actor_id == author.pk


def test_an_evaluation_that_cannot_finish_is_marked_failed_with_its_reason(acme, superuser, author, listener):
    release = release_cut(pipeline=_remote_pipeline(acme, superuser, listener), actor=author)
    evaluation = release_evaluate(release=release, actor=author)

    def broken(request):
        raise RuntimeError("the sandbox lost its footing")

    with pytest.raises(RuntimeError):
        evaluation_execute(evaluation.pk, call=broken)
    evaluation.refresh_from_db()
    assert evaluation.status == "failed" and "the sandbox lost its footing" in evaluation.error
    event = AuditEvent.objects.get(action="release.evaluation_failed")
    assert event.payload_data["evaluation"] == evaluation.pk


def test_the_evaluation_task_has_a_time_limit(acme, superuser, author, listener, django_capture_on_commit_callbacks):
    from pipelines.tasks.evaluation import evaluation_execute_task

    release = release_cut(pipeline=_remote_pipeline(acme, superuser, listener), actor=author)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        release_evaluate(release=release, actor=author)
    [send] = enqueued
    assert (send.__self__.options["time_limit"], send.__self__.options["soft_time_limit"]) == (
        settings.KEEL_EVALUATION_TIME_LIMIT, settings.KEEL_EVALUATION_TIME_LIMIT - 5)  # fmt: skip

    task = current_app.tasks["pipelines.evaluate_release"]
    assert task.name == evaluation_execute_task.name
    assert task.time_limit == settings.KEEL_EVALUATION_TIME_LIMIT
    assert 0 < task.soft_time_limit < task.time_limit


def _broker():
    broker = settings.CELERY_BROKER_URL
    return None if broker.startswith("filesystem") else broker


@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_the_evaluation_and_its_page_shows_the_progress(
    client, acme, superuser, author, listener, tmp_path
):
    listener.script = [completion("label: shipping\nconfidence: 0.9"), completion("label: refund\nconfidence: 0.9")]
    release = release_cut(pipeline=_remote_pipeline(acme, superuser, listener), actor=author)
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=_broker(), log_path=tmp_path / "worker.log"):
        evaluation = release_evaluate(release=release, actor=author)
        assert wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).status == "done", timeout=90)
    evaluation.refresh_from_db()
    assert (evaluation.done, evaluation.total, evaluation.cases, evaluation.passed) == (2, 2, 2, 1)
    client.force_login(author)
    page = client.get(reverse("admin:pipelines_evaluation_change", args=[evaluation.pk])).content.decode()
    assert '<div class="readonly">2 of 2 cases</div>' in page and '<div class="readonly">Done</div>' in page


@pytest.mark.django_db(transaction=True)
def test_an_evaluation_past_its_time_limit_is_marked_failed(acme, superuser, author, listener, settings, tmp_path):
    settings.KEEL_EVALUATION_TIME_LIMIT = 10  # the message carries the limits of the process that asks
    listener.script = [Reply(delay=20.0, body=completion().body)]
    release = release_cut(pipeline=_remote_pipeline(acme, superuser, listener, cases=1), actor=author)
    # Time limits hold in the prefork pool (Keel's production pool), not in the solo one.
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=_broker(), log_path=tmp_path / "worker.log",
                       extra_env={"KEEL_EVALUATION_TIME_LIMIT": "10"}, pool="prefork"):  # fmt: skip
        evaluation = release_evaluate(release=release, actor=author)
        assert wait_for(lambda: Evaluation.objects.get(pk=evaluation.pk).status == "failed", timeout=90)
    evaluation.refresh_from_db()
    assert "longer than its limit (10 s)" in evaluation.error
    assert AuditEvent.objects.filter(action="release.evaluation_failed").exists()
