"""Signed checkpoints of the chain head, kept outside the database.

A hash chain shows any change to the events it holds, but not the loss of
its newest events: a shorter chain is still a valid chain. So a scheduled task
writes the head (seq, hash) to a directory outside the database, signed with
an HMAC key from the environment (KEEL_CHECKPOINT_KEY). ``audit_verify
--checkpoints`` then checks that every checkpointed event is still there with
the same hash: deleting the newest events is caught unless the deleter also
has the key and the checkpoint directory. ``audit_verify`` and the nightly
check compare the chain with the newest checkpoint whenever the key is set,
and no checkpoint is written of a chain shorter than the newest one.
"""

import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from audit.canonical import canonical_text
from audit.chain import ChainResult, format_ts
from audit.models import AuditEvent


class CheckpointError(Exception):
    pass


def _settings(directory, key) -> tuple[Path, bytes]:
    key = key or settings.KEEL_CHECKPOINT_KEY
    if not key:
        raise CheckpointError("KEEL_CHECKPOINT_KEY is not set: checkpoints are signed with it.")
    return Path(directory or settings.KEEL_CHECKPOINT_DIR), key.encode("utf-8")


def _signature(key: bytes, body: dict) -> str:
    return hmac.new(key, canonical_text(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _read(path: Path, secret: bytes) -> dict | None:
    """The checkpoint's signed body, or None when it is not one or its
    signature does not hold."""
    try:
        data = json.loads(path.read_text())
        body = {name: data[name] for name in ("seq", "hash", "written_at")}
        signature = str(data["hmac_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(body["seq"], int) or not hmac.compare_digest(signature, _signature(secret, body)):
        return None
    return body


def newest_checkpoint(*, directory=None, key: str | None = None) -> dict | None:
    """The signed checkpoint of the highest seq ({seq, hash, written_at}), or
    None when there is none (a file whose signature fails is not one)."""
    folder, secret = _settings(directory, key)
    newest = None
    for path in folder.glob("checkpoint-*.json"):
        body = _read(path, secret)
        if body is not None and (newest is None or body["seq"] > newest["seq"]):
            newest = body
    return newest


def _stored_hash(seq: int) -> str | None:
    return AuditEvent.objects.filter(seq=seq).values_list("hash", flat=True).first()


def chain_against_checkpoint(result: ChainResult, *, directory=None, key: str | None = None) -> ChainResult:
    """``result`` (a walk from #1), or the break the newest signed checkpoint
    shows: the chain ends before the checkpointed event (events deleted from
    the end, or the table emptied), or that event's hash changed (the chain
    rewritten from there). Unchanged when no key is set."""
    if not (key or settings.KEEL_CHECKPOINT_KEY):
        return result
    checkpoint = newest_checkpoint(directory=directory, key=key)
    if checkpoint is None:
        return result
    seq, written = checkpoint["seq"], checkpoint["written_at"]
    if not result.ok and result.broken_seq <= seq:
        return result  # an earlier break wins
    stored = _stored_hash(seq)
    if stored is None:
        head = result.count if result.ok else result.broken_seq - 1
        return ChainResult(
            result.count,
            result.head_hash,
            head + 1,
            f"the chain ends at #{head} but the checkpoint written at {written} names #{seq}: "
            "events are missing from the end",
        )
    if stored != checkpoint["hash"]:
        return ChainResult(
            seq - 1,
            _stored_hash(seq - 1) or "0" * 64,
            seq,
            f"event #{seq} no longer has the hash checkpointed at {written}: the chain was rewritten",
        )
    return result


def audit_checkpoint_write(*, directory=None, key: str | None = None) -> Path | None:
    """Write a signed checkpoint of the current head; None for an empty chain.
    Refused (CheckpointError) when the chain no longer holds the newest
    checkpoint's event with its hash: a checkpoint of a shortened chain would
    hide the loss. The file is written beside its name and renamed, so a
    reader never sees half of one."""
    folder, secret = _settings(directory, key)
    newest = newest_checkpoint(directory=directory, key=key)
    if newest is not None and _stored_hash(newest["seq"]) != newest["hash"]:
        raise CheckpointError(
            f"The chain no longer holds event #{newest['seq']} as checkpointed at {newest['written_at']}: "
            "no checkpoint is written of a shortened or rewritten chain."
        )
    head = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    if head is None:
        return None
    body = {"seq": head["seq"], "hash": head["hash"], "written_at": format_ts(timezone.now())}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"checkpoint-{head['seq']:012d}.json"
    part = path.with_suffix(".part")
    part.write_text(json.dumps({**body, "hmac_sha256": _signature(secret, body)}, indent=1) + "\n")
    os.replace(part, path)
    return path


@dataclass(frozen=True)
class CheckpointReport:
    checked: int
    newest_seq: int | None
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def audit_checkpoints_verify(*, directory=None, key: str | None = None) -> CheckpointReport:
    """Check every checkpoint's signature, and that the event it names is
    still stored with the hash it had."""
    folder, secret = _settings(directory, key)
    problems, checked, newest = [], 0, None
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    for path in sorted(folder.glob("checkpoint-*.json")):
        try:
            data = json.loads(path.read_text())
            body = {name: data[name] for name in ("seq", "hash", "written_at")}
            signature = data["hmac_sha256"]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{path.name}: not a checkpoint file")
            continue
        if not hmac.compare_digest(str(signature), _signature(secret, body)):
            problems.append(f"{path.name}: the signature does not match (wrong key, or the file was changed)")
            continue
        checked += 1
        newest = max(newest or 0, body["seq"])
        stored = AuditEvent.objects.filter(seq=body["seq"]).values_list("hash", flat=True).first()
        if stored is None:
            problems.append(
                f"{path.name}: event #{body['seq']} was checkpointed at {body['written_at']} "
                f"but the stored chain ends at #{head}: events are missing from the end"
            )
        elif stored != body["hash"]:
            problems.append(f"{path.name}: event #{body['seq']} no longer has the checkpointed hash")
    return CheckpointReport(checked=checked, newest_seq=newest, problems=problems)
