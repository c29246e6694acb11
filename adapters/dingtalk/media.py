"""Pictures, files and videos sent to the DingTalk robot: described, then fetched by the worker.

A robot message carries no media bytes, only a ``downloadCode`` (README §4.4-4.5):
``picture`` → ``content.downloadCode``; ``richText`` → ``content.richText[]`` items with
``downloadCode`` (type ``picture``); ``file`` → ``content.{downloadCode, fileName}``;
``video`` → ``content.{downloadCode, duration, videoType}``. The worker exchanges a code for
a temporary ``downloadUrl`` (``POST /v1.0/robot/messageFiles/download`` with
``{downloadCode, robotCode}``; https://open.dingtalk.com/document/orgapp/download-the-file-content-of-the-robot-receiving-message)
and fetches it with a size cap and a timeout, following it only to DingTalk's own hosts: the
URL comes from an answer we trust, but a redirect or a forged answer must not make us fetch
an internal address (SSRF).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bot.domain import Platform
from bot.errors import PayloadError, PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
MEDIA_META = "media"  # meta key: JSON list of {"kind","code","name"} to fetch
SAVED_META = "media_saved"  # meta key: JSON list of {"kind","name","path","bytes"} fetched
MAX_ITEMS = 4  # at most this many attachments of one message are fetched
_PLACEHOLDERS = {"image": "[图片]", "file": "[文件]", "video": "[视频]"}
_SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")
_NAME_CHARS = 80
_CHUNK = 64 * 1024


class MediaTooLargeError(PayloadError):
    """The file is over the configured size limit; nothing is kept."""


@dataclass(frozen=True, slots=True)
class Described:
    """What a media message says to the agent (`text`) and what to fetch (`meta`)."""

    text: str
    meta: dict[str, str]


def _code(item: Mapping[str, Any]) -> str:
    value = item.get("downloadCode") or item.get("pictureDownloadCode")
    return value if isinstance(value, str) else ""


def describe(msg_type: str, content: Mapping[str, Any]) -> Described | None:
    """A picture/file/video message as placeholder text plus fetch meta; None otherwise.

    The text stays a placeholder ("[图片]", "[文件] 合同.pdf"): meta ``unsupported`` makes
    the worker answer with a polite fixed text asking for a description (bot/autoreply.py)
    rather than a model guessing at an image it cannot see.
    """
    items: list[dict[str, str]] = []
    if msg_type == "picture":
        kind = "image"
        items.append({"kind": kind, "code": _code(content), "name": ""})
    elif msg_type == "file":
        kind = "file"
        name = content.get("fileName")
        items.append({"kind": kind, "code": _code(content), "name": str(name or "")[:255]})
    elif msg_type == "video":
        kind = "video"
        items.append({"kind": kind, "code": _code(content), "name": ""})
    else:
        return None
    text = _PLACEHOLDERS[kind]
    name = items[0]["name"]
    if name:
        text = f"{text} {name}"
    meta = {"msg_type": kind, "unsupported": kind}
    fetchable = [i for i in items if i["code"]]
    if fetchable:
        meta[MEDIA_META] = json.dumps(fetchable, ensure_ascii=False)
    if name:
        meta["fileName"] = name
    return Described(text=text, meta=meta)


def rich_text_images(items: list[Any]) -> list[dict[str, str]]:
    """The pictures of a richText message, as fetch entries (text items are read elsewhere)."""
    found = []
    for item in items:
        if not isinstance(item, dict) or "text" in item:
            continue
        code = _code(item)
        if code and item.get("type", "picture") == "picture":
            found.append({"kind": "image", "code": code, "name": ""})
    return found[:MAX_ITEMS]


def pending(meta: Mapping[str, str]) -> list[dict[str, str]]:
    """The attachments a queued message still has to fetch (empty when fetched or none)."""
    if SAVED_META in meta or MEDIA_META not in meta:
        return []
    try:
        items = json.loads(meta[MEDIA_META])
    except ValueError:
        return []
    if not isinstance(items, list):
        return []
    return [
        {k: str(i.get(k, "")) for k in ("kind", "code", "name")}
        for i in items[:MAX_ITEMS]
        if isinstance(i, dict) and i.get("code")
    ]


def allowed_url(url: str, *, api_base: str) -> bool:
    """Whether a downloadUrl may be fetched: https on a dingtalk.com host, or the API's host.

    The second case is the configured (fake) API in tests; its scheme must match too.
    """
    try:
        got = urlsplit(url)
        base = urlsplit(api_base)
        host = (got.hostname or "").lower()
    except ValueError:
        return False
    if not host or got.username or got.password:
        return False
    if got.scheme == "https" and (host == "dingtalk.com" or host.endswith(".dingtalk.com")):
        return True
    return (got.scheme, host, got.port) == (base.scheme, (base.hostname or "").lower(), base.port)


def file_name(event_id: str, index: int, item: Mapping[str, str], content_type: str) -> str:
    """A safe local file name: a digest of the message id, then the sender's name cleaned."""
    stem = hashlib.sha256(event_id.encode()).hexdigest()[:24]
    name = _SAFE_NAME.sub("_", item.get("name", "")).strip("._")[-_NAME_CHARS:]
    if not name:
        ext = {
            "image/png": ".png",
            "image/gif": ".gif",
            "image/webp": ".webp",
            "video/mp4": ".mp4",
        }.get(content_type.split(";")[0].strip().lower(), "")
        if not ext:
            ext = ".jpg" if item.get("kind") == "image" else ".bin"
        name = f"{item.get('kind', 'file')}{ext}"
    return f"{stem}-{index}-{name}"


async def download(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    api_base: str,
    max_bytes: int,
    timeout_s: float,
) -> tuple[int, str]:
    """Fetch `url` into `dest` (atomically); return (bytes, content type).

    Raises PayloadError for a URL we will not follow, MediaTooLargeError over `max_bytes`,
    PlatformRejectedError for a 4xx, PlatformUnavailableError for 5xx/timeouts.
    """
    if not allowed_url(url, api_base=api_base):
        raise PayloadError("downloadUrl is not on a DingTalk host", PLATFORM)
    tmp = dest.with_name(dest.name + ".part")
    size = 0
    try:
        # No redirects: a 3xx could point anywhere (the allow-list is checked once, here).
        async with http.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise PlatformUnavailableError("media download", PLATFORM, status=resp.status)
            if resp.status != 200:
                raise PlatformRejectedError("media download", PLATFORM, status=resp.status)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MediaTooLargeError(f"media over {max_bytes} bytes", PLATFORM)
            content_type = resp.headers.get("Content-Type", "")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLargeError(f"media over {max_bytes} bytes", PLATFORM)
                    out.write(chunk)
        os.replace(tmp, dest)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PlatformUnavailableError(
            f"media download failed ({type(exc).__name__})", PLATFORM
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return size, content_type
