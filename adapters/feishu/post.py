"""Reply bodies for Feishu: `post` (rich text) for Markdown-like answers, `text` otherwise.

Message content formats: https://open.feishu.cn/document/server-docs/im-v1/message-content-description/create_json
(text ``{"text": …}`` with ``<at user_id="ou_…"></at>``; post ``{"zh_cn": {"title", "content":
[[element, …], …]}}``, one inner list per line, elements ``text`` (optional ``style``), ``a``
and ``at``). Pure functions, no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

from adapters.text import markdown_to_plain

_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+\S", re.MULTILINE)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+\S", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*")
_LINK = re.compile(r"\[[^\]\n]+\]\(https?://[^)\s]+\)")
_URL = re.compile(r"https?://\S+")
_PARAGRAPHS = re.compile(r"\n[^\S\n]*\n")
# One inline token: **bold**, [label](url), `code` or a bare URL; the text between is plain.
_INLINE = re.compile(
    r"\*\*(?P<bold>[^*\n]+)\*\*"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<href>https?://[^)\s]+)\)"
    r"|`(?P<code>[^`\n]+)`"
    r"|(?P<url>https?://[^\s<>()（）]+)"
)
_BULLET = re.compile(r"^\s*[-*+]\s+")
_HEADING_MARK = re.compile(r"^\s{0,3}#{1,6}\s+")
_FENCE = re.compile(r"^\s*```")
# post bodies over 30 KB are refused (230025); text allows 150 KB. Many tiny lines can blow a
# post up far beyond its text (JSON per element): such a part goes as text instead.
MAX_POST_CONTENT_BYTES = 28_000


def looks_like_markdown(text: str) -> bool:
    """Paragraphs, lists, headings, bold or links: worth a `post`; else plain `text` does."""
    return any(
        pattern.search(text) for pattern in (_LIST_ITEM, _HEADING, _BOLD, _LINK, _URL, _PARAGRAPHS)
    )


def _inline(line: str) -> list[dict[str, Any]]:
    elements: list[dict[str, Any]] = []
    at = 0
    for match in _INLINE.finditer(line):
        if match.start() > at:
            elements.append({"tag": "text", "text": line[at : match.start()]})
        if match.group("bold"):
            elements.append({"tag": "text", "text": match.group("bold"), "style": ["bold"]})
        elif match.group("href"):
            elements.append({"tag": "a", "text": match.group("label"), "href": match.group("href")})
        elif match.group("code"):
            elements.append({"tag": "text", "text": match.group("code")})
        else:
            url = match.group("url")
            elements.append({"tag": "a", "text": url, "href": url})
        at = match.end()
    if at < len(line):
        elements.append({"tag": "text", "text": line[at:]})
    return elements


def post_lines(text: str) -> list[list[dict[str, Any]]]:
    """Markdown-like text to post paragraphs (one per line; one empty line between blocks)."""
    lines: list[list[dict[str, Any]]] = []
    blank = False
    for raw in text.strip().splitlines():
        if _FENCE.match(raw):
            continue  # a code block's lines are kept, its fences are not
        if not raw.strip():
            blank = bool(lines)
            continue
        if blank:
            lines.append([{"tag": "text", "text": ""}])
            blank = False
        if _HEADING_MARK.match(raw):
            title = _HEADING_MARK.sub("", raw).strip().strip("*")
            lines.append([{"tag": "text", "text": title, "style": ["bold"]}])
            continue
        line = _BULLET.sub("• ", raw.rstrip(), count=1)
        lines.append(_inline(line) or [{"tag": "text", "text": line}])
    return lines


def render(text: str, *, at_open_id: str = "") -> tuple[str, str]:
    """``(msg_type, content)`` for one reply part; ``content`` is the JSON *string* to send.

    ``at_open_id`` (group replies) @-mentions the asker at the start of the message.
    """
    if looks_like_markdown(text):
        lines = post_lines(text)
        if at_open_id:
            mention = [{"tag": "at", "user_id": at_open_id}, {"tag": "text", "text": " "}]
            lines = [mention + lines[0], *lines[1:]] if lines else [mention]
        content = json.dumps({"zh_cn": {"title": "", "content": lines}}, ensure_ascii=False)
        if len(content.encode("utf-8")) <= MAX_POST_CONTENT_BYTES:
            return "post", content
    plain = markdown_to_plain(text)
    if at_open_id:
        # The open_id is ours to trust (from the verified event); quotes would break the tag.
        plain = f'<at user_id="{at_open_id.replace(chr(34), "")}"></at> {plain}'
    return "text", json.dumps({"text": plain}, ensure_ascii=False)
