"""The PDF audit report an agency hands to its client: a cover (what the
report covers in words, the counts, the chain hashes around it and how to
check them), then one table row per event that fits a landscape A4 page, and
page numbers on every page.

Laid out by hand on reportlab's canvas: every cell is wrapped or cut to its
column's width with the font's own metrics, so the rows and pages are known
before the first is drawn ("Page 2 of 9") and a column's header and its cells
start at the same x. The report is presentation; the proof is the JSONL
export of the same filter, and this file's SHA-256 in its ``audit.exported``
event.
"""

import io
from dataclasses import dataclass
from datetime import UTC, datetime

from django.utils import timezone
from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.utils import simpleSplit
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.pdfgen.canvas import Canvas

from audit.summary import payload_summary

PAGE_WIDTH, PAGE_HEIGHT = landscape(A4)
MARGIN = 36
TEXT = "Helvetica"
BOLD = "Helvetica-Bold"
MONO = "Courier"
SIZE = 7.5
LEADING = 9
PAD = 3  # above and below a row's text
CELL_GAP = 6  # between a cell's text and the next column
INK, MUTED, RULE, BAND = HexColor("#1d232b"), HexColor("#5b6470"), HexColor("#d5d9de"), HexColor("#eef1f4")


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    width: float
    font: str = TEXT
    lines: int = 1  # at most this many lines a cell; the last is cut with an ellipsis


# Points wide; the details take what the others leave of the page between its margins.
WIDTHS = {"seq": 40, "ts": 78, "actor": 64, "action": 104, "object": 92, "where": 112, "hash": 64}
COLUMNS = [
    Column("seq", "Seq", WIDTHS["seq"]),
    Column("ts", "Time (UTC)", WIDTHS["ts"]),
    Column("actor", "Actor", WIDTHS["actor"], lines=2),
    Column("action", "Action", WIDTHS["action"], lines=2),
    Column("object", "Object", WIDTHS["object"], lines=2),
    Column("where", "Workspace › pipeline", WIDTHS["where"], lines=2),
    Column("details", "Details", PAGE_WIDTH - 2 * MARGIN - sum(WIDTHS.values()), lines=2),
    Column("hash", "Event hash", WIDTHS["hash"], font=MONO),
]
TABLE_TOP = PAGE_HEIGHT - MARGIN - 26  # below the running title
TABLE_BOTTOM = MARGIN + 18  # above the footer


@dataclass(frozen=True)
class ReportEvent:
    seq: int
    ts: str  # the chain's UTC text, 2026-12-06T10:02:57.123456Z
    actor: str
    action: str
    object_type: str
    object_id: str
    workspace_id: int | None
    pipeline_id: int | None
    payload: str
    hash: str
    redacted: bool


@dataclass(frozen=True)
class ReportFacts:
    """Everything the cover states, fixed before the report is drawn."""

    filter: dict  # AuditFilter.describe()
    scope_words: str
    names: dict[str, str]  # "workspace:1" -> name, for what the exporter may see
    exported_at: str
    exported_by: str
    counts: dict
    ends: dict
    redacted: int


def column_x() -> list[float]:
    """Where each column starts: its header and its cells alike."""
    xs, x = [], MARGIN
    for column in COLUMNS:
        xs.append(x)
        x += column.width
    return xs


def _fit(text: str, font: str, width: float, size: float = SIZE) -> str:
    """``text`` cut with an ellipsis to ``width`` points in ``font``."""
    if stringWidth(text, font, size) <= width:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits with the ellipsis
        middle = (low + high + 1) // 2
        if stringWidth(text[:middle] + "…", font, size) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + "…"


def _cell_lines(text: str, column: Column) -> list[str]:
    width = column.width - CELL_GAP
    if column.lines == 1:
        return [_fit(text, column.font, width)]
    lines = simpleSplit(text, column.font, SIZE, width) or [""]
    if len(lines) > column.lines:  # the rest goes on the last line, cut with an ellipsis
        lines = lines[: column.lines - 1] + [" ".join(lines[column.lines - 1 :])]
    # A word longer than the column is cut rather than left to run into the next.
    return [_fit(line, column.font, width) for line in lines]


def _name(kind: str, object_id, names: dict[str, str]) -> str:
    name = names.get(f"{kind}:{object_id}")
    return f"{name} (#{object_id})" if name else f"{kind} #{object_id}"


def _cells(event: ReportEvent, names: dict[str, str]) -> dict[str, str]:
    where = " › ".join(
        names.get(f"{kind}:{object_id}", f"#{object_id}")
        for kind, object_id in (("workspace", event.workspace_id), ("pipeline", event.pipeline_id))
        if object_id is not None
    )
    object_name = names.get(f"{event.object_type}:{event.object_id}")
    return {
        "seq": f"#{event.seq}",
        "ts": event.ts[:19].replace("T", " "),
        "actor": event.actor,
        "action": event.action,
        "object": f"{event.object_type.replace('_', ' ')} {object_name or event.object_id}",
        "where": where or "site-wide",
        "details": payload_summary(event.payload, redacted=event.redacted),
        "hash": event.hash[:12],
    }


def _moment(text: str) -> str:
    """The filter's UTC moment in words, local time first when the site's zone is not UTC."""
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    utc = moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    local = timezone.localtime(moment)
    if local.utcoffset() == moment.utcoffset() and local.tzname() in ("UTC", None):
        return utc
    return f"{local.strftime('%Y-%m-%d %H:%M:%S %Z')} ({utc})"


def filter_in_words(described: dict, names: dict[str, str]) -> list[str]:
    """The filter as sentences, one per condition; every event when it has none."""
    lines = []
    since, until = described.get("since"), described.get("until")
    if since and until:
        lines.append(f"Events from {_moment(since)} until {_moment(until)}")
    elif since:
        lines.append(f"Events from {_moment(since)} on")
    elif until:
        lines.append(f"Events before {_moment(until)}")
    if "workspace_id" in described:
        lines.append(f"In the workspace {_name('workspace', described['workspace_id'], names)}")
    if "pipeline_id" in described:
        lines.append(f"Of the pipeline {_name('pipeline', described['pipeline_id'], names)}")
    if described.get("actor"):
        lines.append(f"Done by {described['actor']}")
    if described.get("action"):
        action = described["action"]
        lines.append(f"Action {action}" if "." in action else f"Action {action} and every {action}.* action")
    if described.get("object_type"):
        lines.append(f"About {described['object_type'].replace('_', ' ')} {described.get('object_id', '')}".rstrip())
    return lines or ["Every event, with no filter"]


def _pages(events: list[ReportEvent], names: dict[str, str]) -> list[list[tuple[float, list[list[str]]]]]:
    """The table's rows, laid out: per page, (row height, lines per column)."""
    pages, page, y = [], [], TABLE_TOP - (LEADING + 2 * PAD)  # below the header row
    for event in events:
        cells = _cells(event, names)
        lines = [_cell_lines(cells[column.key], column) for column in COLUMNS]
        height = max(len(cell) for cell in lines) * LEADING + 2 * PAD
        if y - height < TABLE_BOTTOM and page:
            pages.append(page)
            page, y = [], TABLE_TOP - (LEADING + 2 * PAD)
        page.append((height, lines))
        y -= height
    if page:
        pages.append(page)
    return pages


def render_report(facts: ReportFacts, events: list[ReportEvent]) -> bytes:
    """The report's bytes (reportlab's invariant mode: the same input gives the same file)."""
    out = io.BytesIO()
    pdf = Canvas(out, pagesize=(PAGE_WIDTH, PAGE_HEIGHT), invariant=1)
    pdf.setTitle("Keel audit report")
    pdf.setAuthor(facts.exported_by or "Keel")
    pdf.setSubject("; ".join(filter_in_words(facts.filter, facts.names)))
    pages = _pages(events, facts.names)
    total = 1 + len(pages)
    _cover(pdf, facts)
    _footer(pdf, facts, 1, total)
    pdf.showPage()
    for number, rows in enumerate(pages, start=2):
        _table_page(pdf, facts, rows)
        _footer(pdf, facts, number, total)
        pdf.showPage()
    pdf.save()
    return out.getvalue()


def _cover(pdf: Canvas, facts: ReportFacts) -> None:
    y = PAGE_HEIGHT - MARGIN - 20
    pdf.setFillColor(INK)
    pdf.setFont(BOLD, 22)
    pdf.drawString(MARGIN, y, "Audit report")
    y -= 18
    pdf.setFont(TEXT, 10)
    pdf.setFillColor(MUTED)
    exported = _moment(facts.exported_at)
    pdf.drawString(MARGIN, y, f"From Keel's audit trail · exported {exported} by {facts.exported_by or 'Keel'}")
    y -= 30

    def section(title: str) -> None:
        nonlocal y
        pdf.setFillColor(INK)
        pdf.setFont(BOLD, 12)
        pdf.drawString(MARGIN, y, title)
        pdf.setStrokeColor(RULE)
        pdf.line(MARGIN, y - 4, PAGE_WIDTH - MARGIN, y - 4)
        y -= 20

    def pair(label: str, value: str, *, font: str = TEXT) -> None:
        nonlocal y
        pdf.setFillColor(MUTED)
        pdf.setFont(TEXT, 10)
        pdf.drawString(MARGIN, y, label)
        pdf.setFillColor(INK)
        pdf.setFont(font, 10)
        pdf.drawString(MARGIN + 250, y, _fit(value, font, PAGE_WIDTH - 2 * MARGIN - 250, 10))
        y -= 15

    section("What this report covers")
    for number, line in enumerate(filter_in_words(facts.filter, facts.names)):
        pair("" if number else "Which events", line)
    pair("As seen by the exporter, who may read", facts.scope_words)
    y -= 12

    section("Counts")
    counts, ends = facts.counts, facts.ends
    pair("Events in this report", f"{counts['events']:,}")
    pair("Of them redacted (details removed)", f"{facts.redacted:,}")
    pair("Left out between them by the filter", f"{counts['omitted'] - counts['outside_scope']:,}")
    pair("Between them, outside what the exporter may see", f"{counts['outside_scope']:,}")
    if ends["first_seq"] is not None:
        pair("Chain positions covered", f"#{ends['first_seq']} to #{ends['last_seq']}")
    y -= 12

    section("Chain hashes")
    if ends["first_seq"] is None:
        pair("", "No event matches this filter: there is no stretch of the chain to show.")
    else:
        pair(f"Before the first event (#{ends['first_seq']})", ends["first_prev_hash"], font=MONO)
        pair(f"After the last event (#{ends['last_seq']})", ends["last_hash"], font=MONO)
    y -= 12

    section("How to check this report")
    for text in (
        "Export the same filter as JSONL from the auditor's desk and run:  python -m audit.verify FILE.jsonl",
        "The verifier recomputes every hash; the two chain hashes above must be the first and last links it reports.",
        "This PDF's own SHA-256 is recorded in the audit trail, in the audit.exported event of this export.",
    ):
        pdf.setFillColor(INK)
        pdf.setFont(TEXT, 10)
        pdf.drawString(MARGIN, y, text)
        y -= 15


def _table_page(pdf: Canvas, facts: ReportFacts, rows) -> None:
    xs = column_x()
    right = PAGE_WIDTH - MARGIN
    pdf.setFillColor(MUTED)
    pdf.setFont(TEXT, 8)
    title = "Keel audit report · " + "; ".join(filter_in_words(facts.filter, facts.names))
    pdf.drawString(MARGIN, PAGE_HEIGHT - MARGIN - 8, _fit(title, TEXT, right - MARGIN, 8))
    y = TABLE_TOP
    header_height = LEADING + 2 * PAD
    pdf.setFillColor(BAND)
    pdf.rect(MARGIN, y - header_height, right - MARGIN, header_height, stroke=0, fill=1)
    pdf.setFillColor(INK)
    pdf.setFont(BOLD, SIZE)
    for x, column in zip(xs, COLUMNS, strict=True):
        pdf.drawString(x + 2, y - PAD - SIZE, column.header)
    y -= header_height
    for index, (height, cells) in enumerate(rows):
        if index % 2:
            pdf.setFillColor(HexColor("#f7f8fa"))
            pdf.rect(MARGIN, y - height, right - MARGIN, height, stroke=0, fill=1)
        pdf.setFillColor(INK)
        for x, column, lines in zip(xs, COLUMNS, cells, strict=True):
            pdf.setFont(column.font, SIZE)
            for number, line in enumerate(lines):
                pdf.drawString(x + 2, y - PAD - SIZE - number * LEADING, line)
        y -= height
        pdf.setStrokeColor(RULE)
        pdf.line(MARGIN, y, right, y)


def _footer(pdf: Canvas, facts: ReportFacts, number: int, total: int) -> None:
    pdf.setFillColor(MUTED)
    pdf.setFont(TEXT, 8)
    ends = facts.ends
    covered = f" · chain #{ends['first_seq']} to #{ends['last_seq']}" if ends["first_seq"] is not None else ""
    pdf.drawString(
        MARGIN, MARGIN, f"Keel audit report · exported {facts.exported_at[:19].replace('T', ' ')} UTC{covered}"
    )
    pdf.drawRightString(PAGE_WIDTH - MARGIN, MARGIN, f"Page {number} of {total}")
