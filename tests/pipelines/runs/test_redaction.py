"""A data subject's erasure reaches every copy: an address planted in every
column that stores personal data, through the services that write them where
there is one, is gone from the whole database dump (and from the files beside
it) after ``audit_subject --erase``, and the chain still verifies."""

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection, transaction

from audit.context import acting_as
from audit.models import AuditEvent
from audit.selectors import audit_chain_verify
from pipelines.evaluation.services import evaluation_case_from_run
from pipelines.models import Delivery, Document, Evaluation, EvaluationCase, Run, StepRun
from pipelines.runs.documents import document_read, document_store
from pipelines.runs.engine import run_execute
from pipelines.runs.personal_data import Holder, holders, matching_pks
from pipelines.runs.redaction import subject_search
from reviews.models import ReviewDecision, ReviewTask
from reviews.services import review_decide
from tests.releasing import evaluate_now
from tests.reviews.conftest import gated_pipeline, hold, task_of

pytestmark = pytest.mark.django_db(transaction=True)

OTHER = "grace.hopper@example.org"


@pytest.fixture
def address() -> str:
    # Unique per run, so no other test's leftovers (nor this one's last run) can be found.
    return f"Plant-{uuid.uuid4().hex[:12]}@Example.org"


def _plant(address: str, *, acme, superuser, author, reviewer, operator) -> Run:
    """One address in every personal column, written by Keel's services where they write it."""
    pipeline = gated_pipeline(acme, superuser=superuser, author=author)
    run = hold(pipeline, subject=f"Refund for {address}", draft=f"Dear {address}, we will look into it.")
    hold(pipeline, subject="Parcel", draft=f"Dear {OTHER}, it is on its way.")  # someone else's, which stays
    task = task_of(run)
    with acting_as(reviewer):
        edited = {**run.input, "draft": f"Dear {address.upper()}, we refund you."}
        review_decide(task=task, actor=reviewer, decision="edit", edited_output=edited, reason=f"for {address}")
    run = run_execute(run.pk)
    assert run.status == Run.Status.COMPLETED
    with acting_as(superuser), transaction.atomic():
        data = f"From: {address}\nPlease refund me.\n".encode()
        read = document_read(data=data, content_type="text/plain", filename=f"letter-{address}.txt")
        document_store(run=run, data=data, document=read, source=address, actor=superuser)
        from_run = evaluation_case_from_run(run=run, actor=superuser)
        by_hand = EvaluationCase.objects.create(
            pipeline=pipeline, name=f"ticket of {address}", input={"subject": "x", "draft": f"Hi {address}"},
            required_phrases=[f"{address} is missing"], forbidden_phrases=[address],
        )  # fmt: skip
    with acting_as(superuser):
        evaluation = evaluate_now(release=run.release, actor=superuser)
    Evaluation.objects.filter(pk=evaluation.pk).update(error=f"stopped at the case of {address}")
    # Columns no service here writes for a stored delivery: a webhook's error and notice, a
    # remote model's recordings, a step's error, a rule hit, a QA verdict, the admin's log.
    Run.objects.filter(pk=run.pk).update(
        failure_reason=f"bounced: {address}", source=f"mail:{address}", idempotency_key=f"ticket-{address}"
    )
    StepRun.objects.filter(run=run, position=1).update(
        recordings=[{"request": {"to": address}}], error=f"retried for {address}"
    )
    gate = StepRun.objects.get(run=run, position=1)
    StepRun.objects.filter(pk=gate.pk).update(decision={**(gate.decision or {}), "note": address})
    Delivery.objects.create(
        run=run, position=2, channel="webhook", url="https://hooks.example.com/in", payload_sha256="d" * 64,
        status=Delivery.Status.FAILED, last_error=f"422: unknown {address}", notice={"to": address},
        recipients=[{"address": address, "status": "refused", "reply": f"550 no such user {address}"}],
    )  # fmt: skip
    ReviewTask.objects.filter(pk=task.pk).update(rule_hits=[{"phrase": address}])
    Document.objects.filter(run=run).update(text=f"From: {address}")  # a PDF's text, extracted on the worker
    sample = ReviewTask.objects.create(
        run=run, pipeline=pipeline, position=1, kind=ReviewTask.Kind.QA_SAMPLE, status=ReviewTask.Status.REVIEWED
    )
    ReviewDecision.objects.create(
        task=sample, reviewer=operator, decision=ReviewDecision.Decision.INCORRECT, category=address,
        reason=f"wrong name for {address}",
    )  # fmt: skip
    ReviewDecision.objects.create(
        task=sample, reviewer=superuser, decision=ReviewDecision.Decision.CORRECT,
        original_output={"draft": address}, edited_output={"draft": address}, diff=f"- {address}",
    )  # fmt: skip
    LogEntry.objects.create(
        user=superuser, content_type=ContentType.objects.get_for_model(EvaluationCase), object_id=str(by_hand.pk),
        object_repr=str(by_hand), action_flag=CHANGE, change_message=f"[{address}]",
    )  # fmt: skip
    assert from_run.source_run_id == run.pk
    return run


def _hex_bytes(text: str, pattern: str) -> list[bytes]:
    return [bytes.fromhex(found) for found in re.findall(pattern, text) if len(found) % 2 == 0]


def _stored_copies(needle: str) -> list[str]:
    """Where ``needle`` (case-insensitively) is stored: the whole database dump
    (binary columns decoded), and every file under the var directory (an
    SQLite database file and its log, documents kept on disk)."""
    needle_bytes = needle.lower().encode()
    found = []
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        command = ["pg_dump", "--no-owner", "-h", db["HOST"] or "127.0.0.1", "-p", str(db["PORT"] or 5432)]
        command += ["-U", db["USER"] or "postgres", db["NAME"]]
        env = {"PATH": "/usr/bin:/bin", **({"PGPASSWORD": db["PASSWORD"]} if db.get("PASSWORD") else {})}
        dump = subprocess.run(command, capture_output=True, check=True, env=env).stdout.decode()
        blobs = _hex_bytes(dump, r"\\\\x([0-9a-f]+)")  # bytea in COPY text: \\x...
    else:
        connection.ensure_connection()
        dump = "\n".join(connection.connection.iterdump())
        blobs = _hex_bytes(dump, r"X'([0-9A-Fa-f]+)'")
    if needle.lower() in dump.lower():
        found.append("dump: " + next(line for line in dump.splitlines() if needle.lower() in line.lower())[:300])
    found += [f"dump: a binary value ({len(blob)} bytes)" for blob in blobs if needle_bytes in blob.lower()]
    for path in Path(settings.VAR_DIR).rglob("*"):
        if path.is_file() and needle_bytes in path.read_bytes().lower():
            found.append(f"file: {path}")
    return found


def test_an_erasure_leaves_no_copy_of_the_address_anywhere_and_the_chain_verifies(
    address, acme, superuser, author, reviewer, operator, capsys
):
    run = _plant(address, acme=acme, superuser=superuser, author=author, reviewer=reviewer, operator=operator)
    # Every personal column of every table the walk knows holds the address: a
    # column added later without being planted here fails this line.
    for holder in holders():
        for name in holder.fields:
            assert matching_pks(Holder(holder.model, (name,)), [address]), f"{holder.label}.{name} not planted"
    before = subject_search(identifier=address, actor="test")
    assert all(count >= 1 for count in before["tables"].values()), before
    assert before["runs"] == [run.pk]
    assert _stored_copies(address)  # the search below can find what is there

    call_command("audit_subject", address.upper(), erase=True, reason="DSR-2026-017")

    assert _stored_copies(address) == []
    after = subject_search(identifier=address, actor="test")
    assert after["tables"] == dict.fromkeys(before["tables"], 0)
    assert after["runs"] == [] and after["kept"] == {}
    assert _stored_copies(OTHER), "someone else's data must stay"
    result = audit_chain_verify()
    assert result.ok, result.reason
    # One audit.redacted event names each redacted event, after it.
    redacted = set(AuditEvent.objects.filter(redacted_at__isnull=False).values_list("seq", flat=True))
    naming = AuditEvent.objects.filter(action="audit.redacted")
    assert sorted(e.payload_data["seq"] for e in naming) == sorted(redacted)
    assert all(e.object_id == str(e.payload_data["seq"]) and e.seq > e.payload_data["seq"] for e in naming)
    # The run keeps its hashes; its decisions are marked redacted, as their guard allows.
    run.refresh_from_db()
    assert run.input == {"redacted": True} and len(run.input_sha256) == 64
    assert all(d.redacted_at is not None for d in ReviewDecision.objects.filter(task__run=run))


def test_the_search_reports_every_table_that_holds_a_copy_with_its_count(
    address, acme, superuser, author, reviewer, operator, capsys
):
    _plant(address, acme=acme, superuser=superuser, author=author, reviewer=reviewer, operator=operator)

    call_command("audit_subject", address)

    out = capsys.readouterr().out
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.MULTILINE))
    assert set(counts) == {holder.table for holder in holders()}
    assert int(counts["reviews_reviewdecision"]) == 3
    assert int(counts["pipelines_document"]) == 1
    assert all(int(count) >= 1 for count in counts.values()), out
