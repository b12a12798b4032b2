"""Exports prove themselves: a JSONL export verifies offline with
``python -m audit.verify`` (a real subprocess, standard library only), a
filtered export verifies end to end through its hash-only entries, and one
changed byte is named by its line."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from pypdf import PdfReader

from audit.models import AuditEvent
from audit.services import audit_record

BASE_DIR = Path(settings.BASE_DIR)


def verify(path: Path) -> subprocess.CompletedProcess:
    # -E: no PYTHON* variables from the suite's environment help the verifier along.
    return subprocess.run(
        [sys.executable, "-E", "-m", "audit.verify", str(path)],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )


def export(tmp_path: Path, name: str = "export.jsonl", **options) -> Path:
    target = tmp_path / name
    call_command("audit_export", output=str(target), **options)
    return target


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def history(db):
    """Events in two workspaces, with floats, non-ASCII text and a redaction."""
    events = []
    for number in range(12):
        events.append(
            audit_record(
                action="run.started" if number % 3 else "step.completed",
                object_type="run",
                object_id=number,
                payload={"n": number, "name": 'Zoë "quoted" \n', "score": number / 7, "big": 10**20, "tiny": 1e-9},
                workspace_id=1 if number % 2 else 2,
                pipeline_id=10 + number % 2,
            )
        )
    from audit.services import audit_redact

    audit_redact(seq=events[4].seq, reason="retention")
    return events


def test_a_whole_export_verifies_offline(history, tmp_path):
    path = export(tmp_path)
    result = verify(path)
    assert result.returncode == 0, result.stderr
    entries = lines_of(path)
    manifest = entries[-1]
    assert manifest["type"] == "manifest"
    assert manifest["counts"]["omitted"] == 0
    assert manifest["first_seq"] == 1
    assert manifest["first_prev_hash"] == "0" * 64
    exported = [entry for entry in entries if entry["type"] == "event"]
    assert [entry["seq"] for entry in exported] == list(range(1, manifest["last_seq"] + 1))
    assert any(entry["redacted"] for entry in exported)


def test_the_verifier_needs_neither_django_nor_keels_own_hash_code(tmp_path, history):
    path = export(tmp_path)
    probe = (
        f"import sys, runpy; sys.argv = ['audit.verify', {str(path)!r}]\n"
        "try:\n    runpy.run_module('audit.verify', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        "loaded = [m for m in sys.modules if m.startswith(('django', 'audit.canonical', 'audit.chain'))]\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-E", "-c", probe], cwd=BASE_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_one_changed_byte_fails_verification_naming_its_line(history, tmp_path):
    path = export(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    # A whole export starts at #1, so event #n is on line n; "Zoë" becomes "Zoe".
    seq = history[1].seq
    assert f'"seq":{seq},'.encode() in raw[seq - 1]
    raw[seq - 1] = raw[seq - 1].replace("Zoë".encode(), b"Zoe")
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.returncode == 1
    assert f"line {seq}: event #{seq}:" in result.stderr
    assert "payload does not match" in result.stderr


def test_a_changed_envelope_field_is_named_by_its_line(history, tmp_path):
    path = export(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    seq = history[2].seq
    raw[seq - 1] = raw[seq - 1].replace(b'"action":"run.started"', b'"action":"run.stopped"')
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.returncode == 1
    assert f"line {seq}: event #{seq}: hash does not match its fields" in result.stderr


def test_a_removed_line_is_named(history, tmp_path):
    path = export(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    seq = history[3].seq
    del raw[seq - 1]
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.returncode == 1
    assert f"line {seq}: expected #{seq}, found #{seq + 1}" in result.stderr


def test_an_edited_manifest_or_a_missing_one_fails(history, tmp_path):
    path = export(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    manifest = json.loads(raw[-1])
    manifest["counts"]["events"] += 1
    path.write_bytes(b"".join(raw[:-1]) + json.dumps(manifest).encode() + b"\n")
    result = verify(path)
    assert result.returncode == 1
    assert f"line {len(raw)}: manifest counts" in result.stderr

    path.write_bytes(b"".join(raw[:-1]))
    result = verify(path)
    assert result.returncode == 1
    assert f"line {len(raw)}: the file ends without its manifest line" in result.stderr


def test_a_rewritten_file_with_a_fresh_manifest_still_fails_on_the_hashes(history, tmp_path):
    """Someone who edits an event and recomputes the file's SHA-256 in the
    manifest is still caught: the event's own hash no longer matches."""
    import hashlib

    path = export(tmp_path)
    raw = path.read_bytes().splitlines(keepends=True)
    seq = history[1].seq
    raw[seq - 1] = raw[seq - 1].replace(b'"n":', b'"m":')
    manifest = json.loads(raw[-1])
    manifest["file_sha256"] = hashlib.sha256(b"".join(raw[:-1])).hexdigest()
    path.write_bytes(b"".join(raw[:-1]) + json.dumps(manifest).encode() + b"\n")
    result = verify(path)
    assert result.returncode == 1
    assert f"line {seq}: event #{seq}: payload does not match" in result.stderr


def test_a_filtered_export_carries_hash_only_entries_and_verifies_end_to_end(history, tmp_path):
    path = export(tmp_path, workspace="1", format="jsonl")
    assert verify(path).returncode == 0
    entries = lines_of(path)
    manifest = entries.pop()
    included = [entry for entry in entries if entry["type"] == "event"]
    omitted = [entry for entry in entries if entry["type"] == "omitted"]
    assert included and omitted
    assert {entry["workspace_id"] for entry in included} == {1}
    # Hash-only entries carry every hashed field but the payload.
    assert set(omitted[0]) == {"type", "seq", "ts", "actor", "action", "object_type", "object_id", "workspace_id",
                               "pipeline_id", "payload_sha256", "prev_hash", "hash"}  # fmt: skip
    assert all("payload" not in entry for entry in omitted)
    # Contiguous from the first included to the last, nothing before or after.
    seqs = [entry["seq"] for entry in entries]
    assert seqs == list(range(included[0]["seq"], included[-1]["seq"] + 1))
    assert manifest["filter"] == {"workspace_id": 1}
    assert manifest["counts"] == {"events": len(included), "omitted": len(omitted), "outside_scope": 0}
    stored = AuditEvent.objects.get(seq=manifest["first_seq"])
    assert manifest["first_prev_hash"] == stored.prev_hash
    assert manifest["last_hash"] == AuditEvent.objects.get(seq=manifest["last_seq"]).hash


def test_an_action_filter_verifies_and_a_tampered_hash_only_entry_is_named(history, tmp_path):
    path = export(tmp_path, action="step")
    assert verify(path).returncode == 0
    raw = path.read_bytes().splitlines(keepends=True)
    index = next(i for i, line in enumerate(raw) if b'"type":"omitted"' in line)
    entry = json.loads(raw[index])
    entry["hash"] = "f" * 64
    raw[index] = json.dumps(entry).encode() + b"\n"
    path.write_bytes(b"".join(raw))
    result = verify(path)
    assert result.returncode == 1
    # Its own hash is recomputed from the envelope it carries.
    assert f"line {index + 1}: event #{entry['seq']}: hash does not match its fields" in result.stderr


def test_every_export_is_an_audit_event_naming_who_and_what(history, tmp_path):
    export(tmp_path, workspace="1", format="csv")
    event = AuditEvent.objects.filter(action="audit.exported").latest("seq")
    assert event.actor_name == "system:cli"
    assert event.payload_data["format"] == "csv"
    assert event.payload_data["filter"] == {"workspace_id": 1}
    assert event.workspace_id == 1


def test_the_csv_export_ends_with_a_manifest_over_its_bytes(history, tmp_path):
    import csv
    import hashlib

    path = export(tmp_path, name="export.csv", format="csv", workspace="2")
    data = path.read_bytes()
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    rows = list(csv.reader(data.decode().splitlines()))
    assert rows[0][0] == "kind"
    manifest = json.loads(rows[-1][10])
    assert rows[-1][0] == "manifest"
    assert manifest["file_sha256"] == hashlib.sha256(body + b"\n").hexdigest()
    kinds = {row[0] for row in rows[1:-1]}
    assert kinds == {"event", "omitted"}


def test_the_pdf_export_is_a_readable_report(history, tmp_path):
    path = export(tmp_path, name="export.pdf", format="pdf")
    data = path.read_bytes()
    assert data.startswith(b"%PDF-")
    cover = PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert "Audit report" in cover and "Every event, with no filter" in cover


def test_bad_options_are_refused_by_name_and_write_nothing(history, tmp_path):
    before = AuditEvent.objects.count()
    with pytest.raises(CommandError, match="--since must be an ISO 8601"):
        export(tmp_path, since="last tuesday")
    with pytest.raises(CommandError, match="--format must be one of"):
        export(tmp_path, format="xml")
    with pytest.raises(CommandError, match="--workspace: there is no workspace 'nowhere'"):
        export(tmp_path, workspace="nowhere")
    with pytest.raises(CommandError, match="--output: cannot write"):
        call_command("audit_export", output=str(tmp_path / "missing" / "x.jsonl"))
    assert AuditEvent.objects.count() == before
    assert list(tmp_path.iterdir()) == []


def test_an_export_as_a_user_holds_only_what_they_may_see(auditor, acme, globex, tmp_path):
    audit_record(action="note.acme", object_type="note", object_id=1, workspace_id=acme.pk)
    audit_record(action="note.globex", object_type="note", object_id=2, workspace_id=globex.pk)
    path = export(tmp_path, as_user="auditor")
    assert verify(path).returncode == 0
    entries = lines_of(path)[:-1]
    included = [entry for entry in entries if entry["type"] == "event"]
    assert {entry["workspace_id"] for entry in included} == {acme.pk}
    assert "note.globex" not in path.read_text()
    assert AuditEvent.objects.filter(action="audit.exported").latest("seq").actor_name == "auditor"


@pytest.mark.parametrize("offset_seconds", [-2.0, -0.5, 0.0, 0.5, 2.0])
def test_an_until_filter_selects_exactly_the_events_before_it(history, offset_seconds):
    """The seq bound found on the ts index gives the same events as the plain
    ts condition, wherever ``until`` falls."""
    from datetime import timedelta

    from audit.exports import AuditFilter, AuditScope, audit_events_for

    until = history[5].ts + timedelta(seconds=offset_seconds)
    selected = audit_events_for(scope=AuditScope(everything=True), audit_filter=AuditFilter(until=until))
    expected = AuditEvent.objects.filter(ts__lt=until)
    assert list(selected.values_list("seq", flat=True)) == list(expected.values_list("seq", flat=True))
