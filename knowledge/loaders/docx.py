"""DOCX: paragraphs and tables in document order, headings as section trails.

A paragraph whose style is ``Heading N`` (Word stores built-in style names in English
whatever the UI language, so Chinese Word's 标题 1 reads as ``Heading 1`` too) starts a
section at level N; ``Title`` is level 0. Tables become pipe-separated rows, one per line,
a merged cell once, with the first row as the header.
"""

from __future__ import annotations

import io
import re

import docx
from docx.table import Table
from docx.text.paragraph import Paragraph

from knowledge.loaders.base import LoadError
from knowledge.text.chunking import Block, Section

_HEADING_STYLE = re.compile(r"^(?:heading|标题)\s*(\d)$", re.IGNORECASE)


def _heading_level(paragraph: Paragraph) -> int | None:
    style = paragraph.style
    name = (style.name or "") if style is not None else ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name.strip())
    return int(match.group(1)) if match else None


def render_table(table: Table) -> str:
    """Rows as ``cell | cell``, one per line; cells spanning columns appear once."""
    rows = []
    for row in table.rows:
        cells = []
        previous = None
        for cell in row.cells:
            # python-docx repeats a merged cell for each grid column it spans.
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            cells.append(" ".join(cell.text.split()))
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def parse_docx(data: bytes, *, name: str, title: str) -> list[Section]:
    """Sections of a DOCX file's bytes.

    Raises:
        LoadError: not a readable DOCX (corrupt, or an old binary .doc renamed).
    """
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        # python-docx surfaces zipfile, lxml and KeyError failures for damaged packages.
        raise LoadError(name, f"corrupt DOCX: {type(exc).__name__}: {exc}"[:200]) from exc
    sections: list[Section] = []
    trail: list[tuple[int, str]] = []
    blocks: list[Block] = []
    paragraphs: list[str] = []

    def flush_paragraphs() -> None:
        text = "\n".join(paragraphs).strip()
        if text:
            blocks.append(Block(text))
        paragraphs.clear()

    def flush_section() -> None:
        flush_paragraphs()
        if blocks:
            sections.append(Section(tuple(h for _, h in trail) or (title,), tuple(blocks)))
        blocks.clear()

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            flush_paragraphs()
            table = render_table(item)
            if table:
                blocks.append(Block(table, table=True, header_rows=1))
            continue
        text = item.text.strip()
        level = _heading_level(item)
        if level is None:
            paragraphs.append(text)
            continue
        if not text:
            continue
        flush_section()
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, text))
    flush_section()
    return sections
