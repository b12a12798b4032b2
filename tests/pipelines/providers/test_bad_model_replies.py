"""A model reply that cannot be used costs one call and ends its run: the
worker records the step's failure (``invalid_response``, with the bytes as
they came) and fails the run with the reason; nothing calls the model again,
not a retry, not recovery, not a second delivery of the task."""

import base64
import re

import pytest
from django.conf import settings

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.models import ModelConfig, Run, StepRun
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start, runs_recover
from pipelines.runs.replay import run_replay
from tests import factories
from tests.pipelines.bad_replies import BAD_REPLIES, GOOD, REPLY_LIMIT
from tests.pipelines.chat_server import ChatServer, Reply
from tests.releasing import release_to_production
from tests.workers import celery_worker, wait_for


@pytest.fixture
def server():
    with ChatServer() as server:
        yield server


@pytest.fixture
def remote_pipeline(superuser, server):
    """check → classify on the chat server → parse → store."""
    with acting_as(superuser):
        workspace = factories.WorkspaceFactory(owner=superuser)
        prompt = factories.PromptTemplateFactory(workspace=workspace, body="Classify: {{ subject }}",
                                                 variables=["subject"])  # fmt: skip
        model = ModelConfig.objects.create(
            workspace=workspace, slug="remote", name="Remote", provider="openai", model_name="test-model",
            base_url=server.base_url, timeout_seconds=10,
        )  # fmt: skip
        pipeline = factories.PipelineFactory(workspace=workspace)
        steps = [
            ("check", "validate", {}, None, None),
            ("classify", "model", {"output_field": "classification"}, prompt, model),
            ("parse", "parse", {"format": "label_confidence", "input_field": "classification"}, None, None),
            ("store", "deliver", {"channel": "stored"}, None, None),
        ]
        for position, (name, kind, config, step_prompt, step_model) in enumerate(steps, start=1):
            factories.StepFactory(pipeline=pipeline, position=position, name=name, kind=kind, config=config,
                                  prompt=step_prompt, model_config=step_model)  # fmt: skip
        release_to_production(release_cut(pipeline=pipeline, actor=superuser), actor=superuser)
    return pipeline


def _assert_failed_once_with_its_bytes(run: Run, reply: Reply, reason: str) -> None:
    assert run.status == Run.Status.FAILED
    assert run.failure_reason.startswith("step 2 (classify): model call failed: invalid_response: ")
    assert reason in run.failure_reason
    step = StepRun.objects.get(run=run, position=2)
    assert (step.status, step.attempts) == (StepRun.Status.FAILED, 1)
    (recording,) = step.recordings
    kept = base64.b64decode(recording["received"]["body_base64"])
    assert reply.body.startswith(kept) and kept  # the reply as it came (up to the size limit)
    assert recording["error"] == run.failure_reason.removeprefix("step 2 (classify): model call failed: ")
    failed = AuditEvent.objects.get(action="run.failed", object_id=str(run.pk)).payload_data
    assert failed["position"] == 2 and "invalid_response" in failed["error"]


@pytest.mark.parametrize(("reply", "reason"), BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_a_bad_reply_costs_one_call_and_fails_the_run_with_the_reason(
    remote_pipeline, server, settings, django_capture_on_commit_callbacks, reply, reason
):
    settings.KEEL_MODEL_REPLY_MAX_BYTES = REPLY_LIMIT
    server.script = [reply] + [Reply(body=GOOD, content_type="application/json")] * 3
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(pipeline=remote_pipeline, input={"subject": "Charged twice"}, actor=None, trigger="cli")

    # What the worker's task runs; then again, as a redelivered message would.
    assert run_execute(run.pk).status == Run.Status.FAILED
    assert run_execute(run.pk) is None
    assert runs_recover() == []

    run.refresh_from_db()
    _assert_failed_once_with_its_bytes(run, reply, reason)
    assert len(server.requests) == 1
    report = run_replay(run)  # the failure replays from its recording, without a call
    assert report.ok, report.problems
    assert len(server.requests) == 1
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_on_a_real_worker_every_bad_reply_costs_one_call_and_fails_its_run(remote_pipeline, server, tmp_path):
    """All the bad replies at once, each chosen by the subject its request carries."""
    replies = {case: reply for case, (reply, _) in BAD_REPLIES.items()}
    replies["good"] = Reply(body=GOOD, content_type="application/json")

    def route(request: dict) -> Reply:
        prompt = request["body"]["messages"][0]["content"]
        return replies[re.fullmatch(r"Classify: (.+)", prompt).group(1)]

    server.route = route
    broker = settings.CELERY_BROKER_URL
    with celery_worker(
        var_dir=settings.VAR_DIR,
        broker_url=None if broker.startswith("filesystem") else broker,
        log_path=tmp_path / "worker.log",
        extra_env={"KEEL_MODEL_REPLY_MAX_BYTES": str(REPLY_LIMIT)},
    ):
        runs = {case: run_start(pipeline=remote_pipeline, input={"subject": case}, actor=None, trigger="cli")[0]
                for case in replies}  # fmt: skip
        settled = wait_for(lambda: not Run.objects.filter(status__in=["queued", "running"]).exists(), timeout=120)
    assert settled, (tmp_path / "worker.log").read_text()[-3000:]

    asked = [request["body"]["messages"][0]["content"] for request in server.requests]
    assert sorted(asked) == sorted(f"Classify: {case}" for case in replies)  # one call each
    for case, run in runs.items():
        run.refresh_from_db()
        if case == "good":
            assert run.status == Run.Status.COMPLETED and run.output["label"] == "billing"
        else:
            _assert_failed_once_with_its_bytes(run, replies[case], BAD_REPLIES[case][1])
    assert audit_chain_verify().ok
