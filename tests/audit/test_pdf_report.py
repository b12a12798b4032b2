"""The PDF report an agency hands to its client, read back as its text and
where each piece of text sits on the page (pypdf's visitor_text): a cover
with the filter in words, the counts and the live chain's hashes; a table
whose cells start under their headers and stay on the page; a one-line
summary of each event's payload; a page number on every page."""

import io
from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from pypdf import PdfReader
from reportlab.pdfbase.pdfmetrics import stringWidth

from audit.models import AuditEvent
from audit.report import COLUMNS, MARGIN, PAGE_WIDTH
from audit.services import audit_record

HEADERS = [column.header for column in COLUMNS]


def texts_of(page) -> list[tuple[str, float, float, str, float]]:
    """Every piece of text on a page: (text, x, y, font, size), in page coordinates."""
    found = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            found.append((text.strip("\n"), x, y, font["/BaseFont"].lstrip("/") if font else "", size))

    page.extract_text(visitor_text=visit)
    return found


@pytest.fixture
def report_events(acme, acme_config, globex):
    """Seventy events in acme (enough for several pages), one with a long
    payload, one redacted; one event in globex that the auditor cannot see."""
    pipeline = acme_config["pipeline"]
    events = []
    for number in range(70):
        events.append(
            audit_record(
                action="run.started" if number % 2 else "release.cut",
                object_type="run",
                object_id=number + 1,
                payload={"release": number, "input_sha256": "f" * 64, "reason": f"ticket {number}"},
                workspace_id=acme.pk,
                pipeline_id=pipeline.pk,
            )
        )
    events.append(
        audit_record(
            action="note.long",
            object_type="note",
            object_id=1,
            payload={"reason": "a long story " * 40, "items": list(range(30)), "nested": {"a": {"b": 1}}},
            workspace_id=acme.pk,
            pipeline_id=pipeline.pk,
        )
    )
    audit_record(action="note.globex", object_type="note", object_id=2, workspace_id=globex.pk)
    return events


def export_pdf(client, user, **query) -> bytes:
    client.force_login(user)
    response = client.get(reverse("audit-export"), {**query, "format": "pdf"})
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/pdf"
    return b"".join(response.streaming_content)


def save_for_review(data: bytes, name: str) -> None:
    """Kept under var/screenshots/ for a person to look at (var/ is not committed)."""
    target = Path(settings.BASE_DIR) / "var" / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    (target / name).write_bytes(data)


def test_the_cover_states_the_filter_in_words_the_counts_and_the_chain_hashes(
    client, auditor, acme, acme_config, report_events
):
    since = (report_events[0].ts - timedelta(seconds=1)).replace(microsecond=0)
    data = export_pdf(client, auditor, workspace=acme.pk, since=since.strftime("%Y-%m-%dT%H:%M:%S"))
    save_for_review(data, "audit-report.pdf")
    reader = PdfReader(io.BytesIO(data))
    cover = " ".join(text for text, *_ in texts_of(reader.pages[0]))

    assert "Audit report" in cover
    assert f"In the workspace Acme (#{acme.pk})" in cover
    assert f"Events from {timezone.localtime(since):%Y-%m-%d %H:%M:%S}" in cover
    assert "{" not in cover  # no filter as raw JSON
    assert "As seen by the exporter, who may read the workspace Acme" in cover
    exported = AuditEvent.objects.get(action="audit.exported")  # recorded after the report was made
    included = AuditEvent.objects.filter(workspace_id=acme.pk, ts__gte=since, seq__lt=exported.seq).order_by("seq")
    first, last = included.first(), included.last()
    outside = AuditEvent.objects.filter(seq__range=(first.seq, last.seq)).exclude(workspace_id=acme.pk).count()
    assert f"Events in this report {included.count()}" in cover
    assert f"Between them, outside what the exporter may see {outside}" in cover and outside > 0
    assert first.prev_hash in cover and last.hash in cover
    assert f"#{first.seq} to #{last.seq}" in cover
    assert "python -m audit.verify FILE.jsonl" in cover


def test_the_table_lines_up_under_its_headers_fits_the_page_and_numbers_every_page(
    client, auditor, acme, report_events
):
    data = export_pdf(client, auditor, workspace=acme.pk)
    reader = PdfReader(io.BytesIO(data))
    pages = len(reader.pages)
    assert pages >= 3  # a cover and more than one page of rows

    seen_seqs = set()
    for number, page in enumerate(reader.pages, start=1):
        texts = texts_of(page)
        assert any(text == f"Page {number} of {pages}" for text, *_ in texts), number
        width = float(page.mediabox.width)
        assert width == pytest.approx(PAGE_WIDTH)
        for text, x, _y, font, size in texts:  # nothing runs off the page
            assert x >= MARGIN - 0.5 and x + stringWidth(text, font, size) <= width - MARGIN + 0.5, text
        if number == 1:
            continue

        header = {text: (x, y) for text, x, y, *_ in texts if text in HEADERS}
        assert sorted(header) == sorted(HEADERS), header.keys()  # every column has its header, the hash too
        header_y = header["Seq"][1]
        column_starts = sorted(x for x, _ in header.values())
        assert column_starts[-1] > width * 0.8  # the columns spread across the landscape page

        rows = defaultdict(list)  # a row's first line, by its y
        for text, x, y, *_ in texts:
            if y < header_y - 1 and text != f"Page {number} of {pages}" and not text.startswith("Keel audit report"):
                rows[round(y, 1)].append((x, text))
                # Every cell starts exactly where its column's header starts.
                assert any(abs(x - start) < 0.01 for start in column_starts), (text, x)
        for cells in rows.values():
            by_column = dict(cells)
            seq_text = by_column.get(header["Seq"][0])
            if not (seq_text and seq_text.startswith("#")):
                continue  # a cell's second line
            event = AuditEvent.objects.get(seq=int(seq_text[1:]))
            seen_seqs.add(event.seq)
            assert by_column[header["Event hash"][0]] == event.hash[:12]
            assert by_column[header["Action"][0]] == event.action
            details = by_column[header["Details"][0]]
            if event.action.startswith("run.") or event.action == "release.cut":
                assert details.startswith(f"reason: ticket {event.payload_data['release']} · release: ")
            elif event.action == "note.long":
                assert details.startswith("reason: a long story") and "…" in details
        row_ys = sorted(rows, reverse=True)
        assert all(upper - lower >= 8.9 for upper, lower in zip(row_ys, row_ys[1:], strict=False))  # no overlap

    assert {event.seq for event in report_events} <= seen_seqs  # every event
    assert not AuditEvent.objects.filter(seq__in=seen_seqs).exclude(workspace_id=acme.pk).exists()  # none of globex


def test_the_report_names_pipelines_and_summarises_payloads_of_the_events_it_shows(
    client, auditor, acme, acme_config, report_events
):
    data = export_pdf(client, auditor, pipeline=acme_config["pipeline"].pk, action="run")
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert f"Of the pipeline {acme_config['pipeline'].name} (#{acme_config['pipeline'].pk})" in text
    assert "Action run and every run.* action" in text
    assert f"Acme › {acme_config['pipeline'].name}" in text
    assert "release.cut" not in text.split("Page 1 of")[1]  # the table holds only run events
    assert "input sha256: ffffffffffff…" in text


def test_an_empty_selection_gives_a_cover_that_says_so(client, auditor, acme, report_events):
    data = export_pdf(client, auditor, workspace=acme.pk, actor="root", action="note")
    reader = PdfReader(io.BytesIO(data))
    text = reader.pages[0].extract_text()
    assert len(reader.pages) == 1 and "Page 1 of 1" in text
    assert "Done by root" in text and "Action note and every note.* action" in text
    assert "No event matches this filter" in text
