"""A rollback takes effect on a running worker with no restart: the next run
executes the earlier release."""

import pytest
from django.conf import settings

from pipelines.models import Run
from pipelines.releases.cut import release_cut
from pipelines.releases.deploy import deployment_rollback
from pipelines.runs.engine import run_start
from tests.releasing import classifier_pipeline, prompt_edit, release_to_production
from tests.workers import celery_worker, wait_for


@pytest.mark.django_db(transaction=True)
def test_a_running_worker_executes_the_earlier_release_right_after_a_rollback(
    acme, superuser, author, lead, operator, tmp_path
):
    pipeline = classifier_pipeline(acme, actor=superuser)
    first = release_cut(pipeline=pipeline, actor=author)
    release_to_production(first, approver=lead)
    prompt_edit(pipeline, actor=author, body="Second: {{ subject }}")
    second = release_cut(pipeline=pipeline, actor=author)
    release_to_production(second, approver=lead)
    broker = settings.CELERY_BROKER_URL
    with celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                       log_path=tmp_path / "worker.log"):  # fmt: skip
        before, _ = run_start(pipeline=pipeline, input={"subject": "Parcel lost"}, actor=None, trigger="cli")
        assert wait_for(lambda: Run.objects.get(pk=before.pk).status == "completed", timeout=90)
        deployment_rollback(pipeline=pipeline, to_number=first.number, actor=operator, reason="test")
        after, _ = run_start(pipeline=pipeline, input={"subject": "Parcel lost again"}, actor=None, trigger="cli")
        assert wait_for(lambda: Run.objects.get(pk=after.pk).status == "completed", timeout=90)
    assert (Run.objects.get(pk=before.pk).release, Run.objects.get(pk=after.pk).release) == (second, first)
    assert Run.objects.get(pk=after.pk).output["label"] == "shipping"
