"""One JSON call to a platform API, with transport failures mapped to the project's errors.

`request_decoded` serves the WeChat-family clients (WeCom app, 微信客服, Official Account, through
`ApiClient.request_json`) and DingTalk's sessionWebhook: they answer API errors with HTTP 200
and an `errcode`, which each client maps itself.
`post_read` serves the APIs that answer errors with a 4xx/5xx and a code in the body
(DingTalk's OpenAPI, the long connections' endpoints).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp

from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError


async def request_decoded(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    platform: Platform,
    what: str,
    client_timeout: aiohttp.ClientTimeout,
    params: Mapping[str, str] | None = None,
    json: Any = None,
) -> Any:
    """Send the request and return its decoded JSON answer, whatever its type.

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
            return await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(what, platform, exc) from exc
    except ValueError as exc:
        raise PlatformUnavailableError(f"{what} answered non-JSON", platform) from exc


async def post_read(
    http: aiohttp.ClientSession,
    url: str,
    *,
    platform: Platform,
    what: str,
    client_timeout: aiohttp.ClientTimeout,
    json: Any,
    headers: Mapping[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, bytes]:
    """POST (or `method`) `json` and return the answer's status and raw body, for APIs that put
    their error codes in non-200 answers; an unreachable API is `PlatformUnavailableError`."""
    try:
        async with http.request(
            method, url, json=json, headers=headers, timeout=client_timeout
        ) as resp:
            return resp.status, await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise unreachable(what, platform, exc) from exc


def json_object(data: Any, *, platform: Platform, what: str) -> dict[str, Any]:
    """`data` when it is a JSON object; an answer of another type is `PlatformUnavailableError`."""
    if not isinstance(data, dict):
        raise PlatformUnavailableError(f"{what} answered non-object JSON", platform)
    return data


def unreachable(what: str, platform: Platform, exc: BaseException) -> PlatformUnavailableError:
    """The error for a call that got no answer; it names the exception's type, not its text."""
    return PlatformUnavailableError(f"{what} unreachable ({type(exc).__name__})", platform)


def errcode_of(data: Mapping[str, Any]) -> int:
    """The WeChat-family `errcode`: missing means success, unreadable is treated as busy (-1)."""
    code = data.get("errcode", 0)
    return code if isinstance(code, int) else -1
