"""An export cannot be relabelled or forged unnoticed: ``python -m audit.verify``
(a real subprocess, standard library only) checks every included event
against the manifest's filter, every hash-only entry against it too, and every
redaction against its ``audit.redacted`` record; the manifest is recorded in
the chain and signed with the checkpoint key, so ``--key`` and ``manage.py
audit_verify --export`` catch what a forger who reseals the file gets past the
rest. Each forgery here reseals the file as a careful forger would: the
file's SHA-256, the counts and the manifest's own SHA-256 recomputed."""

import hashlib
import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit import verify as offline
from audit.models import REDACTED_PAYLOAD, AuditEvent
from audit.services import audit_record, audit_redact

BASE_DIR = Path(settings.BASE_DIR)
KEY = "test-export-key-not-a-real-secret"
SEALS = ("manifest_sha256", "export_event_seq", "hmac_sha256")


@pytest.fixture
def history(db):
    """Events in two workspaces and two kinds of action, one of them redacted
    through the service."""
    events = [
        audit_record(
            action="review.decided" if number % 3 == 0 else "run.started",
            object_type="run",
            object_id=number,
            payload={"n": number, "reviewer": "ada@example.com", "score": number / 7},
            workspace_id=1 if number % 2 else 2,
            pipeline_id=10 + number % 2,
        )
        for number in range(12)
    ]
    audit_redact(seq=events[3].seq, reason="erasure request 9")
    return events


@pytest.fixture
def signing(settings):
    settings.KEEL_CHECKPOINT_KEY = KEY


def export(tmp_path: Path, **options) -> Path:
    target = tmp_path / "export.jsonl"
    call_command("audit_export", output=str(target), **options)
    return target


def verify(path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-E", "-m", "audit.verify", str(path), *args],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def entries_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def reseal(path: Path, entries: list[dict], manifest_changes: dict | None = None) -> None:
    """Write ``entries`` back with a manifest a forger without the key could
    make: file SHA-256, counts and manifest SHA-256 recomputed, signature kept."""
    body = b"".join(json.dumps(entry, separators=(",", ":")).encode() + b"\n" for entry in entries[:-1])
    manifest = {**entries[-1], **(manifest_changes or {})}
    kinds = [entry["type"] for entry in entries[:-1]]
    manifest["counts"] = {
        "events": kinds.count("event"),
        "omitted": kinds.count("omitted"),
        "outside_scope": sum(1 for entry in entries[:-1] if entry.get("outside_scope")),
    }
    manifest["file_sha256"] = hashlib.sha256(body).hexdigest()
    unsealed = {name: value for name, value in manifest.items() if name not in SEALS}
    manifest["manifest_sha256"] = offline.sha256_hex(offline.canonical(unsealed))
    path.write_bytes(body + json.dumps(manifest).encode() + b"\n")


def check_against_chain(path: Path) -> str:
    out = StringIO()
    call_command("audit_verify", export=str(path), stdout=out)
    return out.getvalue()


# --- what an honest export proves ---


def test_the_manifest_is_recorded_in_its_audit_exported_event(history, tmp_path):
    path = export(tmp_path, action="review")
    manifest = entries_of(path)[-1]
    event = AuditEvent.objects.get(seq=manifest["export_event_seq"])
    assert event.action == "audit.exported"
    assert event.payload_data["manifest_sha256"] == manifest["manifest_sha256"]
    assert event.payload_data["signed"] is False and "hmac_sha256" not in manifest
    assert verify(path).returncode == 0
    assert "matches the chain" in check_against_chain(path)


def test_a_signed_export_verifies_with_its_key_and_fails_with_another(history, tmp_path, signing):
    path = export(tmp_path, action="review")
    manifest = entries_of(path)[-1]
    assert len(manifest["hmac_sha256"]) == 64
    good = verify(path, "--key", KEY)
    assert good.returncode == 0, good.stderr
    assert "signature checked" in good.stdout
    assert "NOT checked" in verify(path).stdout
    wrong = verify(path, "--key", "another key")
    assert wrong.returncode == 1 and "signature does not match" in wrong.stderr


def test_an_unsigned_export_fails_when_a_key_is_given(history, tmp_path):
    path = export(tmp_path)
    result = verify(path, "--key", KEY)
    assert result.returncode == 1 and "the manifest is not signed, and a key was given" in result.stderr


def test_an_export_runs_on_to_the_record_of_each_redaction_it_holds(history, tmp_path):
    """The review events end before the audit.redacted event of the one that
    is redacted; the export runs on to it, the rest as hash-only entries."""
    path = export(tmp_path, action="review")
    entries = entries_of(path)
    redacted = next(entry for entry in entries if entry.get("redacted"))
    record = next(entry for entry in entries if entry.get("action") == "audit.redacted")
    assert record["type"] == "omitted" and record["object_id"] == str(redacted["seq"])
    assert entries[-1]["last_seq"] == record["seq"]
    assert verify(path).returncode == 0


def test_a_scoped_export_keeps_other_workspaces_events_as_bare_links(auditor, acme, globex, tmp_path):
    audit_record(action="run.started", object_type="run", object_id=1, workspace_id=acme.pk)
    audit_record(action="run.started", object_type="run", object_id=2, workspace_id=globex.pk)
    audit_record(action="run.started", object_type="run", object_id=3, workspace_id=acme.pk)
    path = export(tmp_path, as_user="auditor")
    entries = entries_of(path)
    outside = [entry for entry in entries if entry.get("outside_scope")]
    assert outside and all(set(entry) == {"type", "seq", "prev_hash", "hash", "outside_scope"} for entry in outside)
    assert {entry["workspace_id"] for entry in entries if entry["type"] == "event"} == {acme.pk}
    assert verify(path).returncode == 0


# --- forgeries ---


@pytest.mark.parametrize("with_key", [False, True])
def test_a_payload_blanked_as_a_forged_redaction_fails(history, tmp_path, settings, with_key):
    if with_key:
        settings.KEEL_CHECKPOINT_KEY = KEY
    path = export(tmp_path)
    entries = entries_of(path)
    target = next(entry for entry in entries if entry["type"] == "event" and entry["seq"] == history[5].seq)
    target["payload"], target["redacted"] = {"redacted": True}, True
    reseal(path, entries)
    result = verify(path, *(["--key", KEY] if with_key else []))
    assert result.returncode == 1
    if with_key:
        assert "signature does not match" in result.stderr
    else:
        assert f"event #{history[5].seq} is redacted but no later audit.redacted event" in result.stderr


def test_a_redaction_made_by_hand_in_the_database_fails_in_the_export(history, tmp_path):
    AuditEvent.objects.filter(seq=history[6].seq).update(payload=REDACTED_PAYLOAD, redacted_at=timezone.now())
    path = export(tmp_path)
    result = verify(path)
    assert result.returncode == 1
    assert f"event #{history[6].seq} is redacted but no later audit.redacted event" in result.stderr


@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize(
    ("exported", "relabelled"),
    [
        ({"action": "review"}, {"action": "run"}),  # included events no longer match
        ({"action": "review"}, {}),  # hash-only entries now match
        ({"workspace": "1"}, {"workspace_id": 2}),
        ({"run": 3}, {"run_id": 4, "object_id": "4"}),
        ({"actor": "system:cli"}, {"actor": "mallory"}),
    ],
)
def test_a_relabelled_filter_fails(history, tmp_path, settings, with_key, exported, relabelled):
    if with_key:
        settings.KEEL_CHECKPOINT_KEY = KEY
    audit_record(action="note.made", object_type="note", object_id=1, actor="cli", workspace_id=1)
    path = export(tmp_path, **exported)
    assert verify(path).returncode == 0
    entries = entries_of(path)
    manifest = entries[-1]
    relabelled_filter = {**manifest["filter"], **relabelled} if relabelled else {}
    reseal(path, entries, {"filter": relabelled_filter})
    result = verify(path, *(["--key", KEY] if with_key else []))
    assert result.returncode == 1, result.stdout
    if with_key:
        assert "signature does not match" in result.stderr
    else:
        assert "the manifest's filter" in result.stderr
    with pytest.raises(CommandError):
        check_against_chain(path)


@pytest.mark.parametrize("with_key", [False, True])
def test_an_included_event_turned_into_a_hash_only_entry_fails(history, tmp_path, settings, with_key):
    if with_key:
        settings.KEEL_CHECKPOINT_KEY = KEY
    path = export(tmp_path, action="run")
    entries = entries_of(path)
    index = next(i for i, entry in enumerate(entries) if entry["type"] == "event")
    stub = {key: value for key, value in entries[index].items() if key not in ("payload", "redacted")}
    entries[index] = {**stub, "type": "omitted"}
    reseal(path, entries)
    result = verify(path, *(["--key", KEY] if with_key else []))
    assert result.returncode == 1
    if with_key:
        assert "signature does not match" in result.stderr
    else:
        assert f"hash-only entry #{stub['seq']} matches the manifest's filter" in result.stderr


def test_an_included_event_turned_into_a_bare_link_fails_in_an_export_of_everything(history, tmp_path):
    path = export(tmp_path, action="run")
    entries = entries_of(path)
    index = next(i for i, entry in enumerate(entries) if entry["type"] == "event")
    event = entries[index]
    entries[index] = {"type": "omitted", "seq": event["seq"], "prev_hash": event["prev_hash"],
                      "hash": event["hash"], "outside_scope": True}  # fmt: skip
    reseal(path, entries)
    result = verify(path)
    assert result.returncode == 1
    assert f"#{event['seq']} is marked outside the scope of an export of everything" in result.stderr


def test_a_resealed_export_fails_against_the_live_chain(history, tmp_path):
    """Without the key a forger can reseal a manifest the file itself cannot
    refute (here: a relabelled exported_by); the audit.exported event still
    records the original manifest."""
    path = export(tmp_path)
    entries = entries_of(path)
    reseal(path, entries, {"exported_by": "someone else"})
    assert verify(path).returncode == 0
    with pytest.raises(CommandError, match="its manifest is not the one audit.exported"):
        check_against_chain(path)


def test_a_filter_field_the_verifier_does_not_know_is_refused(history, tmp_path):
    path = export(tmp_path)
    reseal(path, entries_of(path), {"filter": {"tenant": "acme"}})
    result = verify(path)
    assert result.returncode == 1
    assert "the manifest (last line): the manifest filter holds tenant" in result.stderr
