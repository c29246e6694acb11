"""Markdown and plain text: sections on ATX headings, pipe tables kept as tables.

Sections split on ATX headings (``#`` … ``######``, outside fenced code); text before the
first heading belongs to a section named after the file. Plain text has no headings in
practice, so it is one section. A run of two or more lines starting with ``|`` whose
second line is a Markdown table separator (``|---|:--:|``) is a table block.
"""

from __future__ import annotations

import re

from knowledge.loaders.base import decode
from knowledge.text.chunking import Block, Section

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_TABLE_ROW = re.compile(r"^ {0,3}\|")
_TABLE_SEPARATOR = re.compile(r"^ {0,3}\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def split_sections(text: str, title: str) -> list[tuple[tuple[str, ...], str]]:
    """Split Markdown into (heading trail, body) pairs, in order; empty bodies are dropped.

    Text before the first heading gets the trail ``(title,)``.
    """
    sections: list[tuple[tuple[str, ...], str]] = []
    trail: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            sections.append((tuple(h for _, h in trail) or (title,), content))
        body.clear()

    for line in text.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        while trail and trail[-1][0] >= level:
            trail.pop()
        trail.append((level, match.group(2).strip()))
    flush()
    return sections


def split_blocks(body: str) -> list[Block]:
    """A section body as text blocks and Markdown pipe-table blocks, in order."""
    lines = body.split("\n")
    blocks: list[Block] = []
    text: list[str] = []
    i = 0
    while i < len(lines):
        end = i
        while end < len(lines) and _TABLE_ROW.match(lines[end]):
            end += 1
        if end - i >= 2 and _TABLE_SEPARATOR.match(lines[i + 1]):
            if "\n".join(text).strip():
                blocks.append(Block("\n".join(text).strip()))
            text = []
            # Header and separator lines repeat on every piece of a table too big for one.
            blocks.append(Block("\n".join(lines[i:end]), table=True, header_rows=2))
            i = end
        else:
            text.extend(lines[i : max(end, i + 1)])
            i = max(end, i + 1)
    if "\n".join(text).strip():
        blocks.append(Block("\n".join(text).strip()))
    return blocks


def parse_markdown(data: bytes, *, name: str, title: str) -> list[Section]:
    """Sections of a Markdown or plain-text file's bytes, in any supported encoding."""
    return [
        Section(headings=trail, blocks=tuple(split_blocks(body)))
        for trail, body in split_sections(decode(data, name), title=title)
    ]
