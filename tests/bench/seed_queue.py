"""Open review tasks for the queue-page benchmark, run by ``manage.py shell -c``
in the checkout measured (models only, through ``apps.get_model``): held runs
of the demo's support-triage pipeline, each with its gate step and an open
pre-publication task, topped up to ``KEEL_BENCH_OPEN_TASKS``. The runs are
marked ``source="bench-queue"``; none is ever executed."""

import hashlib
import json
import os
import time
from datetime import timedelta

from django.apps import apps
from django.db import connection, transaction
from django.utils import timezone

Pipeline = apps.get_model("pipelines", "Pipeline")
Run = apps.get_model("pipelines", "Run")
StepRun = apps.get_model("pipelines", "StepRun")
ReviewTask = apps.get_model("reviews", "ReviewTask")
BATCH = 5_000

target = int(os.environ["KEEL_BENCH_OPEN_TASKS"])
pipeline = Pipeline.objects.get(slug="support-triage")
release = pipeline.deployments.get(environment="production").release
gate = next(n for n, step in enumerate(release.snapshot_data["steps"], start=1) if step["kind"] == "gate")
# Held at the gate: a decision resumes the run from there.
Run.objects.filter(source="bench-queue", status=Run.Status.WAITING_REVIEW).exclude(next_position=gate).update(
    next_position=gate
)
missing = target - ReviewTask.objects.filter(pipeline=pipeline, status=ReviewTask.Status.OPEN).count()
if missing > 0:
    print(f"seeding {missing:,} open review tasks...", flush=True)
    started = time.perf_counter()
    now = timezone.now()
    decision = {"passed": False, "reasons": ["low_confidence"], "rule_hits": [], "confidence": 0.5, "sampled": False,
                "review_mode": "exceptions"}  # fmt: skip
    done = 0
    while done < missing:
        count = min(BATCH, missing - done)
        documents = [
            {"subject": f"Ticket {done + i}", "body": "Where is my parcel?", "customer_email": "ada@example.com",
             "label": "shipping", "confidence": 0.5, "draft": "Thanks for writing; we are on it."}
            for i in range(count)
        ]  # fmt: skip
        with transaction.atomic():
            runs = Run.objects.bulk_create(
                Run(pipeline=pipeline, release=release, environment="production", input=document,
                    input_sha256=hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest(),
                    trigger="cli", source="bench-queue", seed=1, status=Run.Status.WAITING_REVIEW,
                    next_position=gate)
                for document in documents
            )  # fmt: skip
            StepRun.objects.bulk_create(
                StepRun(run=run, position=gate, name="human gate", kind="gate", status=StepRun.Status.WAITING_REVIEW,
                        input=run.input, output=run.input, output_sha256=run.input_sha256, decision=decision)
                for run in runs
            )  # fmt: skip
            ReviewTask.objects.bulk_create(
                ReviewTask(run=run, pipeline=pipeline, position=gate, kind=ReviewTask.Kind.PRE_PUBLICATION,
                           reasons=decision["reasons"], reason_codes=",low_confidence,", confidence=0.5,
                           deadline_at=now + timedelta(minutes=done + i), created_at=now,
                           second_deadline_at=now + timedelta(hours=8))
                for i, run in enumerate(runs)
            )  # fmt: skip
        done += count
    if connection.vendor == "postgresql" and missing > BATCH:  # a top-up of a few leaves the statistics true
        with connection.cursor() as cursor:
            for table in ("pipelines_run", "pipelines_steprun", "reviews_reviewtask"):
                cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"seeded in {time.perf_counter() - started:.1f} s", flush=True)
