"""Extract a PDF's text in a child process under hard limits (run by
``pipelines.runs.documents.pdf_extract`` as ``python -I pdf_text.py``).

The PDF arrives on stdin; one JSON object leaves on stdout: ``{"text",
"pages"}`` or ``{"error"}``. Limits come as arguments: CPU seconds and memory
(set on this process by the kernel's rlimits, so a decompression bomb or an
endless content stream dies here, never in a worker), pages, the content
streams' decoded bytes summed over the pages (a stream shared by 999 pages is
counted 999 times: that is the work extraction would do), and characters of
text. The cheap limits are checked before any text is extracted.

It imports nothing from Keel or Django: only the standard library and pypdf.
"""

import json
import resource
import sys


def _refuse(reason: str) -> None:
    sys.stdout.write(json.dumps({"error": reason}))
    sys.exit(0)


def _content_bytes(page, sizes: dict) -> int:
    """The decoded length of a page's content streams; each stream is decoded
    once (``sizes``, by object number) however many pages draw it."""
    from pypdf.generic import IndirectObject

    contents = page.get("/Contents")
    if contents is None:
        return 0
    resolved = contents.get_object()
    references = list(resolved) if isinstance(resolved, list) else [contents]
    total = 0
    for reference in references:
        key = (reference.idnum, reference.generation) if isinstance(reference, IndirectObject) else id(reference)
        if key not in sizes:
            sizes[key] = len(reference.get_object().get_data())
        total += sizes[key]
    return total


def extract(data: bytes, *, max_pages: int, max_content_bytes: int, max_chars: int) -> dict:
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        _refuse("The PDF is encrypted; send it without a password.")
    # The page tree's own count, read from its root: one object, however many pages there are.
    declared = reader.trailer["/Root"].get_object()["/Pages"].get_object().get("/Count", 0)
    declared = int(declared) if isinstance(declared, int) else 0
    if declared > max_pages:
        _refuse(f"The PDF has {declared} pages; the limit is {max_pages}.")
    pages = reader.pages
    if len(pages) > max_pages:  # a page tree whose count understates it
        _refuse(f"The PDF has {len(pages)} pages; the limit is {max_pages}.")
    sizes: dict = {}
    content = sum(_content_bytes(page, sizes) for page in pages)
    if content > max_content_bytes:
        _refuse(
            f"The PDF's pages draw on {content} bytes of content streams (a shared stream counts once per page); "
            f"the limit is {max_content_bytes}."
        )
    parts, size = [], 0
    for page in pages:
        text = page.extract_text() or ""
        parts.append(text)
        size += len(text) + 1
        if size > max_chars:
            _refuse(f"The PDF's text is longer than {max_chars} characters.")
    text = "\n".join(parts).replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        _refuse(f"The PDF's text holds a lone surrogate (U+{code:04X}) at character {error.start}: not Unicode text.")
    if not text.strip():
        _refuse("No text could be extracted from the PDF (is it a scan without a text layer?).")
    return {"text": text, "pages": len(pages)}


def main() -> None:
    cpu_seconds, memory_mb, max_pages, max_content_bytes, max_chars = (int(arg) for arg in sys.argv[1:6])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    data = sys.stdin.buffer.read()
    try:
        result = extract(data, max_pages=max_pages, max_content_bytes=max_content_bytes, max_chars=max_chars)
    except MemoryError:
        _refuse(f"Reading the PDF needs more than {memory_mb} MB of memory.")
    except Exception as error:  # noqa: BLE001 - pypdf reports a broken file through many exception types
        sys.stderr.write(f"{type(error).__name__}: {error}\n")
        _refuse("The PDF cannot be read (it is damaged or not a PDF pypdf understands).")
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
