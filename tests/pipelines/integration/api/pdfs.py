"""Small, valid PDFs built by hand for the upload tests (pypdf reads but does not write text)."""

HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _stream(data: bytes) -> bytes:
    return b"<< /Length " + str(len(data)).encode() + b" >>\nstream\n" + data + b"\nendstream"


def _text_ops(*lines: str) -> bytes:
    text_ops = " ".join(f"({line}) Tj 0 -16 Td" for line in lines)
    return f"BT /F1 12 Tf 72 720 Td {text_ops} ET".encode()


def _pdf(objects: list[bytes]) -> bytes:
    """Objects 1.. in order (1 the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _pages(count: int, *, contents: int, font: int, first: int) -> tuple[bytes, list[bytes]]:
    """The page tree (object 2) and ``count`` pages numbered from ``first``,
    every one drawing the content stream ``contents`` with the font ``font``."""
    kids = " ".join(f"{first + i} 0 R" for i in range(count))
    tree = f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode()
    page = (
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {contents} 0 R "
        f"/Resources << /Font << /F1 {font} 0 R >> >> >>"
    ).encode()
    return tree, [page] * count


def pdf_with_text(*lines: str, font: bytes = HELVETICA, extra: tuple[bytes, ...] = ()) -> bytes:
    """A one-page PDF whose text layer holds ``lines`` (ASCII), with a correct xref table."""
    tree, pages = _pages(1, contents=4, font=5, first=3)
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R >>", tree, *pages, _stream(_text_ops(*lines)), font, *extra])


def pdf_with_lone_surrogate() -> bytes:
    """A PDF whose font maps the letter A to U+D83D alone (half of a surrogate
    pair) in its ToUnicode map: pypdf extracts a string that is not Unicode."""
    cmap = (
        b"/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n/CMapName /Lone def\n"
        b"1 begincodespacerange\n<00> <FF>\nendcodespacerange\n1 beginbfchar\n<41> <D83D>\nendbfchar\n"
        b"endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend"
    )
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>"
    return pdf_with_text("AAA", font=font, extra=(_stream(cmap),))


def pdf_bomb(pages: int = 999, content_bytes: int = 150_000) -> bytes:
    """``pages`` pages that all draw one content stream of about
    ``content_bytes``: a small file whose text extraction parses that stream
    once per page."""
    line = b"BT /F1 12 Tf 72 720 Td (All work and no play makes a dull PDF.) Tj ET\n"
    content = line * (content_bytes // len(line))
    tree, page_objects = _pages(pages, contents=3, font=4, first=5)
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R >>", tree, _stream(content), HELVETICA, *page_objects])


def pdf_with_pages(pages: int) -> bytes:
    """``pages`` one-line pages sharing a small content stream."""
    tree, page_objects = _pages(pages, contents=3, font=4, first=5)
    stream = _stream(_text_ops("A page among many"))
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R >>", tree, stream, HELVETICA, *page_objects])
