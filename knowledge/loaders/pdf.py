"""PDF: the text layer of every page, through pypdf; no OCR.

A PDF encrypted with an empty user password (only an owner password, which restricts
printing or copying) opens without one, as every viewer does; one that needs a password
to open is refused. A PDF whose pages hold no text (a scan) is refused too, rather than
indexed as nothing.
"""

from __future__ import annotations

import io
import logging

from pypdf import PdfReader

from knowledge.loaders.base import LoadError
from knowledge.text.chunking import Block, Section

log = logging.getLogger(__name__)


class NoTextLayerError(LoadError):
    """A PDF whose pages hold no text (a scan): a picture of each page may still be read."""


def parse_pdf(data: bytes, *, name: str, title: str, max_pages: int | None = None) -> list[Section]:
    """One section named `title` holding the text of every page (the first `max_pages`
    when given), pages separated by a line.

    Raises:
        LoadError: corrupt or encrypted; NoTextLayerError without a text layer.
    """
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(name, "encrypted PDF (needs a password to open)")
        count = len(reader.pages)
        if max_pages is not None:
            count = min(count, max_pages)
        pages = [reader.pages[i].extract_text() or "" for i in range(count)]
    except LoadError:
        raise
    except Exception as exc:
        # pypdf raises many types (PdfReadError, ValueError, KeyError, …) on damaged
        # files; any of them means this document cannot be read, and no other.
        raise LoadError(name, f"corrupt PDF: {type(exc).__name__}: {exc}"[:200]) from exc
    text = "\n".join(page.strip() for page in pages if page.strip())
    if not text:
        raise NoTextLayerError(name, f"no text layer (scanned?) in {len(pages)} page(s)")
    log.debug("%s: %d pages, %d characters", name, len(pages), len(text))
    return [Section(headings=(title,), blocks=(Block(text),))]
