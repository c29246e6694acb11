"""HTML: visible text by block, ``h1``…``h6`` as section trails, tables kept as tables.

Built on the standard library's tolerant `html.parser`, which never raises on bad markup.
Scripts, styles, navigation, footers, forms and the ``<head>`` are dropped (``<header>``
is kept: an article's often holds its ``h1``); the ``<title>`` names the text before the
first heading. Whitespace collapses as a browser would, with a line break after each
block element. A table becomes pipe-separated rows; a table inside a table cell is
flattened into that cell.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from knowledge.loaders.base import decode
from knowledge.text.chunking import Block, Section

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "nav", "footer", "head", "title", "form"}
)
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "main", "aside", "li", "ul", "ol", "dl", "dt",
        "dd", "blockquote", "pre", "figure", "figcaption", "address", "br", "hr", "caption",
    }
)  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACES = re.compile(r"[ \t\f\v\r\n\u3000\xa0]+")


class _Parser(HTMLParser):
    def __init__(self, title: str) -> None:
        super().__init__(convert_charrefs=True)
        self.title = title
        self.sections: list[Section] = []
        self.trail: list[tuple[int, str]] = []
        self.blocks: list[Block] = []
        self.lines: list[str] = []  # finished lines of the current text block
        self.line: list[str] = []  # the line being built
        self.skip_depth = 0
        self.in_title = False
        self.title_text: list[str] = []
        self.heading: tuple[int, list[str]] | None = None
        self.table_depth = 0
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    # -- text accumulation -------------------------------------------------------------

    def _end_line(self) -> None:
        line = _SPACES.sub(" ", "".join(self.line)).strip()
        if line:
            self.lines.append(line)
        self.line = []

    def _end_text(self) -> None:
        self._end_line()
        if self.lines:
            self.blocks.append(Block("\n".join(self.lines)))
        self.lines = []

    def _end_section(self) -> None:
        self._end_text()
        if self.blocks:
            # The <title>, parsed by now in any sane page, names text before a heading.
            page_title = _SPACES.sub(" ", "".join(self.title_text)).strip()
            trail = tuple(h for _, h in self.trail) or (page_title or self.title,)
            self.sections.append(Section(trail, tuple(self.blocks)))
        self.blocks = []

    def _end_heading(self) -> None:
        if self.heading is None:
            return
        level, parts = self.heading
        self.heading = None
        text = _SPACES.sub(" ", "".join(parts)).strip()
        if text:
            while self.trail and self.trail[-1][0] >= level:
                self.trail.pop()
            self.trail.append((level, text))

    def _end_table(self) -> None:
        self._end_cell()
        rows = [" | ".join(cells) for cells in self.rows if any(cells)]
        if rows:
            self.blocks.append(Block("\n".join(rows), table=True, header_rows=1))
        self.rows = []

    def _end_cell(self) -> None:
        if self.cell is not None and self.rows:
            self.rows[-1].append(_SPACES.sub(" ", "".join(self.cell)).strip())
        self.cell = None

    # -- parser callbacks --------------------------------------------------------------

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:  # noqa: ARG002  (HTMLParser's signature)
        if tag == "title":
            self.in_title = True
        if tag == "body":
            # <body> ends <head> even when </head> is missing, as it does in a browser.
            self.skip_depth = 0
        if tag in _SKIP:
            self.skip_depth += 1
        if self.skip_depth:
            return
        if tag in _BLOCK or tag in _HEADINGS or tag == "table":
            # Browsers would nest a paragraph in an unclosed heading; a trail holding a
            # whole page is worse, so the heading ends where the next block starts.
            self._end_heading()
        if tag == "table":
            self.table_depth += 1
            if self.table_depth == 1:
                self._end_text()
                self.rows = []
            return
        if self.table_depth > 1:
            if self.cell is not None:
                self.cell.append(" ")
            return
        if self.table_depth == 1:
            if tag == "tr":
                self._end_cell()
                self.rows.append([])
            elif tag in ("td", "th"):
                self._end_cell()
                if not self.rows:
                    self.rows.append([])
                self.cell = []
            elif self.cell is not None:
                self.cell.append(" ")
            return
        if tag in _HEADINGS:
            self._end_section()
            self.heading = (_HEADINGS[tag], [])
        elif tag in _BLOCK:
            self._end_line()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in _SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if self.skip_depth:
            return
        if tag == "table" and self.table_depth:
            self.table_depth -= 1
            if self.table_depth == 0:
                self._end_table()
            return
        if self.table_depth == 1 and tag in ("td", "th"):
            self._end_cell()
            return
        if tag in _HEADINGS:
            self._end_heading()
        elif tag in _BLOCK:
            self._end_line()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_text.append(data)
        if self.skip_depth:
            return
        if self.table_depth:
            if self.cell is not None:
                self.cell.append(data)
        elif self.heading is not None:
            self.heading[1].append(data)
        else:
            self.line.append(data)

    def finish(self) -> list[Section]:
        self.close()
        if self.table_depth:
            self.table_depth = 0
            self._end_table()
        self._end_heading()
        self._end_section()
        return self.sections


def parse_html(data: bytes, *, name: str, title: str) -> list[Section]:
    """Sections of an HTML file's bytes (UTF-8, UTF-16 with BOM or GBK)."""
    parser = _Parser(title)
    parser.feed(decode(data, name))
    return parser.finish()
