"""The plumbing every platform API client shares: required settings, the app's access token
(cached in Redis across processes by `adapters.tokens`), and one retry when the API says
the token is no longer good.

A platform's client subclasses `ApiClient`, says how it fetches a token with the app's id and
secret (`fetch_token`),
and wraps each authorised call in `with_token`; its own call raises `TokenRejectedError`
when the platform answers with a token errcode.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, TypeVar

import aiohttp

from adapters.http import json_object, request_decoded
from adapters.tokens import TokenCache
from bot import keys
from bot.domain import Platform
from bot.errors import ConfigError, PlatformUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")


class TokenRejectedError(Exception):
    """The API refused the access token (internal to a client: triggers one refresh)."""

    def __init__(self, code: int | str) -> None:
        super().__init__(code)
        self.code = code


def platform_says(data: Mapping[str, Any], field: str = "errmsg") -> str:
    """The platform's own words about an error, as " (…)" for our message; "" if none.

    Operators read them (the console's token check, logs): "invalid credential" or "not
    allow to access from your ip" says what to fix, an errcode alone does not.
    """
    said = data.get(field)
    if not isinstance(said, str) or not said.strip():
        return ""
    return f" ({' '.join(said.split())[:200]})"


def require(what: str, app: str, **fields: object) -> None:
    """ConfigError naming every empty field of an app's settings (never their values)."""
    missing = [name for name, value in fields.items() if not value]
    if missing:
        raise ConfigError(f"{what} app {app!r} is missing {', '.join(missing)}")


class ApiClient:
    """Calls one platform app's API with its access token, refreshed once if refused."""

    platform: ClassVar[Platform]

    def __init__(
        self,
        app: str,
        api_base: str,
        tokens: TokenCache | None,
        http_timeout_s: float,
        *,
        client_id: str,
        client_secret: str,
    ) -> None:
        self.app = app
        self._api_base = api_base.rstrip("/")
        # None: no shared cache, a fresh token per call (CLI tools and tests only).
        self._tokens = tokens
        self._timeout = aiohttp.ClientTimeout(total=http_timeout_s)
        # What the platform grants a token for: the corp id and a secret (WeCom, 微信客服),
        # AppID and AppSecret (Official Account, Feishu), AppKey and AppSecret (DingTalk).
        self._client_id = client_id
        self._client_secret = client_secret

    @property
    def api_base(self) -> str:
        return self._api_base

    @property
    def http_timeout(self) -> aiohttp.ClientTimeout:
        """The timeout of every call of this client."""
        return self._timeout

    @property
    def token_key(self) -> str:
        """The Redis key of this app's access token."""
        return keys.access_token(self.platform.value, self.app)

    async def request_json(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> dict[str, Any]:
        """The JSON object `path` of this app's API answers (`adapters.http.request_decoded`);
        errors name the path only, never the query that may hold the token."""
        data = await request_decoded(
            http,
            method,
            self._api_base + path,
            platform=self.platform,
            what=path,
            client_timeout=self._timeout,
            params=params,
            json=json,
        )
        return json_object(data, platform=self.platform, what=path)

    async def fetch_token(self, http: aiohttp.ClientSession, *, force: bool) -> tuple[str, float]:
        """A new token and its lifetime in seconds; `force` after the old one was refused."""
        raise NotImplementedError

    async def access_token(self, http: aiohttp.ClientSession, *, force: bool = False) -> str:
        async def fetch() -> tuple[str, float]:
            return await self.fetch_token(http, force=force)

        if self._tokens is None:
            return (await fetch())[0]
        return await self._tokens.get(self.token_key, fetch)

    async def with_token(
        self, http: aiohttp.ClientSession, call: Callable[[str], Awaitable[T]]
    ) -> T:
        """`call(token)`; when the API refuses the token, drop it, fetch another, retry once."""
        token = await self.access_token(http)
        try:
            return await call(token)
        except TokenRejectedError as exc:
            log.info("%s %s token refused (%s), refreshing", self.platform, self.app, exc.code)
            if self._tokens is not None:
                await self._tokens.invalidate(self.token_key, token)
        token = await self.access_token(http, force=True)
        try:
            return await call(token)
        except TokenRejectedError as again:
            raise PlatformUnavailableError(
                f"access token refused twice ({again.code})", self.platform, errcode=again.code
            ) from again
