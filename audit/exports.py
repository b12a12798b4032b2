"""Exports of the audit timeline that prove themselves: JSONL, CSV and PDF.

An export covers the events a filter selects, within what its reader may see
(an ``AuditScope``). Between the first and the last included event, every
event left out is still written as its link only (seq, prev_hash, hash), so
``python -m audit.verify`` can walk the chain from end to end. The last entry
is a manifest: the filter, the counts, both ends of the chain and the SHA-256
of everything before it.

Rows are read by keyset (``seq > last``) in batches and written as they come,
so memory stays flat however long the export; only the PDF, a document built
whole by reportlab, is capped (``PDF_MAX_EVENTS``).
"""

import csv
import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Max, Min, Q
from django.utils import timezone

from audit.chain import format_ts
from audit.models import AuditEvent
from audit.selectors import _POSTGRES_TS, _sqlite_ts_text

FORMATS = ("jsonl", "csv", "pdf")
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8", "pdf": "application/pdf"}
BATCH = 2_000
PDF_MAX_EVENTS = 20_000
EXPORT_FORMAT = "keel-audit-export/1"


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

    def matcher(self, scope: AuditScope):
        """The same filter as ``q()``, on a row as ``_rows`` yields it."""
        since = format_ts(self.since) if self.since else None
        until = format_ts(self.until) if self.until else None
        prefix = (self.action or "") + "."

        def matches(row) -> bool:
            (_seq, ts, _aid, actor_name, action, object_type, object_id, workspace_id, pipeline_id) = row[:9]
            return (
                scope.allows(workspace_id, pipeline_id)
                and (since is None or ts >= since)
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


_COLUMNS = (
    "seq, {ts}, actor_id, actor_name, action, object_type, object_id, workspace_id, "
    "pipeline_id, payload, payload_sha256, prev_hash, hash, redacted_at IS NOT NULL"
)


def _rows(low: int, high: int, batch: int = BATCH) -> Iterator[list[tuple]]:
    """Batches of events with low <= seq <= high, in seq order, read by keyset
    so that no query holds more than one batch and none uses OFFSET."""
    postgres = connection.vendor == "postgresql"
    columns = _COLUMNS.format(ts=_POSTGRES_TS if postgres else "ts || ''")
    sql = f"SELECT {columns} FROM audit_auditevent WHERE seq >= %s AND seq <= %s ORDER BY seq LIMIT %s"
    after = low
    while after <= high:
        with connection.cursor() as cursor:
            cursor.execute(sql, [after, high, batch])
            rows = cursor.fetchall()
        if not rows:
            return
        if not postgres:
            rows = [(row[0], _sqlite_ts_text(row[1]), *row[2:]) for row in rows]
        yield rows
        after = rows[-1][0] + 1


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


def export_plan(*, scope: AuditScope, audit_filter: AuditFilter) -> ExportPlan:
    bounds = audit_events_for(scope=scope, audit_filter=audit_filter).aggregate(first=Min("seq"), last=Max("seq"))
    return ExportPlan(scope=scope, audit_filter=audit_filter, first_seq=bounds["first"], last_seq=bounds["last"])


def _entries(plan: ExportPlan) -> Iterator[list[tuple[bool, tuple]]]:
    """Batches of (included, row) from the first to the last included event."""
    if plan.first_seq is None:
        return
    matches = plan.audit_filter.matcher(plan.scope)
    for rows in _rows(plan.first_seq, plan.last_seq):
        yield [(matches(row), row) for row in rows]


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
        "export_event_seq": plan.export_event_seq,
    }


def _event_line(row) -> str:
    (seq, ts, actor_id, actor_name, action, object_type, object_id, workspace_id, pipeline_id,
     payload, payload_sha, prev_hash, this_hash, redacted) = row  # fmt: skip
    head = {
        "type": "event",
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
        "redacted": bool(redacted),
    }
    # The payload is stored as canonical JSON text: spliced in as it is.
    return json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"payload":' + payload + "}\n"


def _omitted_line(row) -> str:
    return f'{{"type":"omitted","seq":{row[0]},"prev_hash":"{row[11]}","hash":"{row[12]}"}}\n'


class _Tally:
    def __init__(self):
        self.sha = hashlib.sha256()
        self.counts = {"events": 0, "omitted": 0}
        self.ends = {"first_seq": None, "last_seq": None, "first_prev_hash": None, "last_hash": None}

    def see(self, included: bool, row) -> None:
        self.counts["events" if included else "omitted"] += 1
        if self.ends["first_seq"] is None:
            self.ends["first_seq"], self.ends["first_prev_hash"] = row[0], row[11]
        self.ends["last_seq"], self.ends["last_hash"] = row[0], row[12]


def export_jsonl(plan: ExportPlan) -> Iterator[bytes]:
    tally = _Tally()
    for batch in _entries(plan):
        lines = []
        for included, row in batch:
            tally.see(included, row)
            lines.append(_event_line(row) if included else _omitted_line(row))
        chunk = "".join(lines).encode("utf-8")
        tally.sha.update(chunk)
        yield chunk
    manifest = _manifest(plan, tally.counts, tally.ends, tally.sha.hexdigest(), "jsonl")
    yield (json.dumps(manifest, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


CSV_HEADER = [
    "kind", "seq", "ts", "actor_id", "actor_name", "action", "object_type", "object_id", "workspace_id",
    "pipeline_id", "payload", "payload_sha256", "prev_hash", "hash", "redacted",
]  # fmt: skip


def export_csv(plan: ExportPlan) -> Iterator[bytes]:
    """The same entries as the JSONL export, one CSV row each; the manifest is
    the last row (kind ``manifest``, its JSON in the payload column) and its
    file_sha256 covers every byte before that row."""
    tally = _Tally()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")

    def drain() -> bytes:
        chunk = buffer.getvalue().encode("utf-8")
        buffer.seek(0)
        buffer.truncate()
        return chunk

    writer.writerow(CSV_HEADER)
    for batch in _entries(plan):
        for included, row in batch:
            tally.see(included, row)
            if included:
                writer.writerow(["event", *row[:13], "true" if row[13] else "false"])
            else:
                writer.writerow(["omitted", row[0], *[""] * 10, row[11], row[12], ""])
        chunk = drain()
        tally.sha.update(chunk)
        yield chunk
    header = drain()
    if header:  # nothing was included: the header is all there is
        tally.sha.update(header)
        yield header
    manifest = _manifest(plan, tally.counts, tally.ends, tally.sha.hexdigest(), "csv")
    writer.writerow(["manifest", *[""] * 9, json.dumps(manifest, ensure_ascii=False), "", "", "", ""])
    yield drain()


def _pdf_guard(scope: AuditScope, audit_filter: AuditFilter) -> None:
    included = audit_events_for(scope=scope, audit_filter=audit_filter).count()
    if included > PDF_MAX_EVENTS:
        raise ExportError(
            f"A PDF report holds at most {PDF_MAX_EVENTS:,} events and this filter selects {included:,}; "
            "narrow the filter or export JSONL or CSV."
        )


def export_pdf(plan: ExportPlan) -> bytes:
    """A readable report: the summary, then the table of included events."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.pdfgen.canvas import Canvas

    _pdf_guard(plan.scope, plan.audit_filter)
    tally = _Tally()
    out = io.BytesIO()
    width, height = landscape(A4)
    pdf = Canvas(out, pagesize=(width, height), invariant=1)
    pdf.setTitle("Keel audit export")
    pdf.setAuthor(plan.exported_by or "Keel")

    y = height - 40

    def line(text: str, *, size: int = 8, bold: bool = False) -> None:
        nonlocal y
        if y < 40:
            pdf.showPage()
            y = height - 40
        pdf.setFont("Helvetica-Bold" if bold else "Helvetica", size)
        pdf.drawString(30, y, text[:190])
        y -= size + 4

    rows = []
    for batch in _entries(plan):
        for is_included, row in batch:
            tally.see(is_included, row)
            if is_included:
                rows.append(row[:9] + (row[12], row[13]))
    line("Keel audit export", size=16, bold=True)
    line(f"Exported {plan.exported_at} by {plan.exported_by or 'system'}", size=10)
    line(f"Filter: {json.dumps(plan.audit_filter.describe()) or 'none'}", size=10)
    line(f"Events: {tally.counts['events']}; left out between them (hash-only): {tally.counts['omitted']}", size=10)
    line(f"Sequence: #{tally.ends['first_seq']} to #{tally.ends['last_seq']}", size=10)
    line(f"Chain hash before the first: {tally.ends['first_prev_hash']}", size=10)
    line(f"Chain hash after the last:   {tally.ends['last_hash']}", size=10)
    line("Verify the JSONL export of the same filter offline with: python -m audit.verify FILE.jsonl", size=10)
    y -= 10
    heading = f"{'seq':<8} {'time (UTC)':<29} {'actor':<20} {'action':<31} object"
    line(heading, bold=True)
    for seq, ts, _aid, actor, action, otype, oid, _ws, _pl, this_hash, redacted in rows:
        mark = " [redacted]" if redacted else ""
        line(f"{seq:<8} {ts:<29} {actor[:20]:<20} {action[:31]:<31} {otype}:{oid}{mark}   {this_hash[:16]}")
    pdf.showPage()
    pdf.save()
    return out.getvalue()


def audit_export_start(*, scope: AuditScope, audit_filter: AuditFilter, fmt: str, actor) -> ExportPlan:
    """Fix what an export covers and put the export itself on the record (who
    exported what) before its first byte is written."""
    from audit.services import audit_record

    if fmt not in FORMATS:
        raise ExportError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "pdf":
        _pdf_guard(scope, audit_filter)
    plan = export_plan(scope=scope, audit_filter=audit_filter)
    event = audit_record(
        action="audit.exported",
        object_type="audit_export",
        object_id=fmt,
        payload={
            "format": fmt,
            "filter": audit_filter.describe(),
            "first_seq": plan.first_seq,
            "last_seq": plan.last_seq,
        },
        workspace_id=audit_filter.workspace_id,
        pipeline_id=audit_filter.pipeline_id,
        actor=actor,
    )
    plan.exported_by = event.actor_name
    plan.export_event_seq = event.seq
    return plan


def export_chunks(plan: ExportPlan, fmt: str) -> Iterator[bytes]:
    if fmt == "jsonl":
        return export_jsonl(plan)
    if fmt == "csv":
        return export_csv(plan)
    return iter([export_pdf(plan)])
