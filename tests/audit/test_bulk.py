"""audit.bulk.insert_dicts: rows as one JSON parameter on PostgreSQL, as
Model instances through insert_rows on SQLite; the same rows either way."""

import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command

from audit.bulk import insert_dicts
from pipelines.models import Pipeline, Run, StepRun
from pipelines.runs.engine import run_start


@pytest.fixture
def triage_run(db, django_capture_on_commit_callbacks):
    call_command("keel_demo", stdout=io.StringIO())
    ticket = {"subject": "Hello", "body": "Where is my parcel?", "customer_email": "ada@example.com"}
    with django_capture_on_commit_callbacks(execute=False):
        run, _ = run_start(
            pipeline=Pipeline.objects.get(slug="support-triage"), input=ticket, actor=None, trigger="cli"
        )
    return run


def _row(run: Run, position: int, **fields) -> dict:
    return {
        "run_id": run.pk, "position": position, "name": f"step {position}", "kind": "transform", "status": "completed",
        "input": {"a": [1, 2.5, None, True], "é": "ü"}, "output": None, "output_sha256": "", "decision": None,
        "recordings": [], "input_tokens": 0, "output_tokens": 0, "cost": 0, "error": "", "attempts": 1,
        "started_at": None, "finished_at": None, **fields,
    }  # fmt: skip


def test_rows_inserted_as_dicts_read_back_as_the_orm_would_store_them(triage_run):
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    insert_dicts(StepRun, [
        _row(triage_run, 1),
        _row(triage_run, 2, output={"text": "x", "nested": {"n": 3}}, decision={"passed": False}, recordings=[{"k": 1}],
             cost=Decimal("0.000125"), input_tokens=7, started_at=at, finished_at=at),
        _row(triage_run, 3, output="a bare JSON string", cost=0.1 + 0.2),
    ])  # fmt: skip
    first, second, third = StepRun.objects.filter(run=triage_run).order_by("position")
    assert first.input == {"a": [1, 2.5, None, True], "é": "ü"}
    # None is SQL NULL in a JSON field, as Django stores it, not a JSON null.
    assert StepRun.objects.filter(run=triage_run, output__isnull=True).count() == 1
    assert first.output is None and first.decision is None
    assert second.output == {"text": "x", "nested": {"n": 3}}
    assert second.decision == {"passed": False} and second.recordings == [{"k": 1}]
    assert second.cost == Decimal("0.000125") and second.input_tokens == 7
    assert second.started_at == at and second.finished_at == at
    assert StepRun.objects.filter(run=triage_run, started_at__gte=at).count() == 1
    assert third.output == "a bare JSON string"
    assert third.cost == Decimal("0.300000")


def test_nothing_is_inserted_for_no_rows(triage_run):
    insert_dicts(StepRun, [])
    assert not StepRun.objects.filter(run=triage_run).exists()
