"""Documents as run input: read an upload (plain text or PDF), refuse what
cannot be read honestly, and keep the original bytes beside the run.

A refused document names its reason: empty, too large, not the type it claims
to be, or unreadable (a broken or encrypted PDF, or one with no text layer).
"""

import hashlib
import io
import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from pypdf import PdfReader
from pypdf.errors import PyPdfError

from audit.services import audit_record
from pipelines.models import Document, Run

logger = logging.getLogger(__name__)

MAX_PDF_PAGES = 1000


def _refuse(reason: str) -> ValidationError:
    return ValidationError({"document": reason})


def document_read(*, data: bytes, content_type: str, filename: str = "") -> dict:
    """The document as it enters the run input: ``{sha256, size, content_type,
    filename, pages, text}``. Raises ValidationError naming ``document``."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not data:
        raise _refuse("The document is empty.")
    limit = settings.KEEL_DOCUMENT_MAX_BYTES
    if len(data) > limit:
        raise _refuse(f"The document is {len(data)} bytes; the limit is {limit}.")
    looks_like_pdf = data.lstrip()[:5] == b"%PDF-"
    pages = None
    if content_type == Document.ContentType.PDF:
        if not looks_like_pdf:
            raise _refuse("The document is labelled application/pdf but is not a PDF.")
        text, pages = _pdf_text(data)
    elif content_type == Document.ContentType.TEXT:
        if looks_like_pdf:
            raise _refuse("The document is labelled text/plain but is a PDF; send it as application/pdf.")
        text = _plain_text(data)
    else:
        raise _refuse(f"Documents must be text/plain or application/pdf, not {content_type or 'unlabelled'}.")
    if not text.strip():
        raise _refuse("The document holds no text.")
    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": content_type,
        "filename": (filename or "")[:255],
        "pages": pages,
        "text": text,
    }


def _plain_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse(f"The document is labelled text/plain but is not UTF-8 text (byte {exc.start}).") from None
    if "\x00" in text:
        raise _refuse("The document is labelled text/plain but holds binary data (NUL bytes).")
    return text


def _pdf_text(data: bytes) -> tuple[str, int]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise _refuse("The PDF is encrypted; send it without a password.")
        if len(reader.pages) > MAX_PDF_PAGES:
            raise _refuse(f"The PDF has {len(reader.pages)} pages; the limit is {MAX_PDF_PAGES}.")
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except ValidationError:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        # pypdf reports a broken file through many exception types; the cause goes to the log, the client gets the gist.
        logger.info("Unreadable PDF upload: %s: %s", type(exc).__name__, exc)
        raise _refuse("The PDF cannot be read (it is damaged or not a PDF pypdf understands).") from None
    if not text.strip():
        raise _refuse("No text could be extracted from the PDF (is it a scan without a text layer?).")
    return text.replace("\x00", ""), len(reader.pages)


def document_store(*, run: Run, data: bytes, document: dict, source: str, actor) -> Document:
    """Keep the original bytes of a new run's document; call inside the run's transaction."""
    stored = Document.objects.create(
        run=run,
        pipeline=run.pipeline,
        content=data,
        sha256=document["sha256"],
        size=document["size"],
        content_type=document["content_type"],
        filename=document["filename"],
        pages=document["pages"],
        source=source,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        action="run.document_stored",
        object_type="run",
        object_id=run.pk,
        payload={k: document[k] for k in ("sha256", "size", "content_type", "filename", "pages")} | {"source": source},
        workspace_id=run.pipeline.workspace_id,
        pipeline_id=run.pipeline_id,
        actor=actor,
    )
    return stored
