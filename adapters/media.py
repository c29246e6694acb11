"""Media users send: safe local names, and bounded downloads from hosts the platform allows.

A platform's API hands out a temporary URL for a file; the URL comes from an answer we
trust, but a redirect or a forged answer must not make us fetch an internal address (SSRF):
redirects are not followed and each platform says which hosts are its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from adapters.disposition import filename
from bot.domain import Attachment, Content, InboundMessage, Platform
from bot.errors import (
    MediaTooLargeError,
    PayloadError,
    PlatformRejectedError,
    PlatformUnavailableError,
)

# What stands for a message the bot cannot read as text; flagged `placeholder`, so the worker
# answers it politely (bot/pipeline/autoreply.py) and never stays silent.
PLACEHOLDERS = {
    Content.IMAGE: "[图片]",
    Content.VOICE: "[语音]",
    Content.VIDEO: "[视频]",
    Content.FILE: "[文件]",
    Content.LOCATION: "[位置]",
    Content.LINK: "[链接]",
    Content.CARD: "[名片]",
    Content.MINIPROGRAM: "[小程序]",
    Content.STICKER: "[表情]",
    Content.OTHER: "[消息]",
}


def placeholder(kind: Content, detail: str = "") -> str:
    """The placeholder text of a message of `kind` ("[文件] 合同.pdf" with a detail)."""
    text = PLACEHOLDERS.get(kind, PLACEHOLDERS[Content.OTHER])
    detail = " ".join(detail.split())[:120]
    return f"{text} {detail}" if detail else text


_SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")
_NAME_CHARS = 80
_CHUNK = 64 * 1024
_MAX_ERROR_BYTES = 64 * 1024  # an error body is small; never read a large one whole


def file_name(event_id: str, index: int, item: Attachment, content_type: str) -> str:
    """A safe local file name: a digest of the message id, then the sender's name cleaned."""
    stem = hashlib.sha256(event_id.encode()).hexdigest()[:24]
    name = _SAFE_NAME.sub("_", item.name).strip("._")[-_NAME_CHARS:]
    if not name:
        ext = {
            "image/png": ".png",
            "image/gif": ".gif",
            "image/webp": ".webp",
            "video/mp4": ".mp4",
        }.get(content_type.split(";")[0].strip().lower(), "")
        if not ext:
            ext = ".jpg" if item.kind is Content.IMAGE else ".bin"
        name = f"{item.kind.value}{ext}"
    return f"{stem}-{index}-{name}"


def host_list(hosts: str | Sequence[str]) -> tuple[str, ...]:
    """The allow-list entries of a setting ("a.com,b.com" or a list), lower-cased."""
    raw = hosts.split(",") if isinstance(hosts, str) else hosts
    return tuple(h.strip().lower().rstrip("/") for h in raw if h.strip())


def allowed_url(url: str, hosts: Sequence[str]) -> bool:
    """Whether a media URL may be fetched from `hosts` (`host_list`'s entries).

    An entry `example.com` allows https on that host and its subdomains; an entry with a
    scheme (`http://127.0.0.1:8080`, the stand-ins in tests and trial mode) exactly that origin.
    """
    try:
        got = urlsplit(url)
        host = (got.hostname or "").lower()
        port = got.port
    except ValueError:
        return False
    if not host or got.username or got.password:
        return False
    for entry in hosts:
        if "://" in entry:
            try:
                base = urlsplit(entry)
                if (got.scheme, host, port) == (base.scheme, base.hostname, base.port):
                    return True
            except ValueError:
                continue
        elif got.scheme == "https" and (host == entry or host.endswith("." + entry)):
            return True
    return False


async def download(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    allowed: Callable[[str], bool],
    platform: Platform,
    max_bytes: int,
    timeout_s: float,
) -> Fetched:
    """Fetch `url` into `dest` (atomically): its size, content type and name.

    Raises PayloadError for a URL we will not follow, MediaTooLargeError over `max_bytes`,
    PlatformRejectedError for a 4xx, PlatformUnavailableError for 5xx/timeouts.
    """
    if not allowed(url):
        raise PayloadError("download URL is not on one of the platform's hosts", platform)
    return await _fetch(
        http, url, dest, platform=platform, max_bytes=max_bytes, timeout_s=timeout_s
    )


@dataclass(frozen=True, slots=True)
class Fetched:
    """A file saved from a platform's media API, or the JSON error it answered instead."""

    size: int = 0
    content_type: str = ""
    error: dict[str, Any] | None = None
    # The file's name in the answer's Content-Disposition (cleaned: no path), "" for none:
    # WeCom's media/get names a file there only, its message by a media id.
    name: str = ""


async def fetch_from_api(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    platform: Platform,
    max_bytes: int,
    timeout_s: float,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Fetched:
    """Save what a media API (our configured API base, with the token) answers at `url`.

    The APIs answer a file, or a JSON error body (an expired token, an unknown media id)
    with HTTP 200 or 4xx: that body comes back as `Fetched.error` for the client to map.
    Errors name no URL: its query holds the access token.
    """
    return await _fetch(
        http,
        url,
        dest,
        platform=platform,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        params=params,
        headers=headers,
        json_errors=True,
    )


async def _fetch(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    platform: Platform,
    max_bytes: int,
    timeout_s: float,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    json_errors: bool = False,
) -> Fetched:
    tmp = dest.with_name(dest.name + ".part")
    size = 0
    try:
        # No redirects: a 3xx could point anywhere (the allow-list is checked once, before).
        async with http.get(
            url,
            params=params,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            content_type = resp.headers.get("Content-Type", "")
            disposition = resp.headers.get("Content-Disposition", "")
            # A file comes as an attachment (a .txt is text/plain too); an error never does.
            attached = "attachment" in disposition.lower()
            if json_errors and not attached and _is_json(content_type) and resp.status < 500:
                return Fetched(error=await _error_body(resp, platform))
            if resp.status >= 500 or resp.status == 429:
                raise PlatformUnavailableError("media download", platform, status=resp.status)
            if resp.status != 200:
                raise PlatformRejectedError("media download", platform, status=resp.status)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MediaTooLargeError(f"media over {max_bytes} bytes", platform)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as out:
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaTooLargeError(f"media over {max_bytes} bytes", platform)
                    out.write(chunk)
        os.replace(tmp, dest)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PlatformUnavailableError(
            f"media download failed ({type(exc).__name__})", platform
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return Fetched(size, content_type, name=filename(disposition))


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";")[0].strip().lower()
    # WeCom answers its errors as text/plain JSON, Feishu as application/json.
    return kind in ("application/json", "text/plain", "text/json")


async def _error_body(resp: aiohttp.ClientResponse, platform: Platform) -> dict[str, Any]:
    """The JSON error a media API answered, read whole but never past `_MAX_ERROR_BYTES`.

    `StreamReader.read(n)` returns what has arrived so far (up to n), not n bytes: a body
    that comes in several pieces (a slow or chunked answer) was parsed half read.
    """
    if resp.content_length is not None and resp.content_length > _MAX_ERROR_BYTES:
        raise PlatformUnavailableError("media API answered an oversized error body", platform)
    raw = bytearray()
    async for chunk in resp.content.iter_chunked(_CHUNK):
        raw += chunk
        if len(raw) > _MAX_ERROR_BYTES:
            # Not read on: a body that never ends must not hold the download to its timeout.
            raise PlatformUnavailableError("media API answered an oversized error body", platform)
    try:
        data = json.loads(raw)
    except ValueError as exc:  # UnicodeDecodeError too
        what = "media API answered neither a file nor JSON"
        raise PlatformUnavailableError(what, platform) from exc
    if not isinstance(data, dict):
        raise PlatformUnavailableError("media API answered non-object JSON", platform)
    return data


class FetchesByMediaId:
    """`fetch_media` for the WeChat family (WeCom app, 微信客服, Official Account): the message
    names its file by a media id, which the platform client's `download_media` (media/get)
    saves, capped at the adapter's `media_max_bytes` within its `media_timeout_s`.

    Listed after the client among an adapter's bases: the client supplies `download_media`.
    """

    media_max_bytes: int
    media_timeout_s: float

    if TYPE_CHECKING:

        async def download_media(
            self,
            http: aiohttp.ClientSession,
            media_id: str,
            dest: Path,
            *,
            max_bytes: int,
            timeout_s: float,
        ) -> Fetched: ...

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> Fetched:
        """Save what the user sent (its media id): its size, content type and name."""
        del message  # the media id alone names the file
        return await self.download_media(
            http,
            attachment.ref,
            dest,
            max_bytes=self.media_max_bytes,
            timeout_s=self.media_timeout_s,
        )
