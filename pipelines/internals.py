"""The one place the pipelines app reaches into another library's internals, each with
the reason no public way serves; tests/pipelines/test_internals.py fails as soon as the
library changes what is used here.

- ``pdf_document_id_set`` (reportlab): a PDF report's /ID is Keel's, derived from the
  run, so the same run always gives the same bytes and replay can prove them unchanged.
  reportlab has no public way to set the /ID (its invariant mode derives one from its
  own digest), so the document's ``_ID`` is set as reportlab's ``PDFDocument.ID`` writes
  it (reportlab 5.1.0, pinned in requirements/base.txt).
"""

from reportlab.pdfbase.pdfdoc import DummyDoc, PDFText


def pdf_document_id_set(canvas, document_id: bytes) -> None:
    """Make ``document_id`` both halves of the PDF's /ID."""
    ids = PDFText(document_id, enc="raw").format(DummyDoc())
    canvas._doc._ID = b"\n[" + ids + ids + b"]\n% ReportLab generated PDF document -- digest (opensource)\n"
