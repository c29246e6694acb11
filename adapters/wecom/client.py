"""WeCom's server API (qyapi.weixin.qq.com): the corp access token and errcode mapping.

Shared by the self-built app and 微信客服: both fetch `gettoken` with the corp id and their
own secret and answer errors with HTTP 200 and an `errcode`. Official pages: 获取access_token
https://developer.work.weixin.qq.com/document/path/91039; docs/protocols/wecom.md#access-token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from adapters import media
from adapters.client import ApiClient, TokenRejectedError, platform_says
from adapters.http import errcode_of
from adapters.wechat import media_upload
from bot.domain import Platform
from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

# The token was refused: drop it, fetch a new one, retry once
# (docs/protocols/pitfalls.md#pitfall-4-several-workers-refreshing-one-token).
TOKEN_ERRCODES = frozenset({40001, 40014, 41001, 42001})
# -1 system busy; 45009 / 45011 frequency limits; 45033 concurrency limit: worth a retry later.
BUSY_ERRCODES = frozenset({-1, 45009, 45011, 45033})
# gettoken: 40013 invalid corpid, 40001 invalid secret. Retrying cannot fix either.
CREDENTIAL_ERRCODES = frozenset({40001, 40013})


class WeComClient(ApiClient):
    """Calls qyapi with the corp id and one secret's token."""

    platform: ClassVar[Platform] = Platform.WECOM
    CREDENTIAL_NAME: ClassVar[str] = "secret"

    async def fetch_token(self, http: aiohttp.ClientSession, *, force: bool) -> tuple[str, float]:
        del force  # gettoken always returns the current token or a new one
        params = {"corpid": self._client_id, "corpsecret": self._client_secret}
        data = await self.request_json(http, "GET", "/cgi-bin/gettoken", params=params)
        errcode = errcode_of(data)
        if errcode in CREDENTIAL_ERRCODES:
            raise PlatformRejectedError(
                f"gettoken: bad corp id or {self.CREDENTIAL_NAME}{platform_says(data)}",
                self.platform,
                errcode,
            )
        self.raise_for_errcode(errcode, "gettoken" + platform_says(data))
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("gettoken: no access_token in answer", self.platform)
        expires_in = data.get("expires_in", 7200)
        return token, float(expires_in) if isinstance(expires_in, int | float) else 7200.0

    async def post(
        self, http: aiohttp.ClientSession, path: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """POST `payload` to `path` with the access token; the answer when errcode is 0."""

        async def call(token: str) -> dict[str, Any]:
            data = await self.request_json(
                http, "POST", path, params={"access_token": token}, json=payload
            )
            errcode = errcode_of(data)
            if errcode in TOKEN_ERRCODES:
                raise TokenRejectedError(errcode)
            # The errmsg says what to fix: 60020's names the address WeCom saw ("from ip").
            self.raise_for_errcode(errcode, path.removeprefix("/cgi-bin/") + platform_says(data))
            return data

        return await self.with_token(http, call)

    async def download_media(
        self,
        http: aiohttp.ClientSession,
        media_id: str,
        dest: Path,
        *,
        max_bytes: int,
        timeout_s: float,
    ) -> media.Fetched:
        """Save a file a user sent through 获取临时素材 ``GET /cgi-bin/media/get``
        (https://developer.work.weixin.qq.com/document/path/90254; 微信客服 media too):
        capped at `max_bytes`, within `timeout_s`; what was saved (the file's name comes in
        the answer's Content-Disposition only)."""

        async def call(token: str) -> media.Fetched:
            fetched = await media.fetch_from_api(
                http,
                self.api_base + "/cgi-bin/media/get",
                dest,
                params={"access_token": token, "media_id": media_id},
                platform=self.platform,
                max_bytes=max_bytes,
                timeout_s=timeout_s,
            )
            if fetched.error is not None:
                errcode = errcode_of(fetched.error)
                if errcode in TOKEN_ERRCODES:
                    raise TokenRejectedError(errcode)
                # An answer without an errcode is a refusal all the same: no file came.
                self.raise_for_errcode(errcode or -2, "media/get" + platform_says(fetched.error))
            return fetched

        return await self.with_token(http, call)

    async def upload_media(
        self,
        http: aiohttp.ClientSession,
        data: bytes,
        *,
        filename: str,
        content_type: str = "application/octet-stream",
        kind: str = "image",
    ) -> str:
        """Upload a file as temporary media (上传临时素材 ``POST /cgi-bin/media/upload``,
        https://developer.work.weixin.qq.com/document/path/90253); its media_id.

        What `bot simulate wecom --image` sends: the picture the callback then names.
        """

        return await media_upload.upload_temporary(
            self,
            http,
            data,
            filename=filename,
            content_type=content_type,
            kind=kind,
            token_errcodes=TOKEN_ERRCODES,
            busy_errcodes=BUSY_ERRCODES,
        )

    def raise_for_errcode(self, errcode: int, what: str) -> None:
        """Map an errcode to the project's errors (the one mapping for this client)."""
        if errcode == 0:
            return
        if errcode in BUSY_ERRCODES:
            raise PlatformUnavailableError(f"{what} busy", self.platform, errcode)
        raise PlatformRejectedError(f"{what} rejected", self.platform, errcode)
