"""Media users send: safe local names, and bounded downloads from hosts the platform allows.

A platform's API hands out a temporary URL for a file; the URL comes from an answer we
trust, but a redirect or a forged answer must not make us fetch an internal address (SSRF):
redirects are not followed and each platform says which hosts are its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import aiohttp

from bot.domain import Attachment, Content, Platform
from bot.errors import (
    MediaTooLargeError,
    PayloadError,
    PlatformRejectedError,
    PlatformUnavailableError,
)

_SAFE_NAME = re.compile(r"[^\w.\-\u4e00-\u9fff]+")
_NAME_CHARS = 80
_CHUNK = 64 * 1024


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


async def download(
    http: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    allowed: Callable[[str], bool],
    platform: Platform,
    max_bytes: int,
    timeout_s: float,
) -> tuple[int, str]:
    """Fetch `url` into `dest` (atomically); return (bytes, content type).

    Raises PayloadError for a URL we will not follow, MediaTooLargeError over `max_bytes`,
    PlatformRejectedError for a 4xx, PlatformUnavailableError for 5xx/timeouts.
    """
    if not allowed(url):
        raise PayloadError("download URL is not on one of the platform's hosts", platform)
    tmp = dest.with_name(dest.name + ".part")
    size = 0
    try:
        # No redirects: a 3xx could point anywhere (the allow-list is checked once, here).
        async with http.get(
            url, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise PlatformUnavailableError("media download", platform, status=resp.status)
            if resp.status != 200:
                raise PlatformRejectedError("media download", platform, status=resp.status)
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise MediaTooLargeError(f"media over {max_bytes} bytes", platform)
            content_type = resp.headers.get("Content-Type", "")
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
    return size, content_type
