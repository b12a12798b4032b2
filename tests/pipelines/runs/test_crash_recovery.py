"""A worker killed with SIGKILL in the middle of a run loses nothing: the run's
lease expires, recovery puts it back on the queue, another worker resumes it
from the step that had not completed, and no completed step runs again: not
the model call whose answer is on the record, and a webhook only under the
delivery id it was first sent with."""

import os
import signal

import pytest
from django.conf import settings

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import ModelConfig, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_start, runs_recover
from tests import factories
from tests.pipelines.chat_server import ChatServer, Reply, completion
from tests.pipelines.webhook_server import Answer, WebhookServer
from tests.releasing import release_to_production
from tests.workers import celery_worker, empty_queue, wait_for

LEASE_SECONDS = 2


@pytest.fixture
def slow_pipeline(superuser):
    """check → a model step on a real chat-completions server → parse → store."""
    server = ChatServer()
    empty_queue()  # the workers below see this test's messages only
    with server, acting_as(superuser):
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(
            workspace=workspace, body="Classify: {{ subject }}", variables=["subject"]
        )
        model = ModelConfig.objects.create(
            workspace=workspace, slug="remote", name="Remote", provider="openai", model_name="test-model",
            base_url=server.base_url, timeout_seconds=30,
        )  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        steps = [
            ("check", "validate", {}, None, None),
            ("classify", "model", {"output_field": "classification"}, prompt, model),
            ("parse", "parse", {"format": "label_confidence", "input_field": "classification"}, None, None),
            ("store", "deliver", {"channel": "stored"}, None, None),
        ]
        for position, (name, kind, config, step_prompt, step_model) in enumerate(steps, start=1):
            factories.StepFactory(
                pipeline=pipeline, position=position, name=name, kind=kind, config=config,
                prompt=step_prompt, model_config=step_model,
            )  # fmt: skip
        release = release_cut(pipeline=pipeline, actor=superuser)
        release_to_production(release, actor=superuser)
        yield pipeline, server


def _worker(tmp_path, name):
    broker = settings.CELERY_BROKER_URL
    return celery_worker(
        var_dir=settings.VAR_DIR,
        broker_url=None if broker.startswith("filesystem") else broker,
        log_path=tmp_path / f"{name}.log",
        extra_env={"KEEL_RUN_LEASE_SECONDS": str(LEASE_SECONDS)},
    )


@pytest.mark.django_db(transaction=True)
def test_a_run_survives_its_worker_being_killed_mid_step(slow_pipeline, tmp_path, settings):
    pipeline, server = slow_pipeline
    settings.KEEL_RUN_LEASE_SECONDS = LEASE_SECONDS
    # The first answer never comes in time: the worker is killed while it waits.
    answer = completion("label: billing\nconfidence: 0.90")
    server.script = [Reply(body=answer.body, delay=30), answer]

    with _worker(tmp_path, "first") as first:
        run, _ = run_start(pipeline=pipeline, input={"subject": "Charged twice"}, actor=None, trigger="cli")
        in_model_step = wait_for(lambda: len(server.requests) == 1, timeout=60)
        assert in_model_step, (tmp_path / "first.log").read_text()[-3000:]
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING
    assert StepRun.objects.get(run=run, position=1).status == StepRun.Status.COMPLETED
    assert StepRun.objects.get(run=run, position=2).status == StepRun.Status.RUNNING

    # Nothing is recovered while the dead worker's lease still holds; after it lapses, recovery takes it back.
    assert wait_for(lambda: run.pk in runs_recover(), timeout=30, interval=0.5)
    with _worker(tmp_path, "second"):
        settled = wait_for(lambda: Run.objects.get(pk=run.pk).status not in ("queued", "running"), timeout=90)
    assert settled, (tmp_path / "second.log").read_text()[-3000:]

    run.refresh_from_db()
    assert run.status == Run.Status.COMPLETED, run.failure_reason
    assert run.output["label"] == "billing"
    attempts = dict(StepRun.objects.filter(run=run).values_list("position", "attempts"))
    assert attempts == {1: 1, 2: 2, 3: 1, 4: 1}  # only the interrupted step ran again
    completed = AuditEvent.objects.filter(action="step.completed", object_id=str(run.pk))
    assert sorted(e.payload_data["position"] for e in completed) == [1, 2, 3, 4]  # each exactly once
    assert len(server.requests) == 2
    assert audit_chain_verify().ok


TRIALS = 20
SECRET_ENV = "TEST_WEBHOOK_SECRET"  # a name the test deployment allows credentials to use


@pytest.fixture
def webhook_pipeline(superuser):
    """check → a model on a real chat server → parse → a webhook to a real receiver → store."""
    empty_queue()  # the workers below see this test's messages only
    with ChatServer() as chat, WebhookServer() as receiver, acting_as(superuser):
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(workspace=workspace, body="Classify: {{ subject }}",
                                                 variables=["subject"])  # fmt: skip
        model = ModelConfig.objects.create(
            workspace=workspace, slug="remote", name="Remote", provider="openai", model_name="test-model",
            base_url=chat.base_url, timeout_seconds=30,
        )  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        secret = factories.credential_in(workspace, SECRET_ENV)
        steps = [
            ("check", "validate", {}, None, None),
            ("classify", "model", {"output_field": "classification"}, prompt, model),
            ("parse", "parse", {"format": "label_confidence", "input_field": "classification"}, None, None),
            ("notify", "deliver", {"channel": "webhook", "url": receiver.url, "credential": secret}, None, None),
            ("store", "deliver", {"channel": "stored"}, None, None),
        ]
        for position, (name, kind, config, step_prompt, step_model) in enumerate(steps, start=1):
            factories.StepFactory(pipeline=pipeline, position=position, name=name, kind=kind, config=config,
                                  prompt=step_prompt, model_config=step_model)  # fmt: skip
        release_to_production(release_cut(pipeline=pipeline, actor=superuser), actor=superuser)
        yield pipeline, chat, receiver


@pytest.mark.crash_trials
@pytest.mark.django_db(transaction=True)
def test_twenty_workers_killed_with_a_webhook_in_flight_lose_no_run_and_repeat_no_call(
    webhook_pipeline, tmp_path, settings
):
    """Each trial: a run reaches its webhook, whose receiver holds the answer;
    its worker is killed then; the next worker takes the run back once its
    lease has lapsed and finishes it, then starts the next trial's run."""
    pipeline, chat, receiver = webhook_pipeline
    settings.KEEL_RUN_LEASE_SECONDS = LEASE_SECONDS
    chat.route = lambda request: completion("label: billing\nconfidence: 0.90")
    # The first request under each delivery id is held (the worker dies waiting); a repeat is answered.
    receiver.route = lambda request, earlier: (
        Answer() if any(r["headers"].get("x-keel-delivery") == request["headers"].get("x-keel-delivery")
                        for r in earlier) else Answer(delay=60)
    )  # fmt: skip
    env = {"KEEL_RUN_LEASE_SECONDS": str(LEASE_SECONDS), SECRET_ENV: "s3cret-for-the-receiver"}
    broker = settings.CELERY_BROKER_URL
    runs: list[Run] = []

    def worker(name):
        return celery_worker(var_dir=settings.VAR_DIR, broker_url=None if broker.startswith("filesystem") else broker,
                             log_path=tmp_path / f"{name}.log", extra_env=env)  # fmt: skip

    for trial in range(TRIALS + 1):
        with worker(f"worker-{trial}") as process:
            if runs:  # the run the last worker died in: taken back once its lease lapsed
                recovered = wait_for(lambda: runs[-1].pk in runs_recover(), timeout=30, interval=0.5)
                assert recovered, _state(runs[-1], tmp_path / f"worker-{trial}.log")
                done = wait_for(lambda: Run.objects.get(pk=runs[-1].pk).status == Run.Status.COMPLETED, timeout=90)
                assert done, (tmp_path / f"worker-{trial}.log").read_text()[-3000:]
            if trial == TRIALS:
                break
            run, _ = run_start(pipeline=pipeline, input={"subject": f"trial {trial}"}, actor=None, trigger="cli")
            runs.append(run)
            sent = 2 * trial + 1  # this run's first webhook, after each earlier run's two
            in_flight = wait_for(lambda: len(receiver.requests) == sent, timeout=60)  # noqa: B023 - read at once
            assert in_flight, (tmp_path / f"worker-{trial}.log").read_text()[-3000:]
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    assert Run.objects.filter(pk__in=[r.pk for r in runs], status=Run.Status.COMPLETED).count() == TRIALS
    assert len(chat.requests) == TRIALS  # one model call a run: the answer was on the record
    assert len(receiver.requests) == 2 * TRIALS and len(receiver.delivery_ids) == TRIALS  # each resent once, same id
    for run in runs:
        attempts = dict(StepRun.objects.filter(run=run).values_list("position", "attempts"))
        assert attempts == {1: 1, 2: 1, 3: 1, 4: 2, 5: 1}, (run.pk, attempts)
        completed = AuditEvent.objects.filter(action="step.completed", object_id=str(run.pk))
        assert sorted(e.payload_data["position"] for e in completed) == [1, 2, 3, 4, 5]
    assert audit_chain_verify().ok


def _state(run: Run, log_path) -> str:
    """What a failed trial leaves to read: the run's row and its worker's log."""
    row = Run.objects.values("status", "lease_owner", "lease_expires_at", "attempts", "next_position").get(pk=run.pk)
    return f"{row}\n{log_path.read_text()[-3000:]}"
