"""Verify an exported JSONL audit file offline: ``python -m audit.verify FILE.jsonl``.

Standalone on purpose. It uses the standard library only and implements the
hash rule of DESIGN.md ("The audit chain") from scratch, including its own
canonical JSON (RFC 8785), so that an auditor can check an export without Keel,
without its database, and without trusting Keel's own code to check itself.

The file is one JSON object per line:

- ``{"type": "event", ...}``: an exported event with every hashed field and
  its payload; its payload hash and its event hash are recomputed.
- ``{"type": "omitted", "seq", "prev_hash", "hash"}``: an event the export's
  filter left out, kept as its link only, so the chain is still unbroken.
- ``{"type": "manifest", ...}``: the last line. The filter, the counts, the
  first and last sequence numbers, the chain hash before the first line and
  after the last, and the SHA-256 of every byte before the manifest line.

Exit status 0 when everything checks, 1 naming the first bad line, 2 when the
file cannot be read at all.
"""

import hashlib
import json
import math
import sys

GENESIS = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
TOMBSTONE = {"redacted": True}
_HEX = frozenset("0123456789abcdef")


class Bad(Exception):
    """The first problem found, with the line it is on."""

    def __init__(self, line: int, problem: str):
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


# --- canonical JSON (RFC 8785), written independently of audit/canonical.py ---


def _string(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif code < 0x20:
            short = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}.get(char)
            out.append(short or f"\\u{code:04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    """A double as ECMAScript's Number.prototype.toString writes it."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError("NaN and Infinity have no JSON form")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    # repr gives the shortest digits that read back as the same double.
    digits_text, _, exp_text = repr(value).partition("e")
    integer, _, fraction = digits_text.partition(".")
    fraction = fraction.rstrip("0") if fraction != "0" else ""
    digits = (integer + fraction).lstrip("0")
    # The decimal point sits after `point` digits of `digits` (ECMA-262's n).
    point = len(integer) + int(exp_text or 0) - (len(integer + fraction) - len(digits))
    digits = digits.rstrip("0")
    k = len(digits)
    if k <= point <= 21:
        return digits + "0" * (point - k)
    if 0 < point <= 21:
        return digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return "0." + "0" * (-point) + digits
    exponent = point - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def canonical(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"the integer {value} is outside I-JSON's ±(2**53 - 1)")
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_string(key) + ":" + canonical(value[key]) for key in keys) + "}"
    raise ValueError(f"{type(value).__name__} is not JSON")


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- the checks ---

_EVENT_FIELDS = (
    "seq", "ts", "actor", "action", "object_type", "object_id", "workspace_id",
    "pipeline_id", "payload", "payload_sha256", "prev_hash", "hash",
)  # fmt: skip


def _is_hash(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _optional_int(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _check_event(number: int, entry: dict) -> str:
    """Recompute one exported event's hashes; return its hash."""
    missing = [name for name in _EVENT_FIELDS if name not in entry]
    if missing:
        raise Bad(number, f"event lacks {', '.join(missing)}")
    actor = entry["actor"]
    if not (isinstance(actor, dict) and set(actor) == {"id", "name"} and _optional_int(actor["id"])):
        raise Bad(number, "actor must be {id, name}")
    for name in ("workspace_id", "pipeline_id"):
        if not _optional_int(entry[name]):
            raise Bad(number, f"{name} must be an integer or null")
    for name in ("action", "object_type", "object_id", "ts"):
        if not isinstance(entry[name], str):
            raise Bad(number, f"{name} must be a string")
    if not isinstance(actor["name"], str):
        raise Bad(number, "actor name must be a string")
    if entry.get("redacted"):
        # A redacted payload is a tombstone; its hash still names the original.
        if entry["payload"] != TOMBSTONE:
            raise Bad(number, "a redacted event's payload must be the tombstone")
    else:
        try:
            payload_text = canonical(entry["payload"])
        except ValueError as error:
            raise Bad(number, f"payload is not canonical JSON material: {error}") from None
        if sha256_hex(payload_text) != entry["payload_sha256"]:
            raise Bad(number, f"event #{entry['seq']}: payload does not match its payload_sha256")
    envelope = {
        "action": entry["action"],
        "actor": {"id": actor["id"], "name": actor["name"]},
        "object_id": entry["object_id"],
        "object_type": entry["object_type"],
        "payload_sha256": entry["payload_sha256"],
        "pipeline_id": entry["pipeline_id"],
        "prev_hash": entry["prev_hash"],
        "seq": entry["seq"],
        "ts": entry["ts"],
        "workspace_id": entry["workspace_id"],
    }
    if sha256_hex(canonical(envelope)) != entry["hash"]:
        raise Bad(number, f"event #{entry['seq']}: hash does not match its fields")
    return entry["hash"]


def _check_manifest(number: int, manifest: dict, seen: dict, body_sha256: str) -> None:
    expected = {
        "file_sha256": body_sha256,
        "first_seq": seen["first_seq"],
        "last_seq": seen["last_seq"],
        "first_prev_hash": seen["first_prev_hash"],
        "last_hash": seen["last_hash"],
    }
    for name, value in expected.items():
        if manifest.get(name) != value:
            raise Bad(number, f"manifest {name} is {manifest.get(name)!r}, the file gives {value!r}")
    counts = manifest.get("counts")
    if not isinstance(counts, dict):
        raise Bad(number, "manifest lacks its counts")
    for name in ("events", "omitted"):
        if counts.get(name) != seen[name]:
            raise Bad(number, f"manifest counts {counts.get(name)!r} {name}, the file holds {seen[name]}")


def verify_lines(lines) -> dict:
    """Check an export given as an iterable of byte lines. Returns a summary;
    raises ``Bad`` at the first problem."""
    body = hashlib.sha256()
    seen = {"events": 0, "omitted": 0, "first_seq": None, "last_seq": None, "first_prev_hash": None, "last_hash": None}
    manifest = None
    number = 0
    for number, raw in enumerate(lines, start=1):  # noqa: B007 - number is used after the loop
        if manifest is not None:
            raise Bad(number, "nothing may follow the manifest")
        try:
            entry = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as error:
            raise Bad(number, f"not JSON: {error}") from None
        if not isinstance(entry, dict):
            raise Bad(number, "not a JSON object")
        kind = entry.get("type")
        if kind == "manifest":
            manifest = entry
            _check_manifest(number, manifest, seen, body.hexdigest())
            continue
        body.update(raw)
        if kind not in ("event", "omitted"):
            raise Bad(number, f"unknown line type {kind!r}")
        seq, prev_hash, this_hash = entry.get("seq"), entry.get("prev_hash"), entry.get("hash")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise Bad(number, "seq must be a positive integer")
        if not _is_hash(prev_hash) or not _is_hash(this_hash):
            raise Bad(number, "prev_hash and hash must be 64 lower-case hex digits")
        if seen["last_seq"] is None:
            if seq == 1 and prev_hash != GENESIS:
                raise Bad(number, "the first event's prev_hash must be 64 zeros")
            seen["first_seq"], seen["first_prev_hash"] = seq, prev_hash
        else:
            if seq != seen["last_seq"] + 1:
                raise Bad(number, f"expected #{seen['last_seq'] + 1}, found #{seq}")
            if prev_hash != seen["last_hash"]:
                raise Bad(number, f"event #{seq}: prev_hash does not match the hash of #{seq - 1}")
        if kind == "event":
            _check_event(number, entry)
            seen["events"] += 1
        else:
            seen["omitted"] += 1
        seen["last_seq"], seen["last_hash"] = seq, this_hash
    if manifest is None:
        raise Bad(number + 1, "the file ends without its manifest line")
    return {**seen, "manifest": manifest}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m audit.verify FILE.jsonl", file=sys.stderr)
        return 2
    path = args[0]
    try:
        with open(path, "rb") as handle:
            summary = verify_lines(handle)
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror or error}", file=sys.stderr)
        return 2
    except Bad as bad:
        print(f"{path}: FAILED at {bad}", file=sys.stderr)
        return 1
    print(
        f"{path}: OK: {summary['events']} events and {summary['omitted']} hash-only entries, "
        f"#{summary['first_seq']}..#{summary['last_seq']}, chain head {summary['last_hash']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
