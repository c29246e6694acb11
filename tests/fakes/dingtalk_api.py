"""A fake DingTalk: sessionWebhook, oauth2/accessToken and the robot send OpenAPI.

Speaks the real wire format: the sessionWebhook answers ``{"errcode","errmsg"}`` (300001 when
the session is gone); the new OpenAPI answers errors as ``{"code","message","requestid"}``
with a 4xx status (401 ``InvalidAuthentication`` for a bad or expired token). Tokens are
``dt-tok-1``, ``dt-tok-2``… valid for 7200 s. `fail_next` injects failures on the OpenAPI.

Media: ``robot/messageFiles/download`` exchanges a known ``downloadCode`` (see `add_media`)
for a temporary ``downloadUrl`` under ``/media/…`` on this server (or `download_url_base`,
to point it elsewhere); an unknown code is a 400, as DingTalk answers an expired one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, injected_failure, record

SESSION_PATH = "/robot/sendBySession"


@dataclass
class DingTalkFakeState(FakeState):
    """Configured credentials, issued tokens and every message delivered, in order."""

    app_key: str = "ding-fake-app"
    app_secret: str = "fake-dingtalk-secret"
    robot_code: str = "ding-fake-app"
    # The sessionWebhook answers 300001 (session gone) while this is set.
    session_gone: bool = False
    issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    # One entry per delivered message: {"via": "session"|"oto"|"group", ...}.
    sent: list[dict[str, Any]] = field(default_factory=list)
    # downloadCode -> (bytes, content type) served at /media/<code>.
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # When set, downloadUrl points at this base instead of this server (an SSRF probe).
    download_url_base: str = ""

    def add_media(self, code: str, data: bytes, content_type: str = "image/jpeg") -> None:
        with self.lock:
            self.media[code] = (data, content_type)

    def issue(self) -> str:
        with self.lock:
            token = f"dt-tok-{len(self.issued) + 1}"
            self.issued.append(token)
            return token

    def expire_current(self) -> None:
        """The latest token now answers 401 InvalidAuthentication."""
        with self.lock:
            self.expired.add(self.issued[-1])

    def token_ok(self, token: str) -> bool:
        with self.lock:
            return token in self.issued and token not in self.expired

    def deliver(self, message: dict[str, Any]) -> str:
        with self.lock:
            key = f"pqk-{len(self.sent) + 1}"
            self.sent.append({**message, "processQueryKey": key})
            return key

    def session_url(self, base: str, session: str = "s1") -> str:
        return f"{base}{SESSION_PATH}?session={session}"


def _api_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"code": code, "message": message, "requestid": "fake-request-id"}, status=status
    )


def _markdown_param(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict) or body.get("msgKey") != "sampleMarkdown":
        return None
    try:
        param = json.loads(body.get("msgParam", ""))
    except (TypeError, ValueError):
        return None
    if not isinstance(param, dict) or not param.get("title") or not param.get("text"):
        return None
    return param


def make_dingtalk_app(state: DingTalkFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def session_webhook(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if state.session_gone:
            return web.json_response({"errcode": 300001, "errmsg": "session 不存在"})
        body = rec.json
        markdown = body.get("markdown") if isinstance(body, dict) else None
        if body.get("msgtype") != "markdown" or not isinstance(markdown, dict):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 markdown"})
        if not markdown.get("title") or not markdown.get("text"):
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 title/text"})
        at = body.get("at") if isinstance(body.get("at"), dict) else {}
        state.deliver(
            {
                "via": "session",
                "session": request.query.get("session", ""),
                "title": markdown["title"],
                "text": markdown["text"],
                "at": at.get("atUserIds", []),
            }
        )
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def access_token(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        body = rec.json if isinstance(rec.json, dict) else {}
        if body.get("appKey") != state.app_key or body.get("appSecret") != state.app_secret:
            return _api_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
        return web.json_response({"accessToken": state.issue(), "expireIn": 7200})

    async def robot_send(request: web.Request, via: str) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        if not state.token_ok(request.headers.get("x-acs-dingtalk-access-token", "")):
            return _api_error(401, "InvalidAuthentication", "不合法的access_token")
        body = rec.json if isinstance(rec.json, dict) else {}
        param = _markdown_param(body)
        if body.get("robotCode") != state.robot_code or param is None:
            return _api_error(400, "invalidParameter", "robotCode/msgKey/msgParam invalid")
        message: dict[str, Any] = {"via": via, "title": param["title"], "text": param["text"]}
        if via == "oto":
            users = body.get("userIds")
            if not isinstance(users, list) or not users:
                return _api_error(400, "invalidParameter", "userIds required")
            message["userIds"] = users
        else:
            conversation = body.get("openConversationId")
            if not isinstance(conversation, str) or not conversation:
                return _api_error(400, "invalidParameter", "openConversationId required")
            message["openConversationId"] = conversation
        key = state.deliver(message)
        answer: dict[str, Any] = {"processQueryKey": key}
        if via == "oto":
            answer.update({"invalidStaffIdList": [], "flowControlledStaffIdList": []})
        return web.json_response(answer)

    async def oto(request: web.Request) -> web.Response:
        return await robot_send(request, "oto")

    async def group(request: web.Request) -> web.Response:
        return await robot_send(request, "group")

    async def message_file(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        if not state.token_ok(request.headers.get("x-acs-dingtalk-access-token", "")):
            return _api_error(401, "InvalidAuthentication", "不合法的access_token")
        body = rec.json if isinstance(rec.json, dict) else {}
        code = body.get("downloadCode")
        if body.get("robotCode") != state.robot_code or not isinstance(code, str) or not code:
            return _api_error(400, "invalidParameter", "robotCode/downloadCode invalid")
        if code not in state.media:
            return _api_error(400, "invalidParameter.downloadCode", "downloadCode有误或已过期")
        base = state.download_url_base or f"{request.scheme}://{request.host}"
        return web.json_response({"downloadUrl": f"{base}/media/{code}?Expires=600"})

    async def media_file(request: web.Request) -> web.Response:
        await record(state, request)
        found = state.media.get(request.match_info["code"])
        if found is None:
            return web.Response(status=404, text="NoSuchKey")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    app = web.Application()
    app.router.add_post("/v1.0/robot/messageFiles/download", message_file)
    app.router.add_get("/media/{code}", media_file)
    app.router.add_post(SESSION_PATH, session_webhook)
    app.router.add_post("/v1.0/oauth2/accessToken", access_token)
    app.router.add_post("/v1.0/robot/oToMessages/batchSend", oto)
    app.router.add_post("/v1.0/robot/groupMessages/send", group)
    return app
