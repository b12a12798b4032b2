"""Verify an exported JSONL audit file offline:
``python -m audit.verify FILE.jsonl [--key KEY]``.

Standalone on purpose. It uses the standard library only and implements the
hash rule of DESIGN.md ("The audit chain") from scratch, including its own
canonical JSON (RFC 8785), so that an auditor can check an export without Keel,
without its database, and without trusting Keel's own code to check itself.

The file is one JSON object per line:

- ``{"type": "event", ...}``: an exported event with every hashed field and
  its payload; its payload hash and its event hash are recomputed, and it
  must match the manifest's filter and scope. A redacted one (its payload the
  tombstone) must be named by a later ``audit.redacted`` event in the file.
- ``{"type": "omitted", ...}`` with every hashed field but the payload: an
  event the filter left out. Its hash is recomputed, and the filter must
  really exclude it (an included event turned into one is caught).
- ``{"type": "omitted", "seq", "prev_hash", "hash", "outside_scope": true}``:
  an event outside what the exporter may see, kept as its link only. Only an
  export of less than everything holds these; what they hide is shown by the
  signature (``--key``) or by the live chain (``manage.py audit_verify
  --export FILE``), not by this file alone.
- ``{"type": "manifest", ...}``: the last line. The filter, the scope, the
  counts, the first and last sequence numbers, the chain hash before the first
  line and after the last, the SHA-256 of every byte before the manifest line;
  then its seals: ``manifest_sha256`` (the SHA-256 of the canonical JSON of the
  manifest less its seals, which the ``audit.exported`` event in the chain
  records), ``export_event_seq`` and, when Keel has a checkpoint key,
  ``hmac_sha256`` (HMAC-SHA256 of the same bytes), checked with ``--key``.

Exit status 0 when everything checks, 1 naming the first bad line, 2 when the
file cannot be read at all (or the arguments are wrong).
"""

import argparse
import hashlib
import hmac
import json
import math
import re
import sys

GENESIS = "0" * 64
MAX_SAFE_INTEGER = 2**53 - 1
TOMBSTONE = {"redacted": True}
_HEX = frozenset("0123456789abcdef")


class Bad(Exception):
    """The first problem found, with the line it is on."""

    def __init__(self, line: int, problem: str):
        # Line 0: the manifest, read first from the end of the file.
        super().__init__(f"line {line}: {problem}" if line else f"the manifest (last line): {problem}")
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
_STUB_FIELDS = tuple(name for name in _EVENT_FIELDS if name != "payload")
MANIFEST_SEALS = ("manifest_sha256", "export_event_seq", "hmac_sha256")
_TS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z\Z")
_FILTER_TEXT = ("actor", "action", "object_type", "object_id")
_FILTER_INTS = ("workspace_id", "pipeline_id", "run_id")


def _is_hash(value) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_int(value) -> bool:
    return value is None or _is_int(value)


def _check_envelope(number: int, entry: dict, fields: tuple) -> str:
    """Recompute one entry's event hash from its hashed fields (an event's
    payload is checked by the caller); return its hash."""
    missing = [name for name in fields if name not in entry]
    if missing:
        raise Bad(number, f"{entry.get('type')} entry lacks {', '.join(missing)}")
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
    if not _is_hash(entry["payload_sha256"]):
        raise Bad(number, "payload_sha256 must be 64 lower-case hex digits")
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
    try:
        text = canonical(envelope)
    except ValueError as error:
        raise Bad(number, f"event #{entry['seq']}: {error}") from None
    if sha256_hex(text) != entry["hash"]:
        raise Bad(number, f"event #{entry['seq']}: hash does not match its fields")
    return entry["hash"]


def _check_event(number: int, entry: dict) -> str:
    """Recompute one exported event's hashes; return its hash."""
    missing = [name for name in _EVENT_FIELDS if name not in entry]
    if missing:
        raise Bad(number, f"event lacks {', '.join(missing)}")
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
    return _check_envelope(number, entry, _EVENT_FIELDS)


def _selection(number: int, manifest) -> tuple:
    """(in_scope, matches, everything) from the manifest's scope and filter,
    exactly as Keel selects: ``action`` matches itself and every action under
    it, ``since`` is included and ``until`` is not, ``run_id`` is the object
    ``run:<id>``. A filter field this verifier does not know is refused: it
    could not check it."""
    if not isinstance(manifest, dict):
        raise Bad(number, "the manifest is not a JSON object")
    scope, given = manifest.get("scope"), manifest.get("filter")
    if scope == "everything":
        workspaces = pipelines = None
    elif (
        isinstance(scope, dict)
        and set(scope) == {"workspace_ids", "pipeline_ids"}
        and all(isinstance(scope[k], list) and all(_is_int(i) for i in scope[k]) for k in scope)
    ):
        workspaces, pipelines = frozenset(scope["workspace_ids"]), frozenset(scope["pipeline_ids"])
    else:
        raise Bad(number, 'the manifest scope must be "everything" or {workspace_ids, pipeline_ids}')
    if not isinstance(given, dict):
        raise Bad(number, "the manifest filter must be a JSON object")
    unknown = sorted(set(given) - {"since", "until", *_FILTER_TEXT, *_FILTER_INTS})
    if unknown:
        raise Bad(number, f"the manifest filter holds {', '.join(unknown)}, which this verifier cannot check")
    for name in ("since", "until"):
        if name in given and not (isinstance(given[name], str) and _TS.match(given[name])):
            raise Bad(number, f"the manifest filter's {name} must be a time as YYYY-MM-DDTHH:MM:SS.ffffffZ")
    for name in _FILTER_TEXT:
        if name in given and not isinstance(given[name], str):
            raise Bad(number, f"the manifest filter's {name} must be a string")
    for name in _FILTER_INTS:
        if name in given and not _is_int(given[name]):
            raise Bad(number, f"the manifest filter's {name} must be an integer")
    conditions = []
    if "since" in given:
        conditions.append(("since", lambda e, v=given["since"]: e["ts"] >= v))
    if "until" in given:
        conditions.append(("until", lambda e, v=given["until"]: e["ts"] < v))
    for name in ("workspace_id", "pipeline_id", "object_type", "object_id"):
        if given.get(name) is not None and given.get(name) != "":
            conditions.append((name, lambda e, n=name, v=given[name]: e[n] == v))
    if given.get("actor"):
        conditions.append(("actor", lambda e, v=given["actor"]: e["actor"]["name"] == v))
    if given.get("action"):
        action = given["action"]
        conditions.append(("action", lambda e, v=action: e["action"] == v or e["action"].startswith(v + ".")))
    if "run_id" in given:
        run = given["run_id"]
        conditions.append(("run_id", lambda e, v=str(run): e["object_type"] == "run" and e["object_id"] == v))

    def in_scope(entry) -> bool:
        return workspaces is None or entry["workspace_id"] in workspaces or entry["pipeline_id"] in pipelines

    def failing(entry) -> str | None:
        """The first filter field the entry does not match, or None."""
        return next((name for name, test in conditions if not test(entry)), None)

    return in_scope, failing, workspaces is None


def _redaction_named(entry: dict) -> int | None:
    """The seq an ``audit.redacted`` entry names, or None for any other entry."""
    if entry.get("action") == "audit.redacted" and entry.get("object_type") == "audit_event":
        object_id = entry.get("object_id")
        if isinstance(object_id, str) and object_id.isdigit():
            return int(object_id)
    return None


def _check_manifest(number: int, manifest: dict, seen: dict, body_sha256: str, key: str | None) -> None:
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
    for name in ("events", "omitted", "outside_scope"):
        if counts.get(name) != seen[name]:
            raise Bad(number, f"manifest counts {counts.get(name)!r} {name}, the file holds {seen[name]}")
    _check_seals(number, manifest, key)


def _check_seals(number: int, manifest: dict, key: str | None) -> None:
    """The manifest's own SHA-256, and with a key its signature."""
    body = {name: value for name, value in manifest.items() if name not in MANIFEST_SEALS}
    try:
        body_text = canonical(body)
    except ValueError as error:
        raise Bad(number, f"the manifest is not canonical JSON material: {error}") from None
    if manifest.get("manifest_sha256") != sha256_hex(body_text):
        raise Bad(number, "manifest_sha256 does not match the manifest")
    if key is not None:
        signature = manifest.get("hmac_sha256")
        if not isinstance(signature, str):
            raise Bad(number, "the manifest is not signed, and a key was given")
        good = hmac.new(key.encode("utf-8"), body_text.encode("utf-8"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature, good):
            raise Bad(number, "the manifest's signature does not match (the wrong key, or a changed manifest)")


def _last_line(handle) -> bytes:
    """The file's last non-empty line, read from its end."""
    handle.seek(0, 2)
    position, data = handle.tell(), b""
    while position > 0:
        step = min(65536, position)
        position -= step
        handle.seek(position)
        data = handle.read(step) + data
        stripped = data.rstrip(b"\r\n")
        if b"\n" in stripped:
            data = stripped.rsplit(b"\n", 1)[1]
            break
    handle.seek(0)
    return data.rstrip(b"\r\n")


def verify_file(handle, *, key: str | None = None) -> dict:
    """Check an export given as a binary file. Returns a summary; raises
    ``Bad`` at the first problem.

    The manifest (the last line) is read first, for the filter and scope that
    every entry is checked against as it streams past; it is then checked
    itself when the stream reaches it."""
    try:
        preview = json.loads(_last_line(handle))
    except (ValueError, UnicodeDecodeError):
        preview = None
    if isinstance(preview, dict) and preview.get("type") == "manifest":
        if key is not None:  # a signed manifest vouches for the whole file: checked first
            _check_seals(0, preview, key)
        selection = _selection(0, preview)
    else:  # the chain is still walked; the missing manifest is named at the end
        selection = (lambda entry: True, lambda entry: None, True)
    body = hashlib.sha256()
    seen = {"events": 0, "omitted": 0, "outside_scope": 0}
    seen.update(first_seq=None, last_seq=None, first_prev_hash=None, last_hash=None)
    unnamed: dict[int, int] = {}  # redacted event seq -> its line, until a later audit.redacted names it
    manifest = None
    number = 0
    for number, raw in enumerate(handle, start=1):  # noqa: B007 - number is used after the loop
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
            _check_manifest(number, manifest, seen, body.hexdigest(), key)
            continue
        body.update(raw)
        if kind not in ("event", "omitted"):
            raise Bad(number, f"unknown line type {kind!r}")
        seq, prev_hash, this_hash = entry.get("seq"), entry.get("prev_hash"), entry.get("hash")
        if not _is_int(seq) or seq < 1:
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
        in_scope, failing, everything = selection
        if kind == "event":
            _check_event(number, entry)
            if not in_scope(entry):
                raise Bad(number, f"event #{seq} is outside the manifest's scope")
            field = failing(entry)
            if field is not None:
                raise Bad(number, f"event #{seq} does not match the manifest's filter ({field})")
            seen["events"] += 1
        elif entry.get("outside_scope") is True and set(entry) == {"type", "seq", "prev_hash", "hash", "outside_scope"}:
            if everything:
                raise Bad(number, f"#{seq} is marked outside the scope of an export of everything")
            seen["omitted"] += 1
            seen["outside_scope"] += 1
        else:
            _check_envelope(number, entry, _STUB_FIELDS)
            if in_scope(entry) and failing(entry) is None:
                raise Bad(
                    number, f"hash-only entry #{seq} matches the manifest's filter: an included event was left out"
                )
            seen["omitted"] += 1
        named = _redaction_named(entry)
        if named is not None:
            unnamed.pop(named, None)
            payload = entry.get("payload")
            if (
                kind == "event"
                and not entry.get("redacted")
                and not (isinstance(payload, dict) and payload.get("seq") == named)
            ):
                raise Bad(number, f"event #{seq} records a redaction of #{named} but its payload names another")
        if kind == "event" and entry.get("redacted"):
            unnamed[seq] = number
        seen["last_seq"], seen["last_hash"] = seq, this_hash
    if manifest is None:
        raise Bad(number + 1, "the file ends without its manifest line")
    if unnamed:
        seq, line = min(unnamed.items())
        raise Bad(
            line,
            f"event #{seq} is redacted but no later audit.redacted event in the file records it "
            "(a redaction made by hand, or a payload blanked in the file)",
        )
    return {**seen, "manifest": manifest}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audit.verify", description="Verify a Keel JSONL audit export.")
    parser.add_argument("file", help="the JSONL export")
    parser.add_argument("--key", help="the checkpoint key (KEEL_CHECKPOINT_KEY): check the manifest's signature")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit:
        return 0 if exit.code == 0 else 2
    path = args.file
    try:
        with open(path, "rb") as handle:
            summary = verify_file(handle, key=args.key)
    except OSError as error:
        print(f"{path}: cannot read: {error.strerror or error}", file=sys.stderr)
        return 2
    except Bad as bad:
        print(f"{path}: FAILED at {bad}", file=sys.stderr)
        return 1
    manifest = summary["manifest"]
    if args.key is not None:
        signature = "signature checked"
    elif "hmac_sha256" in manifest:
        signature = "signed, signature NOT checked (give --key)"
    else:
        signature = "not signed"
    outside = f" ({summary['outside_scope']} outside the exporter's scope)" if summary["outside_scope"] else ""
    print(
        f"{path}: OK: {summary['events']} events and {summary['omitted']} hash-only entries{outside}, "
        f"#{summary['first_seq']}..#{summary['last_seq']}, chain head {summary['last_hash']}; "
        f"manifest {manifest['manifest_sha256']} (audit.exported #{manifest.get('export_event_seq')}), {signature}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
