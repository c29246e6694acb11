"""Answers through a message's `response_url`: past the stream's refresh window, or a second
part that a stream cannot hold.

The URL comes with each message callback, takes one POST and lives one hour (主动回复消息,
https://developer.work.weixin.qq.com/document/path/101138). It carries its own credential
(response_code), so it is never logged. Errors answer HTTP 200 with an `errcode`.
"""

from __future__ import annotations

import aiohttp

from adapters.http import errcode_of, json_object, request_decoded
from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError

PLATFORM = Platform.WECOM_AIBOT
WHAT = "aibot response_url"
# -1 system busy; 45009 / 45011 frequency limits (WeCom's shared codes): worth a retry.
BUSY_ERRCODES = frozenset({-1, 45009, 45011, 45033})


def markdown(content: str) -> dict[str, object]:
    """The body of a markdown answer (the type response_url takes for text)."""
    return {"msgtype": "markdown", "markdown": {"content": content}}


async def post(http: aiohttp.ClientSession, url: str, content: str, *, timeout_s: float) -> None:
    """POST one markdown answer to `url`.

    Raises:
        PlatformUnavailableError: timeouts, 5xx, 429, busy errcodes (the pipeline retries).
        PlatformRejectedError: any other errcode, e.g. a URL already used or expired.
    """
    data = json_object(
        await request_decoded(
            http,
            "POST",
            url,
            platform=PLATFORM,
            what=WHAT,
            client_timeout=aiohttp.ClientTimeout(total=timeout_s),
            json=markdown(content),
        ),
        platform=PLATFORM,
        what=WHAT,
    )
    errcode = errcode_of(data)
    if errcode == 0:
        return
    if errcode in BUSY_ERRCODES:
        raise PlatformUnavailableError(f"{WHAT} busy", PLATFORM, errcode)
    raise PlatformRejectedError(f"{WHAT} rejected", PLATFORM, errcode)
