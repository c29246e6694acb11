"""The file name a download's Content-Disposition header gives (RFC 6266), as platforms send it.

WeCom's and 微信客服's media/get name the file only there, and not always by the RFC: the
name comes as raw UTF-8 inside quotes (aiohttp decodes header bytes as UTF-8 with
surrogateescape; a proxy may have decoded them as latin-1), or percent-encoded inside
quotes; other servers send RFC 5987 ``filename*=UTF-8''%E5%90%88%E5%90%8C.pdf``. The value
is untrusted: it is read in one pass (no regular expression), and what comes back is a bare
name for display and type checks, never a path: no folders, no control or format characters,
at most `MAX_NAME_CHARS` characters. Anything malformed gives "".
"""

from __future__ import annotations

import contextlib
import unicodedata

MAX_HEADER_CHARS = 4096  # a longer value is refused whole (a percent-encoded 255-char name fits)
MAX_NAME_CHARS = 120
_MAX_SUFFIX_CHARS = 16  # an extension kept when a long name is cut
_CHARSETS = {"utf-8": "utf-8", "iso-8859-1": "latin-1"}  # what RFC 5987 requires of us
_HEX = frozenset("0123456789abcdefABCDEF")
_SPACE = " \t"


def filename(value: str) -> str:
    """The file name `value` (a Content-Disposition header) gives, cleaned; "" for none.

    ``filename*`` is preferred to ``filename`` (RFC 6266 4.3); a malformed ``filename*``
    falls back to ``filename``.
    """
    if not value or len(value) > MAX_HEADER_CHARS:
        return ""
    params = _params(value)
    if params is None:
        return ""
    if "filename*" in params:
        name = _clean(_extended(params["filename*"]))
        if name:
            return name
    return _clean(_plain(params.get("filename", "")))


def _params(value: str) -> dict[str, str] | None:
    """The parameters after the disposition type, names lower-cased; None when malformed
    (an unclosed quote, text after a quoted value, a parameter given twice)."""
    semi = value.find(";")
    if semi < 0 or '"' in value[:semi]:
        return {} if semi < 0 else None
    params: dict[str, str] = {}
    i, end = semi + 1, len(value)
    while i < end:
        j = i
        while j < end and value[j] not in "=;":
            j += 1
        key = value[i:j].strip(_SPACE).lower()
        if j == end or value[j] == ";":  # a parameter without a value: nothing to read
            i = j + 1
            continue
        j += 1
        while j < end and value[j] in _SPACE:
            j += 1
        if j < end and value[j] == '"':
            parsed = _quoted(value, j + 1)
            if parsed is None:
                return None
            text, j = parsed
            while j < end and value[j] in _SPACE:
                j += 1
            if j < end and value[j] != ";":
                return None
        else:
            stop = value.find(";", j)
            stop = end if stop < 0 else stop
            text, j = value[j:stop].strip(_SPACE), stop
        if key:
            if key in params:
                return None  # which of two names is meant cannot be known (RFC 6266 4.1)
            params[key] = text
        i = j + 1
    return params


def _quoted(value: str, start: int) -> tuple[str, int] | None:
    """The quoted string opened just before `start`, and where after its closing quote;
    None when it never closes. A backslash escapes only a quote or a backslash: senders put
    Windows paths in quotes unescaped (``"C:\\合同.pdf"``), and those backslashes stay."""
    out: list[str] = []
    i, end = start, len(value)
    while i < end:
        char = value[i]
        if char == "\\" and i + 1 < end and value[i + 1] in '"\\':
            out.append(value[i + 1])
            i += 2
        elif char == '"':
            return "".join(out), i + 1
        else:
            out.append(char)
            i += 1
    return None


def _extended(value: str) -> str:
    """An RFC 5987 ext-value (``charset'lang'percent-encoded``) decoded; "" if malformed."""
    parts = value.split("'")
    if len(parts) != 3:
        return ""
    charset = _CHARSETS.get(parts[0].strip(_SPACE).lower())
    raw = _unpercent(parts[2])
    if charset is None or raw is None:
        return ""
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        return ""


def _plain(name: str) -> str:
    """A ``filename`` value as the sender meant it: bytes that were decoded the wrong way
    decoded again, a percent-encoded UTF-8 name decoded; "" for bytes nothing decodes."""
    if any("\udc80" <= c <= "\udcff" for c in name):
        # Not UTF-8: aiohttp kept the bytes (surrogateescape); GBK is the usual other one.
        raw = name.encode("utf-8", "surrogateescape")
        try:
            name = raw.decode("gb18030")
        except UnicodeDecodeError:
            return ""
    elif any(c >= "\x80" for c in name) and all(c <= "\xff" for c in name):
        # UTF-8 bytes read as latin-1 ("åˆåŒ.pdf"); a real latin-1 name stays.
        with contextlib.suppress(UnicodeDecodeError):
            name = name.encode("latin-1").decode("utf-8")
    if "%" in name and name.isascii():
        escaped = _unpercent(name)
        # "100%.pdf" and "x%E9.pdf" are not percent-encoded UTF-8: the name as written.
        if escaped is not None:
            with contextlib.suppress(UnicodeDecodeError):
                name = escaped.decode("utf-8")
    return name


def _unpercent(text: str) -> bytes | None:
    """`text` percent-decoded; None when a ``%`` is not followed by two hex digits or a
    character is not ASCII (an ext-value is ASCII by definition)."""
    if not text.isascii():
        return None
    out = bytearray()
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not (pair[0] in _HEX and pair[1] in _HEX):
                return None
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(ord(char))
            i += 1
    return bytes(out)


def _clean(name: str) -> str:
    """A bare file name: the last part of any path, without control, format (bidi
    overrides) or unassigned characters, spaces collapsed, at most `MAX_NAME_CHARS`."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    kept = "".join(c for c in base if not unicodedata.category(c).startswith("C"))
    kept = " ".join(kept.split())
    if not kept.strip("."):
        return ""  # "", "." and ".." name no file
    if len(kept) > MAX_NAME_CHARS:
        dot = kept.rfind(".")
        suffix = kept[dot:] if dot > 0 and len(kept) - dot <= _MAX_SUFFIX_CHARS else ""
        kept = kept[: MAX_NAME_CHARS - len(suffix)].rstrip() + suffix
    return kept
