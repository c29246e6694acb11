"""Safe parsing and building of the flat XML that WeChat-family platforms exchange.

WeChat XML is one ``<xml>`` root with one level of children, text wrapped in CDATA and
numbers bare: ``<xml><ToUserName><![CDATA[u1]]></ToUserName><CreateTime>1</CreateTime></xml>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NoReturn
from xml.parsers import expat

from bot.errors import PayloadError

# The platforms' XML callbacks are a few KB (an encrypted 2,048-character text message is
# under 4 KB). The parse runs before any signature check, with a Python callback per
# element: 64 KB keeps the worst body to a few milliseconds, where the web app's 1 MB limit
# allowed ~200 ms.
MAX_BODY_BYTES = 64 << 10
# No WeChat payload has a DTD, so any DTD is hostile (XXE, billion laughs:
# docs/protocols/pitfalls.md#pitfall-5-xxe-and-entity-expansion).
_DTD_MARKERS = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_CDATA_OPEN, _CDATA_CLOSE = b"<![CDATA[", b"]]>"
_TAG = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters XML 1.0 cannot carry at all, even inside CDATA.
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Refused(Exception):
    """A DTD, an entity declaration or an external entity: never parsed, whatever the bytes."""


def _refuse(*_args: object) -> NoReturn:
    raise _Refused


def parse_xml(body: bytes) -> dict[str, str]:
    """Parse a flat ``<xml>`` document into {child tag: text}; hostile or malformed is PayloadError.

    Nested elements (rare, e.g. MP ``<Video>``) map to their own direct text, usually "".
    """
    if len(body) > MAX_BODY_BYTES:
        raise PayloadError("XML body too large")
    # Refuse before parsing, so no parser feature is ever reached by a DTD.
    if _may_hide_markup(body) and _DTD_MARKERS.search(outside_cdata(body)):
        raise PayloadError("XML with a DTD or entity declaration")
    reader = _FlatReader()
    parser = expat.ParserCreate()
    # The parser's own refusals, whatever encoding hides a DTD from the check above: what
    # defusedxml sets (forbid_dtd, forbid_entities, forbid_external), on expat directly,
    # which reads a small envelope several times faster than defusedxml's Python parser.
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.UnparsedEntityDeclHandler = _refuse
    parser.ExternalEntityRefHandler = _refuse
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.buffer_text = True
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = reader.text
    try:
        parser.Parse(body, True)
    except _Refused as exc:
        raise PayloadError("XML with a DTD or entity declaration") from exc
    except expat.ExpatError as exc:
        raise PayloadError(f"malformed XML ({expat.ErrorString(exc.code)})") from exc
    if reader.problem:
        raise PayloadError(reader.problem)
    return reader.fields


class _FlatReader:
    """Collects the direct children of the root and their direct text."""

    __slots__ = ("current", "depth", "fields", "parts", "problem")

    def __init__(self) -> None:
        self.depth = 0
        self.fields: dict[str, str] = {}
        self.current = ""
        self.parts: list[str] = []
        self.problem = ""

    def start(self, name: str, _attrs: object) -> None:
        self.depth += 1
        if self.depth == 1 and name != "xml":
            self.problem = self.problem or "XML root is not <xml>"
        elif self.depth == 2:
            # A repeated field (two <Encrypt>) is ambiguous: refuse rather than pick one.
            if name in self.fields:
                self.problem = self.problem or f"repeated XML field {name}"
            self.current, self.parts = name, []

    def end(self, _name: str) -> None:
        if self.depth == 2:
            self.fields[self.current] = "".join(self.parts)
        self.depth -= 1

    def text(self, data: str) -> None:
        if self.depth == 2:
            self.parts.append(data)


def _may_hide_markup(body: bytes) -> bool:
    """False when `outside_cdata(body)` cannot hold a "<!" (so no DTD marker): every "<!"
    in the body opens a CDATA section, and no section's end is followed by "!" (which, after
    a "<" just before the section, would join into one). True otherwise; the usual callback
    is False, and this costs a fraction of the scan."""
    return body.count(b"<!") != body.count(_CDATA_OPEN) or b"]]>!" in body


def outside_cdata(body: bytes) -> bytes:
    """`body` without its CDATA sections, in one linear pass.

    User text arrives in CDATA and may quote HTML ("<!DOCTYPE html>"), so the DTD check
    looks outside CDATA only (a DTD cannot live inside CDATA; the parser's own DTD refusal
    stays on behind the check). A lazy regex for this was quadratic on a body of
    unterminated sections, and it ran before any signature check: this scan finds each
    section's end once. An unterminated section runs to the end, as the parser reads it.
    """
    kept: list[bytes] = []
    pos = 0
    while True:
        start = body.find(_CDATA_OPEN, pos)
        if start < 0:
            kept.append(body[pos:])
            return b"".join(kept)
        kept.append(body[pos:start])
        end = body.find(_CDATA_CLOSE, start + len(_CDATA_OPEN))
        if end < 0:
            return b"".join(kept)
        pos = end + len(_CDATA_CLOSE)


def _cdata(text: str) -> str:
    # "]]>" cannot appear inside CDATA: end the section after "]]" and start a new one.
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_xml(fields: Mapping[str, str | int]) -> bytes:
    """Build a flat ``<xml>`` document: strings in CDATA, ints bare, one element per line."""
    lines = ["<xml>"]
    for tag, value in fields.items():
        if not _TAG.fullmatch(tag):
            raise ValueError(f"invalid XML tag name {tag!r}")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"XML field {tag} must be str or int")
        if isinstance(value, int):
            lines.append(f"<{tag}>{value}</{tag}>")
            continue
        if _NOT_XML_CHAR.search(value):
            raise ValueError(f"XML field {tag} holds a character XML cannot carry")
        lines.append(f"<{tag}>{_cdata(value)}</{tag}>")
    lines.append("</xml>")
    # The platforms put "\n" between elements; doing the same reproduces their samples.
    return "\n".join(lines).encode("utf-8")
