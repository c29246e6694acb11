"""Temporary media upload (``POST /cgi-bin/media/upload``, form field ``media``), which the
WeCom app and the Official Account answer alike: a ``media_id`` the next message names.

Only `bot simulate … --image/--voice` uploads: a stand-in customer's picture or voice.
Each client passes its own errcode sets (which codes mean "token refused" or "busy").
"""

from __future__ import annotations

from collections.abc import Collection

import aiohttp

from adapters.client import ApiClient, TokenRejectedError, platform_says
from adapters.http import errcode_of
from bot.errors import PlatformRejectedError, PlatformUnavailableError

WHAT = "media/upload"


async def upload_temporary(
    client: ApiClient,
    http: aiohttp.ClientSession,
    data: bytes,
    *,
    filename: str,
    content_type: str,
    kind: str,
    token_errcodes: Collection[int],
    busy_errcodes: Collection[int],
) -> str:
    """Upload `data` as temporary media of `kind` (image, voice …); its media_id."""
    platform = client.platform

    async def call(token: str) -> str:
        form = aiohttp.FormData()
        form.add_field("media", data, filename=filename, content_type=content_type)
        try:
            async with http.post(
                client.api_base + "/cgi-bin/media/upload",
                params={"access_token": token, "type": kind},
                data=form,
                timeout=client.http_timeout,
            ) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise PlatformUnavailableError(f"{WHAT} answered", platform, status=resp.status)
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PlatformUnavailableError(
                f"{WHAT} failed ({type(exc).__name__})", platform
            ) from exc
        answer = answer if isinstance(answer, dict) else {}
        errcode = errcode_of(answer)
        if errcode in token_errcodes:
            raise TokenRejectedError(errcode)
        what = WHAT + platform_says(answer)
        if errcode in busy_errcodes:
            raise PlatformUnavailableError(f"{what} busy", platform, errcode)
        if errcode:
            raise PlatformRejectedError(f"{what} rejected", platform, errcode)
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise PlatformUnavailableError(f"{WHAT}: no media_id", platform)
        return media_id

    return await client.with_token(http, call)
