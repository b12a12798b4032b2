"""pipelines/queries.py, the app's hand-written SQL (the run start's read and
inserts, the worker's load and updates, the API's token read), gives exactly
what the ORM gives, on the database the suite runs on: CI runs it on
PostgreSQL and on SQLite."""

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models.signals import post_save
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.context import acting_as
from audit.models import AuditEvent
from audit.services import audit_append
from pipelines.integration.tokens import token_authenticate, token_create, token_revoke
from pipelines.models import Budget, Deployment, Pipeline, Run, ServiceToken, StepRun
from pipelines.queries import (
    database_ping,
    deployment_read,
    insert_one,
    insert_statement,
    run_load,
    run_update,
    step_update,
    token_read,
)
from pipelines.releases.cut import release_cut
from pipelines.runs.engine import run_start
from reviews.models import ReviewTask
from tests.pipelines.integration.api.conftest import TICKET, deploy
from tests.releasing import prompt_edit


def _fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


@pytest.fixture
def pipeline(acme_config, superuser):
    return deploy(acme_config["pipeline"], superuser)


@pytest.fixture
def make_token(superuser):
    def make(user, **scope):
        with acting_as(user):
            return token_create(user=user, name="crm", actor=user, **scope)

    return make


def test_the_deployment_read_gives_the_orms_values(pipeline, superuser):
    # Every kind of value that SQLite hands back as text or integers: a decimal,
    # JSON, a datetime, a boolean; and a canary release beside the live one.
    prompt_edit(pipeline, actor=superuser, body="Classify: {{ subject }}")
    with acting_as(superuser):
        canary = release_cut(pipeline=pipeline, actor=superuser)
    Deployment.objects.filter(pipeline=pipeline, environment="production").update(
        canary_release=canary,
        canary_share=Decimal("12.50"),
        canary_sources=["crm", {"nested": [1, None]}],
        canary_started_at=datetime(2026, 11, 3, 14, 0, 0, 123456, tzinfo=UTC),
        paused=True,
        pause_reason="maintenance",
    )
    deployment, budgeted, earlier, _ = deployment_read(pipeline, "production", None)
    expected = Deployment.objects.select_related("release", "canary_release").get(
        pipeline=pipeline, environment="production"
    )
    assert _fields(deployment) == _fields(expected)
    assert deployment.canary_share == Decimal("12.50") and deployment.paused is True
    assert deployment.canary_started_at == datetime(2026, 11, 3, 14, 0, 0, 123456, tzinfo=UTC)
    for name in ("release", "canary_release"):
        read, orm = getattr(deployment, name), getattr(expected, name)
        assert (read.pk, read.number, read.fingerprint, read.created_at) == (
            orm.pk,
            orm.number,
            orm.fingerprint,
            orm.created_at,
        )
        assert read.snapshot == orm.snapshot  # deferred, loaded on first use
    assert (budgeted, earlier) == (False, None)


def test_the_deployment_read_sees_a_workspace_budget_and_an_earlier_run(pipeline, superuser):
    run, _ = _start(pipeline, superuser, key="k-1")
    Budget.objects.create(workspace=pipeline.workspace, unit="money", soft_limit=1, hard_limit=2)
    _, budgeted, earlier, _ = deployment_read(pipeline, "production", "k-1")
    assert (budgeted, earlier) == (True, run.pk)
    assert deployment_read(pipeline, "production", "another key")[2] is None
    assert deployment_read(pipeline, "staging", "k-1") == (None, False, None, None)


def test_on_postgresql_the_deployment_read_takes_the_next_run_id_from_the_sequence(pipeline, superuser):
    first = deployment_read(pipeline, "production", None)[3]
    second = deployment_read(pipeline, "production", None)[3]
    run, _ = _start(pipeline, superuser, key="k-5")
    if connection.vendor != "postgresql":
        assert first is second is None  # SQLite has no sequence: the insert assigns the id
        return
    assert second > first and run.pk > second  # each read takes its own; a started run the next one
    assert Run.objects.get(pk=run.pk).pk == run.pk


def test_a_run_start_sends_its_run_and_its_first_event_in_one_statement(pipeline, superuser):
    with CaptureQueriesContext(connection) as queries:
        run, created = _start(pipeline, superuser, key="k-6")
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "WITH"))]
    event = AuditEvent.objects.get(action="run.started", object_id=str(run.pk))
    assert created and Run.objects.get(pk=run.pk).idempotency_key == "k-6"
    assert event.pipeline_id == pipeline.pk and event.payload_data["input_sha256"] == run.input_sha256
    if connection.vendor == "postgresql":
        assert len(inserts) == 1 and "pipelines_run" in inserts[0] and "audit_auditevent" in inserts[0]
    else:
        assert len(inserts) == 2  # the run first, for the id SQLite assigns


def test_a_failing_run_insert_takes_its_event_with_it(pipeline, superuser):
    # The same key twice at once: the second insert breaks the unique key, and the
    # statement that carries the run carries its event, so neither is stored.
    first, _ = _start(pipeline, superuser, key="k-7")
    before = AuditEvent.objects.count()
    duplicate = _new_run(pipeline, superuser, key="k-7")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT nextval(pg_get_serial_sequence('pipelines_run', 'id'))")
            duplicate.pk = cursor.fetchone()[0]
    else:
        duplicate.pk = first.pk + 1000
    with pytest.raises(IntegrityError), transaction.atomic():
        audit_append(
            [{"action": "run.started", "object_type": "run", "object_id": duplicate.pk, "payload": {}}],
            along=insert_statement(duplicate),
        )
    assert AuditEvent.objects.count() == before
    assert not Run.objects.filter(pk=duplicate.pk).exists()


def test_insert_statement_refuses_a_row_without_its_key(pipeline, superuser):
    with pytest.raises(ValueError, match="with its key"):
        insert_statement(_new_run(pipeline, superuser, key="k-8"))


def test_the_token_read_gives_the_orms_token_user_and_pipeline(make_token, author, pipeline):
    token, plain = make_token(author, pipeline=pipeline)
    expected = ServiceToken.objects.select_related("user", "pipeline").get(pk=token.pk)  # before last_used_at moves
    read = token_authenticate(plain)
    assert _fields(read) == _fields(expected)
    assert read.user.pk == author.pk and read.user.is_active and read.user.get_username() == "author"
    assert read.pipeline.slug == pipeline.slug and read.pipeline.workspace_id == pipeline.workspace_id
    assert read.pipeline.input_schema == Pipeline.objects.get(pk=pipeline.pk).input_schema  # deferred, loaded on use


def test_a_workspace_token_reads_without_a_pipeline(make_token, author, pipeline):
    token, plain = make_token(author, workspace=pipeline.workspace)
    read = token_authenticate(plain)
    assert read.pk == token.pk and read.pipeline is None and read.workspace_id == pipeline.workspace_id


def test_an_unknown_revoked_or_inactive_token_reads_as_none(make_token, author, pipeline, superuser):
    token, plain = make_token(author, pipeline=pipeline)
    assert token_authenticate(plain[:-1] + ("x" if plain[-1] != "x" else "y")) is None
    author.is_active = False
    author.save(update_fields=["is_active"])
    assert token_authenticate(plain) is None
    author.is_active = True
    author.save(update_fields=["is_active"])
    token_revoke(token=token, actor=superuser)
    assert token_authenticate(plain) is None


def test_insert_one_saves_a_row_as_save_does(pipeline, superuser):
    run = _new_run(pipeline, superuser, key="k-2")
    insert_one(run)
    assert run.pk is not None and run.created_at is not None
    stored = Run.objects.get(pk=run.pk)
    assert _fields(stored) == _fields(run)


def test_insert_one_goes_through_save_when_a_receiver_listens(pipeline, superuser):
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.pk, created))

    post_save.connect(receiver, sender=Run, dispatch_uid="test_rows_listener")
    try:
        run = insert_one(_new_run(pipeline, superuser, key="k-3"))
    finally:
        post_save.disconnect(dispatch_uid="test_rows_listener", sender=Run)
    assert heard == [(run.pk, True)]


def test_insert_one_goes_through_save_when_the_model_has_its_own(pipeline, superuser):
    run = insert_one(_new_run(pipeline, superuser, key="k-4"))
    task = insert_one(ReviewTask(run=run, pipeline=pipeline, position=5, kind=ReviewTask.Kind.EXCEPTION,
                                 reasons=["rule", "low_confidence"]))  # fmt: skip
    # ReviewTask.save derives the codes the queue filters on from the reasons.
    assert ReviewTask.objects.get(pk=task.pk).reason_codes == ",rule,low_confidence,"


def _new_run(pipeline, actor, *, key: str) -> Run:
    deployment = Deployment.objects.select_related("release").get(pipeline=pipeline, environment="production")
    return Run(
        pipeline=pipeline,
        release=deployment.release,
        environment="production",
        input=TICKET,
        input_sha256="0" * 64,
        trigger="cli",
        actor=actor,
        idempotency_key=key,
        seed=7,
    )


def _start(pipeline, actor, *, key: str):
    return run_start(pipeline=pipeline, input=TICKET, actor=actor, trigger="api", idempotency_key=key, enqueue=False)


def test_a_run_loads_while_it_is_free_to_take_and_not_while_a_live_lease_holds_it(pipeline, superuser):
    run, _ = _start(pipeline, superuser, key="k-9")
    loaded = run_load(run.pk)
    expected = Run.objects.get(pk=run.pk)
    assert _fields(loaded) == _fields(expected)
    assert loaded.pipeline.pk == pipeline.pk and loaded.release.pk == run.release_id
    assert loaded.release.snapshot_data == expected.release.snapshot_data  # deferred, loaded on use
    now = timezone.now()
    claim = {"status": Run.Status.RUNNING, "lease_owner": "w-1", "lease_expires_at": now + timedelta(minutes=5)}
    assert run_update(run.pk, claim, claim=True, count=True, owner="w-1", now=now) == 1
    assert run_load(run.pk) is None  # another worker's, under a live lease
    assert run_update(run.pk, claim, claim=True, count=True, owner="w-2", now=now) == 0  # nobody takes it twice
    assert run_update(run.pk, {"next_position": 2}, claim=False, count=False, owner="w-2", now=now) == 0
    assert run_update(run.pk, {"next_position": 2}, claim=False, count=False, owner="w-1", now=now) == 1
    stored = Run.objects.get(pk=run.pk)
    assert (stored.status, stored.lease_owner, stored.attempts, stored.next_position) == ("running", "w-1", 1, 2)
    # The lease lapses (the worker died): free to take again, and a new claim counts an attempt.
    later = now + timedelta(minutes=6)
    assert run_update(run.pk, {"lease_owner": "w-2"}, claim=True, count=True, owner="w-2", now=later) == 1
    assert Run.objects.get(pk=run.pk).attempts == 2


def test_a_step_row_update_sets_its_fields_as_the_orm_would(pipeline, superuser):
    run, _ = _start(pipeline, superuser, key="k-10")
    StepRun.objects.create(run=run, position=1, name="check", kind="validate", status="running", input={})
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    step_update(
        run.pk, 1, {"status": "completed", "output": {"a": [1, None]}, "cost": Decimal("0.25"), "finished_at": at}
    )
    step = StepRun.objects.get(run=run, position=1)
    assert (step.status, step.output, step.cost, step.finished_at) == (
        "completed",
        {"a": [1, None]},
        Decimal("0.25"),
        at,
    )


def test_the_token_read_answers_the_rights_asked_for(make_token, author, outsider, pipeline):
    _, mine = make_token(author, pipeline=pipeline)
    token, rights, creator = token_read(_digest(mine), ("view", "change", "approve_release"))
    assert token.user.pk == author.pk and creator == "author"
    assert rights == {"view": True, "change": True, "approve_release": False}  # a prompt engineer's rights


def test_the_database_answers_a_ping(db):
    database_ping()


def _digest(plain: str) -> str:
    return hashlib.sha256(plain.encode()).hexdigest()  # a token is stored as its SHA-256 (tokens.py)
