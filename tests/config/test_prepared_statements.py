"""On PostgreSQL a statement run several times on one connection is prepared
once (server-side binding, psycopg's prepare threshold), so the server stops
parsing and planning it; DATABASE_PREPARED_STATEMENTS=false turns that off."""

import io

import pytest
from django.core.management import call_command
from django.db import connection

from pipelines.models import Pipeline
from pipelines.runs.engine import run_start
from tests.config.test_settings import manage

TICKET = {"subject": "Where is my parcel?", "body": "The tracking has not moved.", "customer_email": "ada@example.com"}


def _prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [row[0] for row in cursor.fetchall()]


@pytest.mark.django_db
def test_the_run_start_statements_are_prepared_after_a_few_runs():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    call_command("keel_demo", stdout=io.StringIO())
    pipeline = Pipeline.objects.get(slug="support-triage")
    for index in range(6):
        run_start(pipeline=pipeline, input={**TICKET, "subject": f"Parcel {index}"}, actor=None, trigger="cli",
                  enqueue=False)  # fmt: skip
    prepared = _prepared_statements()
    # The run goes in with its run.started event, one statement (audit/queries.py's along).
    assert any(s.startswith('WITH along AS (INSERT INTO "pipelines_run"') for s in prepared), prepared
    assert any('FROM "pipelines_deployment" d' in s for s in prepared), prepared


def test_prepared_statements_can_be_turned_off(tmp_path):
    script = (
        "from django.conf import settings; o = settings.DATABASES['default'].get('OPTIONS', {});"
        "print(o.get('server_side_binding'), o.get('prepare_threshold'))"
    )
    url = {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/keel"}
    on = manage("shell", "-c", script, env=url, tmp_path=tmp_path)
    off = manage("shell", "-c", script, env={**url, "DATABASE_PREPARED_STATEMENTS": "false"}, tmp_path=tmp_path)
    assert on.stdout.split()[-2:] == ["True", "5"], on.stderr
    assert off.stdout.split()[-2:] == ["None", "None"], off.stderr
