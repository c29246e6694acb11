"""Pictures, files and videos sent to the DingTalk robot: described, then fetched by the worker.

A robot message carries no media bytes, only a ``downloadCode``
(docs/protocols/dingtalk.md#media-download): ``picture`` → ``content.downloadCode``; ``richText`` →
``content.richText[]`` items with ``downloadCode`` (type ``picture``); ``file`` →
``content.{downloadCode, fileName}``; ``video`` → ``content.{downloadCode, duration, videoType}``.
The worker exchanges a code for a temporary ``downloadUrl`` (``POST
/v1.0/robot/messageFiles/download`` with ``{downloadCode, robotCode}``;
https://open.dingtalk.com/document/orgapp/download-the-file-content-of-the-robot-receiving-message)
and fetches it with a size cap and a timeout, following it only to DingTalk's own hosts: the URL
comes from an answer we trust, but a redirect or a forged answer must not make us fetch an internal
address (SSRF).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from adapters import media
from bot.domain import Attachment, Content, Platform

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
MAX_ITEMS = 4  # at most this many attachments of one message are fetched
_PLACEHOLDERS = {Content.IMAGE: "[图片]", Content.FILE: "[文件]", Content.VIDEO: "[视频]"}
_KINDS = {"picture": Content.IMAGE, "file": Content.FILE, "video": Content.VIDEO}


@dataclass(frozen=True, slots=True)
class Described:
    """What a media message says to the agent (`text`) and what the worker fetches."""

    text: str
    content: Content
    attachments: tuple[Attachment, ...]


def _code(item: Mapping[str, Any]) -> str:
    value = item.get("downloadCode") or item.get("pictureDownloadCode")
    return value if isinstance(value, str) else ""


def describe(msg_type: str, content: Mapping[str, Any]) -> Described | None:
    """A picture/file/video message as placeholder text plus what to fetch; None otherwise.

    The text stays a placeholder ("[图片]", "[文件] 合同.pdf"), flagged so the worker
    answers with a polite fixed text asking for a description
    (bot/pipeline/autoreply.py) rather than a model guessing at an image it cannot see.
    """
    kind = _KINDS.get(msg_type)
    if kind is None:
        return None
    name = str(content.get("fileName") or "")[:255] if kind is Content.FILE else ""
    code = _code(content)
    text = f"{_PLACEHOLDERS[kind]} {name}" if name else _PLACEHOLDERS[kind]
    attachments = (Attachment(kind, code, name),) if code else ()
    return Described(text=text, content=kind, attachments=attachments)


def rich_text_images(items: list[Any]) -> tuple[Attachment, ...]:
    """The pictures of a richText message, to fetch (text items are read elsewhere)."""
    found = []
    for item in items:
        if not isinstance(item, dict) or "text" in item:
            continue
        code = _code(item)
        if code and item.get("type", "picture") == "picture":
            found.append(Attachment(Content.IMAGE, code))
    return tuple(found[:MAX_ITEMS])


def allowed_url(url: str, *, api_base: str) -> bool:
    """Whether a downloadUrl may be fetched: https on a dingtalk.com host, or the API's host.

    The second case is the configured (fake) API in tests; its scheme must match too.
    """
    return media.allowed_url(url, ("dingtalk.com", api_base))


async def download(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    api_base: str,
    max_bytes: int,
    timeout_s: float,
) -> media.Fetched:
    """Fetch a downloadUrl into `dest`, only from DingTalk's hosts or the configured API."""
    return await media.download(
        http,
        url,
        dest,
        allowed=lambda u: allowed_url(u, api_base=api_base),
        platform=PLATFORM,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
    )
