"""One JSON call to a platform API, with transport failures mapped to the project's errors.

Shared by the WeChat-family clients (WeCom app, 微信客服, Official Account): they all answer
API errors with HTTP 200 and an `errcode`, which each client maps itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError


async def request_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    platform: Platform,
    what: str,
    client_timeout: aiohttp.ClientTimeout,
    params: Mapping[str, str] | None = None,
    json: Any = None,
) -> dict[str, Any]:
    """Send the request and return the JSON object it answers.

    5xx, 429, timeouts, connection errors and non-JSON answers (a proxy's error page) are
    `PlatformUnavailableError`; other non-200 statuses are `PlatformRejectedError`. Errors
    name `what` only: the URL's query may hold a secret or an access token.
    """
    try:
        async with http.request(
            method, url, params=params, json=json, timeout=client_timeout
        ) as resp:
            if resp.status >= 500 or resp.status == 429:
                raise PlatformUnavailableError(f"{what} answered", platform, status=resp.status)
            if resp.status != 200:
                raise PlatformRejectedError(f"{what} answered", platform, status=resp.status)
            data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise PlatformUnavailableError(
            f"{what} unreachable ({type(exc).__name__})", platform
        ) from exc
    except ValueError as exc:
        raise PlatformUnavailableError(f"{what} answered non-JSON", platform) from exc
    if not isinstance(data, dict):
        raise PlatformUnavailableError(f"{what} answered non-object JSON", platform)
    return data


def errcode_of(data: Mapping[str, Any]) -> int:
    """The WeChat-family `errcode`: missing means success, unreadable is treated as busy (-1)."""
    code = data.get("errcode", 0)
    return code if isinstance(code, int) else -1
