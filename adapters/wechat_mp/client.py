"""The Official Account's server API: the stable access token and 客服消息 (custom/send).

stable_token, not cgi-bin/token: it does not revoke tokens other processes hold, and
force_refresh (limited to 20 a day) is used only after a token was refused
(docs/protocols/wechat-mp.md#access-token). Official pages: 稳定版 access_token
https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/getStableAccessToken.html,
客服消息 https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import aiohttp

from adapters import media
from adapters.client import ApiClient, TokenRejectedError, platform_says
from adapters.http import errcode_of
from adapters.wechat import media_upload
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

# The token was refused: drop it, force a new one, retry once
# (docs/protocols/pitfalls.md#pitfall-4-several-workers-refreshing-one-token).
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})
# -1 system busy; 45009 / 45011 API frequency limits: worth a retry later.
BUSY_ERRCODES = frozenset({-1, 45009, 45011})
# 45015 outside the 48 h window, 45047 customer-service quota used up, 48001 no permission for
# the customer-service API (docs/protocols/wechat-mp.md#customer-service-messages): counted,
# never retried; 48001 defers the answer.
REJECTED_ERRCODES = frozenset({45015, 45047, 48001})


class WeChatMPClient(ApiClient):
    """Calls one Official Account's API with its stable access token."""

    platform: ClassVar[Platform] = Platform.WECHAT_MP

    async def fetch_token(self, http: aiohttp.ClientSession, *, force: bool) -> tuple[str, float]:
        body = {
            "grant_type": "client_credential",
            "appid": self._client_id,
            "secret": self._client_secret,
            "force_refresh": force,
        }
        data = await self.request_json(http, "POST", "/cgi-bin/stable_token", params={}, json=body)
        errcode = errcode_of(data)
        if errcode in BUSY_ERRCODES:
            raise PlatformUnavailableError(
                f"stable_token busy{platform_says(data)}", self.platform, errcode
            )
        if errcode:
            # 40013 bad appid, 40125 bad secret, 40164 IP not whitelisted: retrying cannot help.
            raise PlatformRejectedError(
                f"stable_token rejected{platform_says(data)}", self.platform, errcode
            )
        token = data.get("access_token")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("stable_token: no access_token in answer", self.platform)
        expires_in = data.get("expires_in", 7200)
        return token, float(expires_in) if isinstance(expires_in, int | float) else 7200.0

    async def send_text(self, reply: Reply, http: aiohttp.ClientSession) -> None:
        """One text through message/custom/send (the limits are the adapter's business)."""
        payload = {"touser": reply.recipient_id, "msgtype": "text", "text": {"content": reply.text}}

        async def call(token: str) -> None:
            data = await self.request_json(
                http,
                "POST",
                "/cgi-bin/message/custom/send",
                params={"access_token": token},
                json=payload,
            )
            errcode = errcode_of(data)
            if errcode == 0:
                return
            if errcode in TOKEN_ERRCODES:
                raise TokenRejectedError(errcode)
            if errcode in BUSY_ERRCODES:
                raise PlatformUnavailableError("message/custom/send busy", self.platform, errcode)
            if errcode in REJECTED_ERRCODES:
                log.warning(
                    "wechat_mp %s custom/send refused errcode=%s (%s)",
                    self.app,
                    errcode,
                    data.get("errmsg", ""),
                )
            raise PlatformRejectedError("message/custom/send rejected", self.platform, errcode)

        await self.with_token(http, call)
        log.info("wechat_mp %s sent reply to %s", self.app, reply.in_reply_to)

    async def download_media(
        self,
        http: aiohttp.ClientSession,
        media_id: str,
        dest: Path,
        *,
        max_bytes: int,
        timeout_s: float,
    ) -> media.Fetched:
        """Save a file a follower sent through 获取临时素材 ``GET /cgi-bin/media/get``
        (https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/Get_temporary_materials.html):
        capped at `max_bytes`, within `timeout_s`; what was saved."""

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
            if fetched.error is None:
                return fetched
            errcode = errcode_of(fetched.error)
            if errcode in TOKEN_ERRCODES:
                raise TokenRejectedError(errcode)
            what = "media/get" + platform_says(fetched.error)
            if errcode in BUSY_ERRCODES:
                raise PlatformUnavailableError(f"{what} busy", self.platform, errcode)
            # An answer without an errcode is a refusal all the same: no file came.
            raise PlatformRejectedError(f"{what} rejected", self.platform, errcode or -2)

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
        """Upload a file as temporary media (新增临时素材 ``POST /cgi-bin/media/upload``, form
        field ``media``, ``type`` image or voice,
        https://developers.weixin.qq.com/doc/offiaccount/Asset_Management/New_temporary_materials.html);
        its media_id, which media/get then serves for 3 days.

        What `bot simulate wechat_mp --image/--voice` sends: the file the message then names.
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
