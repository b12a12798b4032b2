"""Release control: how fast a rollback takes effect, and how fast a release
is evaluated.

- ``rollback_latency_s``: with a real worker running, the median over
  ``ROLLBACK_TRIALS`` of the time from calling ``deployment_rollback`` until the
  first run started after it, on the earlier release, has completed on the
  worker (the call, then ``run_start`` of one demo ticket, then its execution).
  Between trials the later release is deployed again. Target: under 1 s.
- ``eval_cases_per_s``: ``release_evaluate`` of the demo pipeline's live
  release (built-in models) over ``EVAL_CASES`` cases made from the sample
  tickets; cases over the seconds the whole evaluation took, results recorded.

Both use a pipeline ``bench-release`` (a copy of the demo's steps) or the demo
pipeline itself, set up once through release control like any change: cut by
the admin, approved by the lead, evaluated, deployed. The worker and broker are
the engine benchmark's (``KEEL_BENCH_BROKER_URL``, Redis database 11 unless set).
"""

import statistics
import time

ROLLBACK_TRIALS = 10
EVAL_CASES = 200


def run() -> dict[str, float]:
    from config.celery import app
    from tests.bench import bench_engine

    app.conf.broker_url = bench_engine.BROKER_URL
    app.conf.broker_transport_options = {"visibility_timeout": 3600}
    demo = bench_engine._ensure_demo()
    figures = {"eval_cases_per_s": _eval_figure(demo)}
    figures["rollback_latency_s"] = _rollback_figure()
    return figures


def _people():
    from django.contrib.auth import get_user_model

    users = get_user_model().objects
    return users.get(username="admin"), users.get(username="lead")


def _through_release_control(release) -> None:
    """Submitted by its author, approved by the lead, evaluated: deployable."""
    from audit.context import acting_as
    from pipelines.evaluation.services import evaluation_execute, release_evaluate
    from pipelines.releases.approval import release_approve, release_state, release_submit

    admin, lead = _people()
    with acting_as(admin):
        if release_state(release) == "draft":
            release_submit(release=release, actor=admin, notes="Benchmark")
    with acting_as(lead):
        if release_state(release) == "submitted":
            release_approve(release=release, actor=lead)
        evaluation_execute(release_evaluate(release=release, actor=lead).pk)  # here, as the worker would


def _eval_figure(demo) -> float:
    from pipelines.evaluation.services import evaluation_execute, release_evaluate
    from pipelines.models import EvaluationCase
    from pipelines.releases.gate import evaluation_latest
    from tests.bench.bench_engine import _tickets

    tickets = _tickets()
    have = set(demo.evaluation_cases.values_list("name", flat=True))
    missing = [
        EvaluationCase(pipeline=demo, name=f"bench ticket {n}", input=tickets[n % len(tickets)])
        for n in range(EVAL_CASES)
        if f"bench ticket {n}" not in have
    ]
    EvaluationCase.objects.bulk_create(missing)
    live = demo.deployments.get(environment="production").release
    _, lead = _people()
    queued = release_evaluate(release=live, actor=lead)  # the live release: no baseline to run
    began = time.perf_counter()
    evaluation = evaluation_execute(queued.pk)  # the worker's share, timed here
    elapsed = time.perf_counter() - began
    assert evaluation_latest(live) == evaluation and evaluation.cases >= EVAL_CASES
    return evaluation.cases / elapsed


def _bench_pipeline():
    """bench-release with two deployable releases; returns (pipeline, earlier, later)."""
    from django.db import transaction

    from audit.context import acting_as
    from pipelines.models import EvaluationCase, Pipeline, Step
    from pipelines.releases.cut import release_cut
    from pipelines.releases.gate import release_gate_problems

    admin, _ = _people()
    with acting_as(admin), transaction.atomic():
        pipeline = Pipeline.objects.filter(slug="bench-release").first()
        if pipeline is None:
            demo = Pipeline.objects.get(slug="support-triage")
            pipeline = Pipeline.objects.create(workspace=demo.workspace, slug="bench-release", name="Bench release",
                                               input_schema=demo.input_schema, owner=admin)  # fmt: skip
            for step in demo.steps.order_by("position"):
                Step.objects.create(pipeline=pipeline, position=step.position, name=step.name, kind=step.kind,
                                    config=step.config, prompt=step.prompt, model_config=step.model_config)  # fmt: skip
    releases = list(pipeline.releases.order_by("number"))
    while len(releases) < 2:
        with acting_as(admin):
            pipeline.description = f"Benchmark version {len(releases) + 1}"
            pipeline.save()
            pipeline.name = f"Bench release v{len(releases) + 1}"
            pipeline.save()
            step = pipeline.steps.get(kind="deliver")
            step.name = f"store result v{len(releases) + 1}"
            step.save()
            releases.append(release_cut(pipeline=pipeline, actor=admin, notes="Benchmark"))
    if not pipeline.evaluation_cases.exists():
        demo_cases = EvaluationCase.objects.filter(pipeline__slug="support-triage", name__startswith="sample ticket")
        EvaluationCase.objects.bulk_create(
            EvaluationCase(
                pipeline=pipeline,
                name=c.name,
                input=c.input,
                output_schema=c.output_schema,
                forbidden_phrases=c.forbidden_phrases,
            )  # fmt: skip
            for c in demo_cases
        )
    earlier, later = releases[-2], releases[-1]
    for release in (earlier, later):
        if release_gate_problems(release):
            _through_release_control(release)
    return pipeline, earlier, later


def _rollback_figure() -> float:
    from audit.context import acting_as
    from pipelines.models import Run
    from pipelines.releases.deploy import deployment_rollback, deployment_set
    from pipelines.runs.engine import run_start
    from tests.bench.bench_engine import _tickets, _wait, _worker

    admin, _ = _people()
    pipeline, earlier, later = _bench_pipeline()
    ticket = _tickets()[0]
    latencies = []
    with _worker("--pool=solo"), acting_as(admin):
        for trial in range(ROLLBACK_TRIALS):
            live = pipeline.deployments.filter(environment="production").first()
            if live is None or live.release_id != later.pk:
                deployment_set(release=later, environment="production", actor=admin, reason="Benchmark")
            began = time.perf_counter()
            deployment_rollback(pipeline=pipeline, to_number=earlier.number, actor=admin, reason="Benchmark")
            run, _ = run_start(pipeline=pipeline, input={**ticket, "subject": f"Rollback trial {trial}"},
                               actor=None, trigger="cli", source="bench-rollback")  # fmt: skip
            settled = Run.objects.filter(pk=run.pk, status__in=(*Run.FINISHED, Run.Status.WAITING_REVIEW))
            done = _wait(settled.exists, timeout=60, interval=0.001)
            elapsed = time.perf_counter() - began
            if not done:
                raise RuntimeError(f"run {run.pk} did not finish on the worker")
            if run.release_id != earlier.pk:
                raise RuntimeError(
                    f"run {run.pk} ran release {run.release_id}, not the rolled-back-to #{earlier.number}"
                )
            latencies.append(elapsed)
    return statistics.median(latencies)
