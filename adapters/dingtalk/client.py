"""DingTalk's robot APIs: the app access token, sending as the robot, media download codes.

New OpenAPI (api.dingtalk.com) with the `x-acs-dingtalk-access-token` header; errors come as
`{"code","message","requestid"}` with a 4xx/5xx status
(docs/protocols/dingtalk.md#robot-openapi-and-access-token). A message's `sessionWebhook`
(oapi) answers with an errcode and needs no token (#replying-through-sessionwebhook).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, ClassVar

import aiohttp

from adapters.client import ApiClient, TokenRejectedError
from adapters.http import post_read, request_decoded
from bot.domain import Platform, Reply
from bot.errors import PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
# sessionWebhook answers 300001 "session 不存在" once the session is gone.
_SESSION_GONE_ERRCODES = frozenset({300001})
# 130101: "send too fast" (robot flow control); worth a retry later.
_WEBHOOK_BUSY_ERRCODES = frozenset({130101})
_TITLE_CHARS = 20
_MARKDOWN_MARKS = re.compile(r"^[\s#>*\-+`]+|[*`_]+")


class SessionGoneError(Exception):
    """The sessionWebhook no longer exists (the caller falls back to the OpenAPI)."""


def markdown_title(text: str) -> str:
    """The markdown title DingTalk shows in notifications: the first line, bare and short."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    title = _MARKDOWN_MARKS.sub("", first).strip()
    if len(title) > _TITLE_CHARS:
        title = title[: _TITLE_CHARS - 1] + "…"
    return title or "回复"


class DingTalkClient(ApiClient):
    """Calls one DingTalk app's robot APIs with its access token."""

    platform: ClassVar[Platform] = PLATFORM

    # Internal-app robots use the AppKey as their robot code unless the app names another
    # (docs/protocols/dingtalk.md#sending-as-the-robot).
    _robot_code: str = ""

    @property
    def robot_code(self) -> str:
        return self._robot_code or self._client_id

    async def fetch_token(self, http: aiohttp.ClientSession, *, force: bool) -> tuple[str, float]:
        del force  # accessToken always answers the current token or a new one
        payload = {"appKey": self._client_id, "appSecret": self._client_secret}
        try:
            data = await self._call(http, "/v1.0/oauth2/accessToken", payload, token=None)
        except TokenRejectedError as exc:
            raise PlatformRejectedError(
                f"accessToken: bad app key or secret ({exc.code})", PLATFORM
            ) from exc
        token = data.get("accessToken")
        if not isinstance(token, str) or not token:
            raise PlatformUnavailableError("accessToken: no accessToken in answer", PLATFORM)
        expire_in = data.get("expireIn", 7200)
        return token, float(expire_in) if isinstance(expire_in, int | float) else 7200.0

    async def send_webhook(self, http: aiohttp.ClientSession, url: str, reply: Reply) -> None:
        staff_id = reply.route.get("senderStaffId", "")
        text = reply.text
        payload: dict[str, Any] = {
            "msgtype": "markdown",
            "markdown": {"title": markdown_title(text), "text": text},
        }
        if reply.is_group and staff_id:
            # The at list only notifies; the "@staffId" in the text is what renders the mention.
            payload["markdown"]["text"] = f"@{staff_id} {text}"
            payload["at"] = {"atUserIds": [staff_id]}
        # The URL holds a session credential: errors name it only as "sessionWebhook".
        what = "sessionWebhook"
        data = await request_decoded(
            http,
            "POST",
            url,
            platform=PLATFORM,
            what=what,
            client_timeout=self._timeout,
            json=payload,
        )
        errcode = data.get("errcode", 0) if isinstance(data, dict) else -1
        if errcode == 0:
            return
        if errcode in _SESSION_GONE_ERRCODES:
            raise SessionGoneError
        if errcode in _WEBHOOK_BUSY_ERRCODES or not isinstance(errcode, int):
            raise PlatformUnavailableError(f"{what} busy", PLATFORM, errcode=_int(errcode))
        raise PlatformRejectedError(f"{what} rejected", PLATFORM, errcode=errcode)

    async def send_openapi(self, http: aiohttp.ClientSession, reply: Reply) -> str:
        robot_code = reply.route.get("robotCode") or self.robot_code
        msg_param = json.dumps(
            {"title": markdown_title(reply.text), "text": reply.text}, ensure_ascii=False
        )
        if reply.is_group:
            path = "/v1.0/robot/groupMessages/send"
            payload: dict[str, Any] = {
                "robotCode": robot_code,
                "openConversationId": reply.route.get("conversationId") or reply.conversation_id,
                "msgKey": "sampleMarkdown",
                "msgParam": msg_param,
            }
        else:
            staff_id = reply.route.get("senderStaffId") or reply.recipient_id
            path = "/v1.0/robot/oToMessages/batchSend"
            payload = {
                "robotCode": robot_code,
                "userIds": [staff_id],
                "msgKey": "sampleMarkdown",
                "msgParam": msg_param,
            }
        data = await self.post(http, path, payload)
        if data.get("flowControlledStaffIdList"):
            raise PlatformUnavailableError(f"{path} flow-controlled", PLATFORM)
        if data.get("invalidStaffIdList"):
            raise PlatformRejectedError(f"{path}: recipient invalid", PLATFORM)
        return str(data.get("processQueryKey", ""))

    async def download_url(
        self, http: aiohttp.ClientSession, download_code: str, robot_code: str = ""
    ) -> str:
        """Exchange a message's downloadCode for its temporary downloadUrl.

        docs/protocols/dingtalk.md#media-download
        """
        payload = {"downloadCode": download_code, "robotCode": robot_code or self.robot_code}
        data = await self.post(http, "/v1.0/robot/messageFiles/download", payload)
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise PlatformRejectedError("messageFiles/download: no downloadUrl", PLATFORM)
        return url

    async def post(self, http: aiohttp.ClientSession, path: str, payload: Any) -> dict[str, Any]:
        """POST to the OpenAPI with the app's access token, refreshed once if refused."""
        return await self.call(http, "POST", path, payload)

    async def call(
        self, http: aiohttp.ClientSession, method: str, path: str, payload: Any
    ) -> dict[str, Any]:
        """Any method (the AI cards' PUTs) with the access token, refreshed once like `post`."""

        async def call(token: str) -> dict[str, Any]:
            return await self._call(http, path, payload, token=token, method=method)

        return await self.with_token(http, call)

    async def _call(
        self,
        http: aiohttp.ClientSession,
        path: str,
        payload: Any,
        *,
        token: str | None,
        method: str = "POST",
    ) -> dict[str, Any]:
        """Call the new OpenAPI; the one mapping of its status/code to our errors."""
        headers = {"x-acs-dingtalk-access-token": token} if token is not None else {}
        status, raw = await post_read(
            http,
            self._api_base + path,
            platform=PLATFORM,
            what=path,
            client_timeout=self._timeout,
            json=payload,
            headers=headers,
            method=method,
        )
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = None
        # Errors come as {"code","message","requestid"} with a 4xx/5xx status
        # (docs/protocols/dingtalk.md#robot-openapi-and-access-token).
        code = str(data.get("code", "")) if isinstance(data, dict) else ""
        if status >= 500 or status == 429 or _is_throttle_code(code):
            raise PlatformUnavailableError(f"{path} answered {code}", PLATFORM, status=status)
        if status in (401, 403) and (status == 401 or _is_token_code(code)):
            raise TokenRejectedError(code or str(status))
        if status != 200:
            raise PlatformRejectedError(
                f"{path} answered {code}", PLATFORM, errcode=code or None, status=status
            )
        if not isinstance(data, dict):
            # A proxy's HTML page, say: not DingTalk's answer, so try again later.
            raise PlatformUnavailableError(f"{path} answered non-object JSON", PLATFORM)
        return data


def _is_throttle_code(code: str) -> bool:
    # Flow control may come as a 403 with a Forbidden.AccessDenied.QpsLimit… code, not only
    # as a 429 [?] (docs/protocols/dingtalk.md#ai-cards): a retry later, never a refusal.
    return "qpslimit" in code.lower()


def _is_token_code(code: str) -> bool:
    lowered = code.lower()
    # Forbidden.AccessDenied.AccessTokenPermissionDenied names a token but is a missing
    # permission (docs/troubleshooting.md): a new token cannot fix it.
    if "accessdenied" in lowered:
        return False
    return "token" in lowered or "authentication" in lowered


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None
