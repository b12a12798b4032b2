"""Documents as run input: read an upload (plain text or PDF), refuse what
cannot be read honestly, and keep the original bytes beside the run.

A refused document names its reason: empty, too large, not the type it claims
to be, or unreadable (a broken or encrypted PDF, or one with no text layer).

A text document is read in the request. A PDF is not: a small file can hold
minutes of parsing (999 pages sharing one content stream, a decompression
bomb), so the request only checks its size and signature, and its text is
extracted on the worker as the first thing the run does, in a child process
under CPU, memory, page and content limits (``pipelines/runs/pdf_text.py``). A
PDF that cannot be read fails its run with the reason.
"""

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_record
from pipelines.models import Document, Run

logger = logging.getLogger(__name__)

EXTRACTOR = Path(__file__).with_name("pdf_text.py")


class DocumentRefused(Exception):
    """A run's uploaded document cannot be read on the worker: the run fails with this reason."""


def _refuse(reason: str) -> ValidationError:
    return ValidationError({"document": reason})


def document_read(*, data: bytes, content_type: str, filename: str = "") -> dict:
    """The document as it enters the run input: ``{sha256, size, content_type,
    filename, pages, text}``; for a PDF without ``text`` (extracted on the
    worker) and with ``pages`` null. Raises ValidationError naming ``document``."""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if not data:
        raise _refuse("The document is empty.")
    limit = settings.KEEL_DOCUMENT_MAX_BYTES
    if len(data) > limit:
        raise _refuse(f"The document is {len(data)} bytes; the limit is {limit}.")
    looks_like_pdf = data.lstrip()[:5] == b"%PDF-"
    document = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content_type": content_type,
        "filename": _filename(filename),
        "pages": None,
    }
    if content_type == Document.ContentType.PDF:
        if not looks_like_pdf:
            raise _refuse("The document is labelled application/pdf but is not a PDF.")
        return document
    if content_type != Document.ContentType.TEXT:
        raise _refuse(f"Documents must be text/plain or application/pdf, not {content_type or 'unlabelled'}.")
    if looks_like_pdf:
        raise _refuse("The document is labelled text/plain but is a PDF; send it as application/pdf.")
    text = _plain_text(data)
    if not text.strip():
        raise _refuse("The document holds no text.")
    return {**document, "text": text}


def _filename(name: str) -> str:
    # A client's file name is shown and stored: keep it to printable, storable characters.
    name = (name or "")[:255]
    return "".join(c for c in name if c.isprintable() and not 0xD800 <= ord(c) <= 0xDFFF)


def _plain_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8-sig")  # strict: a surrogate's encoding is not UTF-8
    except UnicodeDecodeError as exc:
        raise _refuse(f"The document is labelled text/plain but is not UTF-8 text (byte {exc.start}).") from None
    if "\x00" in text:
        raise _refuse("The document is labelled text/plain but holds binary data (NUL bytes).")
    return text


def run_first_document(run: Run, *, extract: bool = True) -> dict:
    """The run's input as its first step receives it: an uploaded PDF's entry
    with its text and page count, extracted now if they are not yet (with
    ``extract``). Raises DocumentRefused when the PDF cannot be read."""
    entry = run.input.get("document") if isinstance(run.input, dict) else None
    if not (isinstance(entry, dict) and entry.get("content_type") == Document.ContentType.PDF and "text" not in entry):
        return dict(run.input)
    stored = Document.objects.filter(run=run).first()
    if stored is None or stored.sha256 != entry.get("sha256"):
        raise DocumentRefused("document: the run's input names a PDF, but no such document is stored with the run.")
    if stored.text is None:
        if not extract:
            raise DocumentRefused("document: the PDF's text was never extracted.")
        text, pages = pdf_extract(bytes(stored.content))
        stored = document_text_record(document=stored, text=text, pages=pages)
    return {**run.input, "document": {**entry, "text": stored.text, "pages": stored.pages}}


def pdf_extract(data: bytes) -> tuple[str, int]:
    """(text, pages) of a PDF, read in a child process under the limits of
    the KEEL_PDF_* settings; raises DocumentRefused with the reason."""
    cpu = settings.KEEL_PDF_EXTRACT_CPU_SECONDS
    limits = [cpu, settings.KEEL_PDF_EXTRACT_MEMORY_MB, settings.KEEL_PDF_MAX_PAGES,
              settings.KEEL_PDF_MAX_CONTENT_BYTES, settings.KEEL_DOCUMENT_MAX_BYTES]  # fmt: skip
    try:
        # -I: the child sees neither the environment's PYTHON* variables nor the working directory.
        done = subprocess.run([sys.executable, "-I", str(EXTRACTOR), *map(str, limits)], input=data,
                              capture_output=True, timeout=cpu * 2 + 10, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise DocumentRefused(f"document: the PDF's text could not be extracted in {cpu * 2 + 10} s.") from None
    try:
        result = json.loads(done.stdout)
    except ValueError:
        logger.warning("PDF extraction ended with %s: %s", done.returncode, done.stderr[-500:])
        if done.returncode < 0:  # killed: SIGXCPU at the CPU limit, or SIGKILL past it
            raise DocumentRefused(f"document: extracting the PDF's text took more than {cpu} s of CPU.") from None
        raise DocumentRefused("document: the PDF cannot be read (its extraction stopped).") from None
    if "error" in result:
        raise DocumentRefused(f"document: {result['error']}")
    return result["text"], result["pages"]


@transaction.atomic
def document_text_record(*, document: Document, text: str, pages: int) -> Document:
    """Keep the text extracted from a stored PDF, once (a second worker that
    extracted it too records nothing), with its ``run.document_read`` event."""
    if Document.objects.filter(pk=document.pk, text__isnull=True).update(text=text, pages=pages):
        audit_record(
            action="run.document_read",
            object_type="run",
            object_id=document.run_id,
            payload={
                "sha256": document.sha256,
                "pages": pages,
                "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "characters": len(text),
            },  # fmt: skip
            workspace_id=document.pipeline.workspace_id,
            pipeline_id=document.pipeline_id,
            actor=None,
        )
    return Document.objects.get(pk=document.pk)


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
