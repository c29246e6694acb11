"""Reply text shaping: split by UTF-8 byte limits, and flatten Markdown for plain-text platforms."""

from __future__ import annotations

import re

# Cut points, best first; each pattern's match end is where a part may end. A cut counts
# only if it keeps at least a third of the room, so a part is never a stub before a long run.
_BOUNDARIES = (
    re.compile(r"\n[^\S\n]*\n\s*"),  # paragraph break
    re.compile(r"\n"),  # line break
    # Chinese sentence ends need no space after them; closing quotes stay with the sentence.
    re.compile(r"[。！？；…]+[”’」』）》\"')\]]*"),
    re.compile(r"[.!?;]+[\"')\]]*(?=\s)"),
    re.compile(r"[，、：]|[,:](?=\s)"),  # clause
    re.compile(r"\s+"),  # word
)
_MIN_FILL = 3  # a cut must keep at least 1/_MIN_FILL of the window
_MAX_CHAR_BYTES = 4  # the longest UTF-8 encoding of one character


def _cut(window: str, lookahead: str) -> int:
    """Return where to end a part that must fit in ``window`` (the char after is lookahead)."""
    probe = window + lookahead
    floor = max(1, len(window) // _MIN_FILL)
    for pattern in _BOUNDARIES:
        best = 0
        for match in pattern.finditer(probe):
            end = match.end()
            # A whitespace run may end past the window: cutting before it is just as good.
            if end > len(window) and match.start() <= len(window) and match.group().isspace():
                end = match.start()
            if floor <= end <= len(window):
                best = end
        if best:
            return best
    # No boundary: cut at a character (never inside one; the window holds whole characters).
    return len(window)


def split_text(text: str, max_bytes: int) -> list[str]:
    """Split text into ordered, non-empty parts of at most max_bytes UTF-8 bytes each.

    Parts end at paragraph, line, sentence, clause or word boundaries where one fits, else at
    a character boundary; whitespace at the edges of parts is dropped, nothing else is.
    """
    if max_bytes < _MAX_CHAR_BYTES:
        raise ValueError(f"max_bytes must be at least {_MAX_CHAR_BYTES} to fit any character")
    parts: list[str] = []
    rest = text.strip()
    while rest:
        encoded = rest.encode("utf-8")
        if len(encoded) <= max_bytes:
            parts.append(rest)
            break
        # The longest prefix of whole characters within the byte limit.
        window = encoded[:max_bytes].decode("utf-8", "ignore")
        end = _cut(window, rest[len(window) : len(window) + 1])
        parts.append(rest[:end].rstrip())
        rest = rest[end:].lstrip()
    return parts


_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n?", re.MULTILINE)
_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE)
_LINK = re.compile(r"!?\[([^\]\n]*)\]\(([^)\s]+)(?:[ \t]+\"[^\"\n]*\")?\)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")


def _link(match: re.Match[str]) -> str:
    label, url = match.group(1), match.group(2)
    # "[https://x](https://x)" would read twice; print the address once.
    return url if not label or label == url else f"{label} ({url})"


def _flatten(text: str) -> str:
    text = _HEADING.sub(r"\1", text)
    text = _LINK.sub(_link, text)
    text = _BOLD.sub(r"\2", text)
    return _INLINE_CODE.sub(r"\1", text)


def markdown_to_plain(text: str) -> str:
    """Strip the Markdown a model commonly writes (headings, bold, links, code) to plain text."""
    # Split on fence lines: odd pieces are code, kept verbatim (a "**" in code is code).
    pieces = _FENCE.split(text)
    out: list[str] = []
    in_code = False
    index = 0
    while index < len(pieces):
        piece = pieces[index]
        out.append(piece if in_code else _flatten(piece))
        if index + 1 < len(pieces):
            index += 2  # skip the captured fence marker
            in_code = not in_code
        else:
            index += 1
    return "".join(out).strip()
