"""Pins what pipelines/internals.py uses of other libraries' internals: this fails when
the library changes them, before a report's bytes silently change."""

import io

import reportlab
from pypdf import PdfReader
from reportlab.pdfgen.canvas import Canvas

from pipelines.internals import pdf_document_id_set


def test_reportlab_is_the_version_the_document_id_was_written_for():
    assert reportlab.Version == "5.1.0"


def test_the_pdf_carries_the_document_id_it_is_given_and_the_same_bytes_each_time():
    def build() -> bytes:
        out = io.BytesIO()
        canvas = Canvas(out, invariant=1)
        canvas.drawString(72, 720, "Keel")
        pdf_document_id_set(canvas, b"0123456789abcdef")
        canvas.save()
        return out.getvalue()

    first = build()
    ids = PdfReader(io.BytesIO(first)).trailer["/ID"]
    assert [i.original_bytes for i in ids] == [b"0123456789abcdef", b"0123456789abcdef"]
    assert build() == first
