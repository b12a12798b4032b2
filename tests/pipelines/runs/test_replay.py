"""Replay of demo runs from their recordings, and live against the models,
checked against the audit chain."""

import datetime
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit.context import acting_as
from audit.models import AuditEvent
from pipelines.models import ModelConfig, Pipeline, Run, StepRun
from pipelines.providers import openai as openai_provider
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_execute, run_start
from pipelines.runs.replay import run_replay, runs_replay
from tests.pipelines.chat_server import ChatServer, Reply, completion
from tests.releasing import release_to_production

TICKETS = json.loads((Path(__file__).resolve().parents[3] / "pipelines" / "fixtures" / "demo_tickets.json").read_text())


@pytest.fixture
def triage(db):
    call_command("keel_demo", stdout=io.StringIO())  # sets up and deploys the demo pipeline
    return Pipeline.objects.get(slug="support-triage")


@pytest.fixture
def execute(django_capture_on_commit_callbacks):
    """Start a run of the pipeline on a ticket and execute it here; returns the run."""

    def execute(pipeline: Pipeline, ticket: dict) -> Run:
        with django_capture_on_commit_callbacks(execute=False):
            run, _ = run_start(pipeline=pipeline, input=ticket, actor=None, trigger="cli", source="test")
        return run_execute(run.pk)

    return execute


@pytest.fixture
def ten_runs(triage, execute) -> list[Run]:
    return [execute(triage, ticket) for ticket in TICKETS[:10]]


@pytest.fixture
def chat_classifier(triage):
    """The demo pipeline with its classify step on a chat-completions server, released and deployed."""
    from django.contrib.auth import get_user_model

    admin = get_user_model().objects.get(username="admin")
    with ChatServer() as server, acting_as(admin):
        model = ModelConfig.objects.create(
            workspace=triage.workspace,
            slug="chat-classifier",
            name="Classifier on the loopback chat server",
            provider=ModelConfig.Provider.OPENAI,
            model_name="test-model",
            model_version="1",
            base_url=server.base_url,
            max_tokens=64,
        )
        step = triage.steps.get(name="classify")
        step.model_config = model
        step.full_clean()
        step.save()
        # The release is evaluated on the demo's cases before it may go live:
        # one classification per case, then the tests' own scripts begin.
        server.script = [completion("label: shipping\nconfidence: 0.90")
                         for _ in range(triage.evaluation_cases.count())]  # fmt: skip
        release_to_production(release_cut(pipeline=triage, actor=admin), actor=admin)
        assert server.script == []
        server.requests.clear()
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(openai_provider, "BACKOFF_BASE_SECONDS", 0.01)


def replay_command(*args) -> str:
    out = io.StringIO()
    call_command("run_replay", *[str(arg) for arg in args], stdout=out)
    return out.getvalue()


def test_every_step_of_ten_demo_runs_replays_matching(ten_runs):
    assert {run.status for run in ten_runs} == {Run.Status.COMPLETED, Run.Status.WAITING_REVIEW}
    for run in ten_runs:
        report = run_replay(run)
        positions = list(StepRun.objects.filter(run=run).order_by("position").values_list("position", flat=True))
        assert report.ok, report
        assert [step.position for step in report.steps] == positions
        assert all(step.match and step.replayed_sha256 == step.recorded_sha256 for step in report.steps)


def test_a_held_run_is_replayed_up_to_its_gate(triage, execute):
    run = execute(triage, {**TICKETS[0], "subject": "Refund please", "body": "I want my money back."})
    report = run_replay(run)
    assert run.status == Run.Status.WAITING_REVIEW
    assert report.ok and report.steps[-1].kind == "gate"


def test_the_command_exits_zero_and_prints_a_match_per_step(ten_runs):
    first, second = ten_runs[:2]
    out = replay_command(first.pk, second.pk)
    assert f"run {first.pk} step 3 model classify: match" in out
    assert f"run {second.pk} step 1 validate validate ticket: match" in out
    assert "DIVERGED" not in out
    assert "Replayed 2 runs" in out and "every step matched" in out


def test_a_tampered_model_response_is_caught_at_its_step(triage, execute):
    run = execute(triage, TICKETS[0])
    step = StepRun.objects.get(run=run, position=3)
    recordings = step.recordings
    recordings[0]["response_body"]["choices"][0]["message"]["content"] = "label: refund\nconfidence: 0.99"
    StepRun.objects.filter(pk=step.pk).update(recordings=recordings)

    report = run_replay(run)

    assert not report.ok
    assert [s.match for s in report.steps[:3]] == [True, True, False]
    assert "output hash differs from the chain" in report.steps[2].reason
    with pytest.raises(CommandError, match=f"diverged: runs {run.pk}"):
        replay_command(run.pk)


def test_a_changed_model_request_is_a_divergence(triage, execute):
    run = execute(triage, TICKETS[0])
    step = StepRun.objects.get(run=run, position=3)
    recordings = step.recordings
    recordings[0]["request"]["seed"] += 1
    StepRun.objects.filter(pk=step.pk).update(recordings=recordings)

    report = run_replay(run)

    assert not report.steps[2].match
    assert "the request differs from the recorded one in seed" in report.steps[2].reason


def test_a_tampered_output_with_a_matching_hash_is_still_caught_against_the_chain(triage, execute):
    from pipelines.runs.replay import _sha256

    run = execute(triage, TICKETS[0])
    step = StepRun.objects.get(run=run, position=4)
    forged = {**step.output, "label": "other"}
    StepRun.objects.filter(pk=step.pk).update(output=forged, output_sha256=_sha256(forged))

    report = run_replay(run)

    assert not report.ok and not report.steps[3].match
    assert report.steps[3].replayed_sha256 == report.steps[3].recorded_sha256  # the recordings still agree
    assert "the StepRun's output_sha256 differs from the chain" in report.steps[3].reason


def test_replaying_many_runs_in_chunks_agrees_with_replaying_each_and_names_the_tampered_one(ten_runs):
    tampered = ten_runs[6]
    step = StepRun.objects.get(run=tampered, position=3)
    StepRun.objects.filter(pk=step.pk).update(output={**step.output, "classification": "label: other"})
    runs = Run.objects.filter(pk__in=[run.pk for run in ten_runs]).select_related("pipeline", "release").order_by("pk")

    reports = list(runs_replay(runs, chunk=3))  # chunks of 3, 3, 3 and 1

    assert [report.run_id for report in reports] == [run.pk for run in ten_runs]
    assert [report.run_id for report in reports if not report.ok] == [tampered.pk]
    singly = [run_replay(run) for run in runs]
    assert [(r.ok, [s.replayed_sha256 for s in r.steps]) for r in reports] == [
        (r.ok, [s.replayed_sha256 for s in r.steps]) for r in singly
    ]


def test_a_tampered_run_input_is_caught_against_the_chain(triage, execute):
    run = execute(triage, TICKETS[0])
    Run.objects.filter(pk=run.pk).update(input={**run.input, "subject": "Something else"})

    report = run_replay(Run.objects.get(pk=run.pk))

    assert not report.ok
    assert "the run's input does not hash to the input_sha256 of its run.started event" in report.problems


def test_all_since_replays_every_run_created_since_that_day(triage, execute):
    runs = [execute(triage, ticket) for ticket in TICKETS[10:16]]
    Run.objects.filter(pk=runs[0].pk).update(created_at=timezone.now() - datetime.timedelta(days=3))
    today = timezone.now().date()

    out = replay_command("--all", "--since", today.isoformat())
    assert "Replayed 5 runs" in out and f"run {runs[0].pk} " not in out
    out = replay_command("--all", "--since", (today - datetime.timedelta(days=3)).isoformat())
    assert "Replayed 6 runs" in out
    assert "Replayed 0 runs" in replay_command("--all", "--since", (today + datetime.timedelta(days=1)).isoformat())


@pytest.mark.parametrize(
    ["args", "message"],
    [
        [["999999"], "No run with id 999999"],
        [["twelve"], "'twelve' is not a run id"],
        [[], "Give one or more run ids"],
        [["--all"], "--all needs --since"],
        [["--all", "--since", "2026-13-01"], "--since must be a date as YYYY-MM-DD"],
        [["--all", "--since", "20260101"], "--since must be a date as YYYY-MM-DD"],
        [["--all", "--since", "yesterday"], "--since must be a date as YYYY-MM-DD"],
    ],
)
def test_a_bad_run_id_or_date_is_a_clear_command_error(db, args, message):
    with pytest.raises(CommandError, match=message):
        replay_command(*args)


def test_replay_writes_nothing(ten_runs):
    def state():
        steps = StepRun.objects.order_by("pk").values_list("pk", "status", "output_sha256", "recordings", "attempts")
        return AuditEvent.objects.count(), Run.objects.count(), list(steps), list(Run.objects.values_list("status"))

    before = state()
    replay_command(*[run.pk for run in ten_runs])
    replay_command("--live", *[run.pk for run in ten_runs])
    assert state() == before


def test_live_replay_with_the_builtin_models_matches(ten_runs):
    report = run_replay(ten_runs[0], live=True)
    assert report.ok and report.live and len(report.steps) >= 6
    out = replay_command("--live", ten_runs[1].pk)
    assert "DIVERGED" not in out and "live" in out


def test_live_replay_shows_the_diff_when_the_model_answers_differently(chat_classifier, triage, execute):
    chat_classifier.script = [completion("label: shipping\nconfidence: 0.91")]
    run = execute(triage, TICKETS[0])
    assert StepRun.objects.get(run=run, position=4).output["label"] == "shipping"

    assert run_replay(run).ok  # from the recordings: the server is not asked
    assert len(chat_classifier.requests) == 1

    chat_classifier.script = [completion("label: billing\nconfidence: 0.88")]
    report = run_replay(run, live=True)
    classify = report.steps[2]
    assert not report.ok and not classify.match
    assert '-  "classification": "label: shipping\\nconfidence: 0.91",' in classify.diff
    assert '+  "classification": "label: billing\\nconfidence: 0.88",' in classify.diff
    assert len(chat_classifier.requests) == 2

    chat_classifier.script = [completion("label: billing\nconfidence: 0.88")]
    with pytest.raises(CommandError, match="diverged"):
        call_command("run_replay", "--live", str(run.pk), stdout=(out := io.StringIO()))
    assert f"run {run.pk} step 3 model classify: DIVERGED: output hash differs from the chain" in out.getvalue()
    assert '+  "label": "billing",' in out.getvalue()


def test_a_run_that_failed_at_its_model_fails_again_on_replay(chat_classifier, triage, execute):
    chat_classifier.script = [Reply(status=400, body={"error": "bad request"})]
    run = execute(triage, TICKETS[0])
    assert run.status == Run.Status.FAILED
    # The failed call is on the record: what was sent, the error, and each attempt with its status.
    (recording,) = StepRun.objects.get(run=run, position=3).recordings
    assert recording["request"]["model_name"] and "400" in recording["error"] and not recording["transient"]
    assert [attempt["status"] for attempt in recording["attempts"]] == [400]

    report = run_replay(run)

    assert report.ok, report
    assert report.steps[-1].position == 3 and "failed again as recorded" in report.steps[-1].reason
    assert len(chat_classifier.requests) == 1
