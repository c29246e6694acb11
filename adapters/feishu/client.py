"""Feishu open API client: tenant access token and message posting, with error mapping.

Notes in docs/protocols/feishu.md#sending-and-replying; tenant_access_token
https://open.feishu.cn/document/server-docs/authentication-management/access-token/tenant_access_token_internal,
reply https://open.feishu.cn/document/server-docs/im-v1/message/reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from adapters import media
from adapters.client import ApiClient, TokenRejectedError, platform_says
from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

PLATFORM = Platform.FEISHU
# Token-invalid codes (lark-oapi channel/errors.py): drop the token, refresh, retry once.
_TOKEN_CODES = frozenset({99991661, 99991663, 99991664, 99991665, 99991666, 99991668})
# 230020 chat frequency limit, 11232 tenant message rate [?]: worth a retry later.
_BUSY_CODES = frozenset({230020, 11232})
# tenant_access_token/internal: 10003 invalid app_id/secret, 10014 invalid app_secret.
_CREDENTIAL_CODES = frozenset({10003, 10014})


class FeishuClient(ApiClient):
    """Posts to one app's open API with its tenant access token, cached under token_key."""

    platform: ClassVar[Platform] = PLATFORM

    async def post(
        self,
        http: aiohttp.ClientSession,
        path: str,
        body: dict[str, Any],
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST body with the token; on a token-invalid code refresh once and retry once."""
        return await self._with_token(http, "POST", path, params, body)

    async def get(
        self, http: aiohttp.ClientSession, path: str, params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """GET with the token, refreshed once like `post`."""
        return await self._with_token(http, "GET", path, params, None)

    async def call(
        self, http: aiohttp.ClientSession, method: str, path: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Any method with a JSON body (CardKit's PUT and PATCH), refreshed once like `post`."""
        return await self._with_token(http, method, path, None, body)

    async def _with_token(
        self,
        http: aiohttp.ClientSession,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        async def call(token: str) -> dict[str, Any]:
            return await self._authorized(http, token, method, path, params, body)

        return await self.with_token(http, call)

    async def download_resource(
        self,
        http: aiohttp.ClientSession,
        message_id: str,
        file_key: str,
        dest: Path,
        *,
        kind: str,
        max_bytes: int,
        timeout_s: float,
    ) -> media.Fetched:
        """Save a file of a message a user sent (获取消息中的资源文件,
        https://open.feishu.cn/document/server-docs/im-v1/message/get-2); `kind` is
        ``image`` or ``file``. Capped at `max_bytes`, within `timeout_s`."""
        path = (
            f"/open-apis/im/v1/messages/{quote(message_id, safe='')}"
            f"/resources/{quote(file_key, safe='')}"
        )

        async def call(token: str) -> media.Fetched:
            fetched = await media.fetch_from_api(
                http,
                self._api_base + path,
                dest,
                params={"type": kind},
                headers={"Authorization": f"Bearer {token}"},
                platform=PLATFORM,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
            )
            if fetched.error is not None:
                code = _code(fetched.error)
                if code in _TOKEN_CODES:
                    raise TokenRejectedError(code)
                # A JSON answer is never the file: code 0 there is a refusal all the same.
                raise_for_feishu(code or -2, "resources" + platform_says(fetched.error, "msg"))
            return fetched

        return await self.with_token(http, call)

    async def fetch_token(self, http: aiohttp.ClientSession, *, force: bool) -> tuple[str, float]:
        del force  # the internal-app endpoint answers the current token or a new one
        path = "/open-apis/auth/v3/tenant_access_token/internal"
        data = await self._call(
            http, path, json_body={"app_id": self._client_id, "app_secret": self._client_secret}
        )
        code = _code(data)
        if code in _CREDENTIAL_CODES:
            raise PlatformRejectedError(
                f"tenant_access_token: bad app id or secret{platform_says(data, 'msg')}",
                PLATFORM,
                code,
            )
        raise_for_feishu(code, "tenant_access_token" + platform_says(data, "msg"))
        token = data.get("tenant_access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("tenant_access_token: no token in answer", PLATFORM)
        expire = data.get("expire", 7200)
        return token, float(expire) if isinstance(expire, int | float) else 7200.0

    async def _authorized(
        self,
        http: aiohttp.ClientSession,
        token: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: dict[str, Any] | None,
    ) -> dict[str, Any]:
        data = await self._call(
            http, path, json_body=body, params=params, token=token, method=method
        )
        code = _code(data)
        if code in _TOKEN_CODES:
            raise TokenRejectedError(code)
        raise_for_feishu(code, path.rsplit("/", 1)[-1])
        return data

    async def _call(
        self,
        http: aiohttp.ClientSession,
        path: str,
        *,
        json_body: Any,
        params: Mapping[str, str] | None = None,
        token: str = "",
        method: str = "POST",
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Errors name the path only, never the secret or the token.
        try:
            async with http.request(
                method,
                self._api_base + path,
                params=params,
                json=json_body,
                headers=headers,
                timeout=self._timeout,
            ) as resp:
                if resp.status >= 500 or resp.status == 429:
                    raise PlatformUnavailableError(f"{path} answered", PLATFORM, status=resp.status)
                try:
                    data = await resp.json(content_type=None)
                except ValueError as exc:
                    if resp.status != 200:
                        raise PlatformRejectedError(
                            f"{path} answered", PLATFORM, status=resp.status
                        ) from exc
                    raise PlatformUnavailableError(f"{path} answered non-JSON", PLATFORM) from exc
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PlatformUnavailableError(
                f"{path} unreachable ({type(exc).__name__})", PLATFORM
            ) from exc
        if not isinstance(data, dict):
            raise PlatformUnavailableError(f"{path} answered non-object JSON", PLATFORM)
        # Feishu answers most API errors with HTTP 400 and a code: the code decides.
        if status != 200 and _code(data) == 0:
            raise PlatformRejectedError(f"{path} answered", PLATFORM, status=status)
        return data


def _code(data: Mapping[str, Any]) -> int:
    code = data.get("code", 0)
    return code if isinstance(code, int) else -1


def raise_for_feishu(code: int, what: str) -> None:
    """Map a Feishu API code to the project's errors (the one mapping for this client)."""
    if code == 0:
        return
    if code in _BUSY_CODES or code == -1:
        raise PlatformUnavailableError(f"{what} busy", PLATFORM, code)
    raise PlatformRejectedError(f"{what} rejected", PLATFORM, code)
