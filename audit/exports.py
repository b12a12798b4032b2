"""Exports of the audit timeline that prove themselves: JSONL, CSV and PDF.

An export covers the events a filter selects, within what its reader may see
(an ``AuditScope``). Between the first and the last included event, every
event left out is still written as a hash-only entry, so ``python -m
audit.verify`` can walk the chain from end to end: one the filter excludes
carries its hashed envelope without the payload (so the verifier can see that
the filter really excludes it), one outside the reader's scope its link only
(seq, prev_hash, hash), since its envelope is not theirs to see. When an
included event is redacted, the export runs on to the ``audit.redacted``
event that names it, so the file holds the record of every redaction in it.

The last entry is a manifest: the filter, the scope, the counts, both ends of
the chain and the SHA-256 of everything before it. The SHA-256 of the
manifest's canonical JSON is recorded in the export's ``audit.exported``
event, so the live chain confirms the manifest, and the manifest is signed
(HMAC-SHA256) with the checkpoint key when one is set.

Rows are read by keyset (``seq > last``) in batches and spooled to a temporary
file (the manifest is recorded before the first byte leaves), so memory stays
flat however long the export; only the PDF, a document built whole by
reportlab, is capped (``PDF_MAX_EVENTS``).
"""

import csv
import hashlib
import hmac
import io
import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Max, Min, Q
from django.utils import timezone

from audit.canonical import canonical_text
from audit.chain import format_ts
from audit.context import Actor, current_actor
from audit.models import AuditEvent
from audit.queries import event_batches
from audit.report import ReportEvent, ReportFacts, render_report
from audit.services import audit_record

FORMATS = ("jsonl", "csv", "pdf")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
BATCH = 2_000
PDF_MAX_EVENTS = 20_000
EXPORT_FORMAT = "keel-audit-export/2"
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # bytes of an export kept in memory before the spool goes to disk
# Fields of the manifest line outside its hashed and signed body.
MANIFEST_SEALS = ("manifest_sha256", "export_event_seq", "hmac_sha256")


class ExportError(Exception):
    pass


@dataclass(frozen=True)
class AuditScope:
    """What a reader may see: everything, or events of these workspaces and
    pipelines. Events that name neither (site-wide role changes) are for
    readers who see everything."""

    everything: bool = False
    workspace_ids: frozenset = field(default_factory=frozenset)
    pipeline_ids: frozenset = field(default_factory=frozenset)

    def q(self) -> Q:
        if self.everything:
            return Q()
        return Q(workspace_id__in=self.workspace_ids) | Q(pipeline_id__in=self.pipeline_ids)

    def allows(self, workspace_id, pipeline_id) -> bool:
        return self.everything or workspace_id in self.workspace_ids or pipeline_id in self.pipeline_ids

    @property
    def is_empty(self) -> bool:
        return not self.everything and not self.workspace_ids and not self.pipeline_ids


@dataclass(frozen=True)
class AuditFilter:
    """The timeline's filter. ``action`` matches itself and everything under
    it (``run`` matches ``run.started``); ``run`` is the object ``run:<id>``."""

    since: datetime | None = None
    until: datetime | None = None
    workspace_id: int | None = None
    pipeline_id: int | None = None
    actor: str | None = None
    action: str | None = None
    run_id: int | None = None
    object_type: str | None = None
    object_id: str | None = None

    def __post_init__(self):
        if self.run_id is not None:
            object.__setattr__(self, "object_type", "run")
            object.__setattr__(self, "object_id", str(self.run_id))

    def q(self) -> Q:
        query = Q()
        if self.since is not None:
            query &= Q(ts__gte=self.since)
        if self.until is not None:
            query &= Q(ts__lt=self.until)
        if self.workspace_id is not None:
            query &= Q(workspace_id=self.workspace_id)
        if self.pipeline_id is not None:
            query &= Q(pipeline_id=self.pipeline_id)
        if self.actor:
            query &= Q(actor_name=self.actor)
        if self.action:
            query &= Q(action=self.action) | Q(action__startswith=self.action + ".")
        if self.object_type:
            query &= Q(object_type=self.object_type)
        if self.object_id:
            query &= Q(object_id=self.object_id)
        return query

    def matcher(self):
        """The same filter as ``q()`` (less the scope), on a row as ``_rows`` yields it."""
        since = format_ts(self.since) if self.since else None
        until = format_ts(self.until) if self.until else None
        prefix = (self.action or "") + "."

        def matches(row) -> bool:
            (_seq, ts, _aid, actor_name, action, object_type, object_id, workspace_id, pipeline_id) = row[:9]
            return (
                (since is None or ts >= since)
                and (until is None or ts < until)
                and (self.workspace_id is None or workspace_id == self.workspace_id)
                and (self.pipeline_id is None or pipeline_id == self.pipeline_id)
                and (not self.actor or actor_name == self.actor)
                and (not self.action or action == self.action or action.startswith(prefix))
                and (not self.object_type or object_type == self.object_type)
                and (not self.object_id or object_id == self.object_id)
            )

        return matches

    def describe(self) -> dict:
        values = asdict(self)
        for name in ("since", "until"):
            if values[name] is not None:
                values[name] = format_ts(values[name])
        return {name: value for name, value in values.items() if value is not None}


# How far the chain's clock may run backwards (clock steps, skew between hosts)
# for the seq bound of an ``until`` filter to stay exact.
CLOCK_MARGIN = timedelta(seconds=1)


def _until_bound(until: datetime) -> Q:
    """A seq bound equivalent to ``ts < until``, found on the ts index, so a
    page newest-first need not walk back from the head through everything
    newer. ts is stamped under the chain-head lock, so it grows with seq
    except for a clock stepping back; the margin covers that."""
    first_after = (
        AuditEvent.objects.filter(ts__gte=until + CLOCK_MARGIN).order_by("ts").values_list("seq", flat=True).first()
    )
    return Q() if first_after is None else Q(seq__lt=first_after)


def audit_events_for(*, scope: AuditScope, audit_filter: AuditFilter):
    """The events a reader may see that the filter selects (a queryset)."""
    if scope.is_empty:
        return AuditEvent.objects.none()
    query = scope.q() & audit_filter.q()
    if audit_filter.until is not None:
        query &= _until_bound(audit_filter.until)
    return AuditEvent.objects.filter(query)


@dataclass
class ExportPlan:
    """What one export covers, fixed before its first byte is written."""

    scope: AuditScope
    audit_filter: AuditFilter
    first_seq: int | None
    last_seq: int | None
    exported_by: str = ""
    export_event_seq: int | None = None
    exported_at: str = field(default_factory=lambda: format_ts(timezone.now()))
    # Filled in by audit_export_start: the spooled entries and the sealed manifest.
    spool: object = None
    manifest: dict | None = None
    # Names of the workspaces and pipelines the reader may see ("workspace:1" -> name), for the PDF report.
    names: dict = field(default_factory=dict)


def export_plan(*, scope: AuditScope, audit_filter: AuditFilter) -> ExportPlan:
    bounds = audit_events_for(scope=scope, audit_filter=audit_filter).aggregate(first=Min("seq"), last=Max("seq"))
    return ExportPlan(scope=scope, audit_filter=audit_filter, first_seq=bounds["first"], last_seq=bounds["last"])


EVENT, OMITTED, OUTSIDE = "event", "omitted", "outside"


def _naming_seq(seqs: set[int]) -> int | None:
    """The newest ``audit.redacted`` event naming any of ``seqs``."""
    return (
        AuditEvent.objects.filter(
            action="audit.redacted", object_type="audit_event", object_id__in=[str(seq) for seq in seqs]
        )
        .aggregate(last=Max("seq"))
        .get("last")
    )


def _entries(plan: ExportPlan) -> Iterator[list[tuple[str, tuple]]]:
    """Batches of (kind, row) from the first included event to the last, and
    on to the ``audit.redacted`` event of every included redacted one: an
    included event, one the filter leaves out, or one outside the scope."""
    if plan.first_seq is None:
        return
    matches = plan.audit_filter.matcher()
    allows = plan.scope.allows
    unnamed: set[int] = set()  # redacted included events not yet followed by their record
    low, high = plan.first_seq, plan.last_seq
    while True:
        for rows in event_batches(low, high, BATCH):
            batch = []
            for row in rows:
                if not allows(row[7], row[8]):
                    batch.append((OUTSIDE, row))
                    continue
                if unnamed and row[4] == "audit.redacted" and row[5] == "audit_event" and row[6].isdigit():
                    unnamed.discard(int(row[6]))
                if matches(row):
                    batch.append((EVENT, row))
                    if row[13]:
                        unnamed.add(row[0])
                else:
                    batch.append((OMITTED, row))
            yield batch
        named_by = _naming_seq(unnamed) if unnamed else None
        if named_by is None or named_by <= high:
            return  # an unnamed tombstone stays so, and the verifier says so
        low, high = high + 1, named_by


def manifest_sha256(manifest: dict) -> str:
    """SHA-256 of the canonical JSON of the manifest's body (without its seals)."""
    body = {name: value for name, value in manifest.items() if name not in MANIFEST_SEALS}
    return hashlib.sha256(canonical_text(body).encode("utf-8")).hexdigest()


def manifest_signature(manifest: dict, key: str) -> str:
    body = {name: value for name, value in manifest.items() if name not in MANIFEST_SEALS}
    return hmac.new(key.encode("utf-8"), canonical_text(body).encode("utf-8"), hashlib.sha256).hexdigest()


def _manifest(plan: ExportPlan, counts: dict, ends: dict, file_sha256: str, fmt: str) -> dict:
    return {
        "type": "manifest",
        "format": EXPORT_FORMAT,
        "export": fmt,
        "filter": plan.audit_filter.describe(),
        "scope": "everything"
        if plan.scope.everything
        else {"workspace_ids": sorted(plan.scope.workspace_ids), "pipeline_ids": sorted(plan.scope.pipeline_ids)},
        "counts": counts,
        **ends,
        "file_sha256": file_sha256,
        "exported_at": plan.exported_at,
        "exported_by": plan.exported_by,
    }


def _envelope(row) -> dict:
    (seq, ts, actor_id, actor_name, action, object_type, object_id, workspace_id, pipeline_id,
     _payload, payload_sha, prev_hash, this_hash, redacted) = row  # fmt: skip
    return {
        "seq": seq,
        "ts": ts,
        "actor": {"id": actor_id, "name": actor_name},
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "workspace_id": workspace_id,
        "pipeline_id": pipeline_id,
        "payload_sha256": payload_sha,
        "prev_hash": prev_hash,
        "hash": this_hash,
    }


def _event_line(row) -> str:
    head = {"type": "event", **_envelope(row), "redacted": bool(row[13])}
    # The payload is stored as canonical JSON text: spliced in as it is.
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"payload":' + row[9] + "}\n"


def _omitted_line(row) -> str:
    # Everything hashed but the payload: the verifier checks the hash, and that the filter excludes it.
    return json.dumps({"type": "omitted", **_envelope(row)}, ensure_ascii=False, separators=(",", ":")) + "\n"


def _outside_line(row) -> str:
    return f'{{"type":"omitted","seq":{row[0]},"prev_hash":"{row[11]}","hash":"{row[12]}","outside_scope":true}}\n'


_LINES = {EVENT: _event_line, OMITTED: _omitted_line, OUTSIDE: _outside_line}


class _Tally:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.counts = {"events": 0, "omitted": 0, "outside_scope": 0}
        self.ends = {"first_seq": None, "last_seq": None, "first_prev_hash": None, "last_hash": None}

    def see(self, kind: str, row) -> None:
        self.counts["events" if kind == EVENT else "omitted"] += 1
        if kind == OUTSIDE:
            self.counts["outside_scope"] += 1
        if self.ends["first_seq"] is None:
            self.ends["first_seq"], self.ends["first_prev_hash"] = row[0], row[11]
        self.ends["last_seq"], self.ends["last_hash"] = row[0], row[12]


def _jsonl_body(plan: ExportPlan, tally: _Tally) -> Iterator[bytes]:
    for batch in _entries(plan):
        lines = []
        for kind, row in batch:
            tally.see(kind, row)
            lines.append(_LINES[kind](row))
        chunk = "".join(lines).encode("utf-8")
        tally.sha.update(chunk)
        yield chunk


def _jsonl_manifest(manifest: dict) -> bytes:
    return (json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def export_jsonl(plan: ExportPlan) -> Iterator[bytes]:
    """The JSONL entries and a manifest, neither recorded nor signed (what
    ``audit_export_start`` seals); for measuring the export itself."""
    tally = _Tally()
    yield from _jsonl_body(plan, tally)
    yield _jsonl_manifest(_manifest(plan, tally.counts, tally.ends, tally.sha.hexdigest(), "jsonl"))


CSV_HEADER = [
    "kind", "seq", "ts", "actor_id", "actor_name", "action", "object_type", "object_id", "workspace_id",
    "pipeline_id", "payload", "payload_sha256", "prev_hash", "hash", "redacted",
]  # fmt: skip


def _csv_body(plan: ExportPlan, tally: _Tally) -> Iterator[bytes]:
    """The same entries as the JSONL export, one CSV row each (a hash-only
    entry's payload cell empty, and its envelope cells too when it is outside
    the scope); the manifest row follows (``_csv_manifest``)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def drain() -> bytes:
        chunk = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        tally.sha.update(chunk)
        return chunk

    writer.writerow(CSV_HEADER)
    for batch in _entries(plan):
        for kind, row in batch:
            tally.see(kind, row)
            if kind == EVENT:
                writer.writerow(["event", *row[:13], "true" if row[13] else "false"])
            elif kind == OMITTED:
                writer.writerow(["omitted", *row[:9], "", *row[10:13], ""])
            else:
                writer.writerow(["omitted", row[0], *[""] * 10, row[11], row[12], ""])
        yield drain()
    header = drain()
    if header:  # nothing was included: the header is all there is
        yield header


def _csv_manifest(manifest: dict) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(
        ["manifest", *[""] * 9, json.dumps(manifest, ensure_ascii=False), "", "", "", ""]
    )
    return buffer.getvalue().encode("utf-8")


def _pdf_guard(scope: AuditScope, audit_filter: AuditFilter) -> None:
    included = audit_events_for(scope=scope, audit_filter=audit_filter).count()
    if included > PDF_MAX_EVENTS:
        raise ExportError(
            f"A PDF report holds at most {PDF_MAX_EVENTS:,} events and this filter selects {included:,}; "
            "narrow the filter or export JSONL or CSV."
        )


def _scope_words(scope: AuditScope, names: dict) -> str:
    if scope.everything:
        return "everything (every workspace and pipeline)"
    parts = []
    for kind, ids in (("workspace", scope.workspace_ids), ("pipeline", scope.pipeline_ids)):
        shown = [names.get(f"{kind}:{pk}", f"{kind} #{pk}") for pk in sorted(ids)]
        if shown:
            parts.append(f"the {kind}{'s' if len(shown) > 1 else ''} {', '.join(shown)}")
    return "; ".join(parts)


def export_pdf(plan: ExportPlan) -> bytes:
    """The readable report (audit/report.py): the cover with the filter in
    words, the counts and both chain hashes, then the table of included events."""
    _pdf_guard(plan.scope, plan.audit_filter)
    tally = _Tally()
    events = []
    for batch in _entries(plan):
        for kind, row in batch:
            tally.see(kind, row)
            if kind == EVENT:
                (seq, ts, _actor_id, actor, action, object_type, object_id, workspace_id, pipeline_id, payload) = row[
                    :10
                ]
                events.append(
                    ReportEvent(seq, ts, actor, action, object_type, object_id, workspace_id, pipeline_id, payload,
                                hash=row[12], redacted=bool(row[13]))
                )  # fmt: skip
    facts = ReportFacts(
        filter=plan.audit_filter.describe(),
        scope_words=_scope_words(plan.scope, plan.names),
        names=plan.names,
        exported_at=plan.exported_at,
        exported_by=plan.exported_by,
        counts=tally.counts,
        ends=tally.ends,
        redacted=sum(event.redacted for event in events),
    )
    return render_report(facts, events)


def audit_export_start(
    *, scope: AuditScope, audit_filter: AuditFilter, fmt: str, actor, names: dict | None = None
) -> ExportPlan:
    """Write the export and put it on the record before its first byte leaves.

    1. Fix the first and last included events (the plan).
    2. Spool the entries (PDF: build the report), tallying the file's SHA-256.
    3. Build the manifest, sign it with the checkpoint key when one is set.
    4. Record ``audit.exported`` with the manifest's SHA-256 (the PDF's own
       SHA-256): who exported what, and the proof a verifier checks against
       the live chain. ``export_chunks`` then sends the spool and manifest.

    ``names`` names the workspaces and pipelines the reader may see, for the
    PDF report (``audit`` itself knows them only by id).
    """
    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "pdf":
        _pdf_guard(scope, audit_filter)
    plan = export_plan(scope=scope, audit_filter=audit_filter)
    plan.names = names or {}
    plan.exported_by = (Actor.of(actor) if actor is not None else current_actor()).name
    payload = {"format": fmt, "filter": audit_filter.describe()}
    if fmt == "pdf":
        document = export_pdf(plan)
        plan.spool = io.BytesIO(document)
        payload.update(first_seq=plan.first_seq, last_seq=plan.last_seq)
        payload["file_sha256"] = hashlib.sha256(document).hexdigest()
    else:
        tally = _Tally()
        plan.spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - closed by export_chunks
        for chunk in (_jsonl_body if fmt == "jsonl" else _csv_body)(plan, tally):
            plan.spool.write(chunk)
        plan.manifest = _manifest(plan, tally.counts, tally.ends, tally.sha.hexdigest(), fmt)
        payload.update(
            first_seq=plan.manifest["first_seq"],
            last_seq=plan.manifest["last_seq"],
            counts=tally.counts,
            manifest_sha256=manifest_sha256(plan.manifest),
            signed=bool(settings.KEEL_CHECKPOINT_KEY),
        )
    event = audit_record(
        action="audit.exported",
        object_type="audit_export",
        object_id=fmt,
        payload=payload,
        workspace_id=audit_filter.workspace_id,
        pipeline_id=audit_filter.pipeline_id,
        actor=actor,
    )
    plan.export_event_seq = event.seq
    if plan.manifest is not None:
        seals = {"manifest_sha256": payload["manifest_sha256"], "export_event_seq": event.seq}
        if settings.KEEL_CHECKPOINT_KEY:
            seals["hmac_sha256"] = manifest_signature(plan.manifest, settings.KEEL_CHECKPOINT_KEY)
        plan.manifest = {**plan.manifest, **seals}
    return plan


def export_chunks(plan: ExportPlan, fmt: str) -> Iterator[bytes]:
    """The spooled export, then (JSONL, CSV) its sealed manifest."""
    spool = plan.spool
    try:
        spool.seek(0)
        while chunk := spool.read(256 * 1024):
            yield chunk
        if fmt == "jsonl":
            yield _jsonl_manifest(plan.manifest)
        elif fmt == "csv":
            yield _csv_manifest(plan.manifest)
    finally:
        spool.close()
