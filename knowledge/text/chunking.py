"""Cut parsed documents into chunks that keep their structure.

A loader turns a file into `Section`s: a heading trail and the blocks under it, text or
table. `chunk_sections` turns those into `Chunk`s:

- Text is cut between sentences (after 。！？；!?; or a line break) into chunks of at most
  `max_chars` characters; a sentence longer than that is cut at a comma or space near the
  limit, else hard. With `overlap_chars`, a chunk starts with the last whole sentences of
  the one before (at most `overlap_chars` characters of them), never with half a sentence.
- A table that fits in `max_chars` is one chunk of its own. A larger one is cut between
  rows, each piece starting with the table's header row(s) again.
- Every chunk keeps its section's heading trail (`Chunk.headings`), the context that
  `Chunk.context_text` puts in front of the text for indexing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

DEFAULT_MAX_CHARS = 300
DEFAULT_OVERLAP_CHARS = 0

# A sentence ends after Chinese or ASCII terminal punctuation (with any closing quotes or
# brackets), or at a line break; the separator stays with the sentence before it.
_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）)\]\"']*|\n+|$)")
# Where an over-long sentence may be cut, best first.
_SOFT_BREAKS = "，、,：: "


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of a document: at most `max_chars` characters from one section."""

    text: str
    source: str
    section: str
    headings: tuple[str, ...] = ()

    @property
    def context_text(self) -> str:
        """The heading trail, one per line, then the text: what an index should see."""
        return "\n".join((*self.headings, self.text))


@dataclass(frozen=True, slots=True)
class Block:
    """A run of text, or a table (one row per line) whose first `header_rows` lines repeat."""

    text: str
    table: bool = False
    header_rows: int = 0


@dataclass(frozen=True, slots=True)
class Section:
    """The blocks under one heading trail, in document order."""

    headings: tuple[str, ...]
    blocks: tuple[Block, ...]


def split_sentences(text: str) -> list[str]:
    """Split after 。！？；!?; (keeping closing quotes) and at line breaks; lossless."""
    return [s for s in _SENTENCE.findall(text) if s]


def _hard_split(sentence: str, max_chars: int) -> Iterator[str]:
    """Cut a sentence longer than `max_chars`, preferring a comma or space near the end."""
    while len(sentence) > max_chars:
        window = sentence[:max_chars]
        cut = max(window.rfind(ch) for ch in _SOFT_BREAKS)
        cut = cut + 1 if cut >= max_chars // 2 else max_chars
        yield sentence[:cut]
        sentence = sentence[cut:]
    if sentence:
        yield sentence


def _check(max_chars: int, overlap_chars: int) -> None:
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    if not 0 <= overlap_chars < max_chars:
        raise ValueError("overlap_chars must be at least 0 and less than max_chars")


def chunk_text(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, overlap_chars: int = DEFAULT_OVERLAP_CHARS
) -> list[str]:
    """Pack whole sentences into chunks of at most `max_chars` characters (stripped).

    Each chunk after the first repeats the previous chunk's last whole sentences, up to
    `overlap_chars` characters of them (and only as many as leave room for a new one).
    """
    _check(max_chars, overlap_chars)
    chunks: list[list[str]] = []
    current: list[str] = []
    size = 0
    for sentence in split_sentences(text):
        for piece in _hard_split(sentence, max_chars):
            if current and size + len(piece) > max_chars:
                chunks.append(current)
                current = _overlap(current, overlap_chars, max_chars - len(piece))
                size = sum(len(p) for p in current)
            current.append(piece)
            size += len(piece)
    chunks.append(current)
    texts = ("".join(c).strip() for c in chunks)
    return [t for t in texts if t]


def _overlap(previous: list[str], overlap_chars: int, room: int) -> list[str]:
    """The longest run of `previous`'s last pieces within `overlap_chars` and `room`."""
    limit = min(overlap_chars, room)
    carried: list[str] = []
    size = 0
    for piece in reversed(previous):
        if size + len(piece) > limit:
            break
        carried.insert(0, piece)
        size += len(piece)
    # Line breaks alone are not context worth repeating.
    return carried if "".join(carried).strip() else []


def chunk_table(table: str, max_chars: int = DEFAULT_MAX_CHARS, header_rows: int = 1) -> list[str]:
    """A table whole if it fits, else row groups that each start with the header rows."""
    _check(max_chars, 0)
    table = table.strip("\n")
    if len(table) <= max_chars:
        return [table] if table.strip() else []
    rows = table.split("\n")
    header = rows[:header_rows]
    header_size = sum(len(r) + 1 for r in header)
    if header_size > max_chars // 2:
        # A header that big leaves no room for rows: cut the table like text instead.
        header, header_size = [], 0
    body = rows[len(header) :]
    pieces: list[str] = []
    group: list[str] = []
    size = header_size
    for row in body:
        if group and size + len(row) + 1 > max_chars:
            pieces.append("\n".join(header + group))
            group, size = [], header_size
        if header_size + len(row) > max_chars:
            # One row longer than a chunk: cut it like text, without the header.
            pieces.extend(chunk_text(row, max_chars))
            continue
        group.append(row)
        size += len(row) + 1
    if group:
        pieces.append("\n".join(header + group))
    return pieces


def chunk_sections(
    sections: Iterable[Section],
    *,
    source: str,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[Chunk]:
    """Chunks of every section, in order, each carrying its section's heading trail."""
    _check(max_chars, overlap_chars)
    chunks: list[Chunk] = []
    for section in sections:
        section_name = section.headings[-1] if section.headings else source
        for block in section.blocks:
            if block.table:
                texts = chunk_table(block.text, max_chars, block.header_rows)
            else:
                texts = chunk_text(block.text, max_chars, overlap_chars)
            chunks.extend(
                Chunk(text=t, source=source, section=section_name, headings=section.headings)
                for t in texts
            )
    return chunks
