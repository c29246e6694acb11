"""A fake DingTalk: sessionWebhook, oauth2/accessToken and the robot send OpenAPI.

Speaks the real wire format: the sessionWebhook answers ``{"errcode","errmsg"}`` (300001 when
the session is gone); the new OpenAPI answers errors as ``{"code","message","requestid"}``
with a 4xx status (401 ``InvalidAuthentication`` for a bad or expired token). Tokens are
``dt-tok-1``, ``dt-tok-2``… valid for 7200 s. `fail_next` injects failures on the OpenAPI.

Media: ``robot/messageFiles/download`` exchanges a known ``downloadCode`` (see `add_media`)
for a temporary ``downloadUrl`` under ``/media/…`` on this server (or `download_url_base`,
to point it elsewhere); an unknown code is a 400, as DingTalk answers an expired one.

AI cards: ``card/instances/createAndDeliver`` creates a card from a known template and
delivers it to a group or a 1:1 chat; ``PUT card/streaming`` sets one variable's full text
(each guid once; nothing after isFinalize); ``PUT card/instances`` updates variables by key
(flowStatus). Errors: 403 ``Forbidden.AccessDenied.AccessTokenPermissionDenied`` while
`card_permission` is off, 400 for an unknown template or outTrackId, a reused outTrackId or
guid; a `fail_next(after=True)` failure on createAndDeliver or card/streaming answers the
failure after the card took effect; throttling through `fail_next(status=429)` or a 403
QpsLimit code (`throttle_next`).
The exact codes of the last ones are not confirmed (docs/protocols/dingtalk.md#ai-cards).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, answer_failure, injected_failure, record

SESSION_PATH = "/robot/sendBySession"
TEMPLATE_ID = "fake-ai-card.schema"
NO_PERMISSION = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
QPS_LIMIT = "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi"


@dataclass
class FakeCard:
    """One card instance: where it went, its variables, and every streaming update."""

    out_track_id: str
    template_id: str
    space: str  # the openSpaceId it was delivered to
    at_users: dict[str, str]
    params: dict[str, str]
    # (guid, key, content, isFinalize, isError, monotonic time) per streaming update.
    updates: list[tuple[str, str, str, bool, bool, float]] = field(default_factory=list)
    finalized: bool = False
    created_at: float = field(default_factory=time.monotonic)  # shown in the chat

    def text(self, key: str = "content") -> str:
        return self.params.get(key, "")

    @property
    def flow_status(self) -> str:
        return self.params.get("flowStatus", "")


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
    # AI cards: the templates that exist, whether the app has the card permissions, and
    # the cards by outTrackId.
    templates: set[str] = field(default_factory=lambda: {TEMPLATE_ID})
    card_permission: bool = True
    cards: dict[str, FakeCard] = field(default_factory=dict)
    guids: set[str] = field(default_factory=set)
    undelivered: set[str] = field(default_factory=set)  # outTrackIds created in no chat
    throttled: int = 0  # the next N card calls answer 403 QpsLimit
    # Set: createAndDeliver creates the card but cannot deliver it (HTTP 200, success false
    # in deliverResults), as when the robot is not in the group.
    deliver_error: str = ""

    def throttle_next(self, n: int = 1) -> None:
        with self.lock:
            self.throttled += n

    def _throttled(self) -> bool:
        with self.lock:
            if self.throttled:
                self.throttled -= 1
                return True
            return False

    def card(self) -> FakeCard:
        """The one card (a test with one message)."""
        assert len(self.cards) == 1, self.cards
        return next(iter(self.cards.values()))

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

    def card_refusal(request: web.Request) -> web.Response | None:
        """What every card call checks first: token, permission, throttling."""
        if not state.token_ok(request.headers.get("x-acs-dingtalk-access-token", "")):
            return _api_error(401, "InvalidAuthentication", "不合法的access_token")
        if not state.card_permission:
            return _api_error(403, NO_PERMISSION, "没有调用该接口的权限")
        if state._throttled():
            return _api_error(403, QPS_LIMIT, "调用频率超限")
        return None

    async def card_call(request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        """An injected failure or a refusal, else the request's JSON body."""
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return {}, injected
        refused = card_refusal(request)
        return (rec.json if isinstance(rec.json, dict) else {}), refused

    async def create_and_deliver(request: web.Request) -> web.Response:
        # A failure with `after`: the card is created and delivered, the caller sees the
        # failure (an answer lost on the way back).
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and failure.after:
            answer = create(request, rec.json if isinstance(rec.json, dict) else {})
            return await answer_failure(state, failure) or answer
        if (injected := await answer_failure(state, failure)) is not None:
            return injected
        return create(request, rec.json if isinstance(rec.json, dict) else {})

    def create(request: web.Request, body: dict[str, Any]) -> web.Response:
        if (refused := card_refusal(request)) is not None:
            return refused
        track_id = body.get("outTrackId")
        template = body.get("cardTemplateId")
        space = body.get("openSpaceId")
        data = body.get("cardData")
        params = data.get("cardParamMap") if isinstance(data, dict) else None
        if not isinstance(track_id, str) or not track_id or not isinstance(params, dict):
            return _api_error(400, "param.outTrackIdEmpty", "outTrackId/cardData 为空")
        if template not in state.templates:
            return _api_error(400, "invalidParameter.cardTemplate.notFound", "不存在的卡片模板")
        if any(not isinstance(v, str) for v in params.values()):
            return _api_error(400, "invalidParameter", "cardParamMap 的值必须是字符串")
        if track_id in state.cards or track_id in state.undelivered:
            return _api_error(400, "invalidParameter.outTrackId.duplicate", "outTrackId 重复")
        if not isinstance(space, str):
            return _api_error(400, "param.openSpaceModelInvalid", "openSpaceId 无效")
        at_users: dict[str, str] = {}
        if space.startswith("dtv1.card//IM_GROUP."):
            deliver = body.get("imGroupOpenDeliverModel")
            if not isinstance(deliver, dict) or deliver.get("robotCode") != state.robot_code:
                return _api_error(400, "chatbotNotFound", "不存在的机器人")
            at_users = deliver.get("atUserIds") or {}
        elif space.startswith("dtv1.card//IM_ROBOT."):
            deliver = body.get("imRobotOpenDeliverModel")
            if not isinstance(deliver, dict) or deliver.get("spaceType") != "IM_ROBOT":
                return _api_error(400, "param.openSpaceModelInvalid", "imRobotOpenDeliverModel")
        else:
            return _api_error(400, "param.openSpaceModelInvalid", "openSpaceId 无效")
        with state.lock:
            state.cards[track_id] = FakeCard(
                out_track_id=track_id,
                template_id=str(template),
                space=space,
                at_users=dict(at_users),
                params=dict(params),
            )
        delivered: dict[str, Any] = {"spaceType": space.split("//")[1].split(".")[0]}
        if state.deliver_error:
            delivered.update(success=False, errorMsg=state.deliver_error)
            with state.lock:
                state.cards.pop(track_id)  # created, but in no chat: nobody sees it
                state.undelivered.add(track_id)
        else:
            delivered["success"] = True
        result = {"outTrackId": track_id, "deliverResults": [delivered]}
        return web.json_response({"success": True, "result": result})

    async def streaming(request: web.Request) -> web.Response:
        # A failure with `after`: the card shows the text, the caller sees the failure.
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and not failure.after:
            return await answer_failure(state, failure) or _api_error(500, "injected", "")
        answer = stream_into(request, rec.json if isinstance(rec.json, dict) else {})
        return await answer_failure(state, failure) or answer

    def stream_into(request: web.Request, body: dict[str, Any]) -> web.Response:
        if (refused := card_refusal(request)) is not None:
            return refused
        card = state.cards.get(str(body.get("outTrackId")))
        guid, key, content = body.get("guid"), body.get("key"), body.get("content")
        if card is None:
            return _api_error(400, "invalidParameter.outTrackId.notExist", "卡片不存在")
        if not isinstance(guid, str) or not guid or not isinstance(key, str):
            return _api_error(400, "param.empty", "guid/key 为空")
        if not isinstance(content, str) or body.get("isFull") is not True:
            return _api_error(400, "invalidParameter", "content/isFull")
        with state.lock:
            if guid in state.guids:
                return _api_error(400, "invalidParameter.guid.duplicate", "guid 重复")
            if card.finalized:
                return _api_error(400, "invalidParameter.card.finalized", "卡片已完成输出")
            state.guids.add(guid)
            final, error = body.get("isFinalize") is True, body.get("isError") is True
            card.updates.append((guid, key, content, final, error, time.monotonic()))
            card.params[key] = content
            card.finalized = final
        return web.json_response({"success": True, "result": True})

    async def update_instance(request: web.Request) -> web.Response:
        body, refused = await card_call(request)
        if refused is not None:
            return refused
        card = state.cards.get(str(body.get("outTrackId")))
        data = body.get("cardData")
        params = data.get("cardParamMap") if isinstance(data, dict) else None
        if card is None:
            return _api_error(400, "invalidParameter.outTrackId.notExist", "卡片不存在")
        if not isinstance(params, dict) or any(not isinstance(v, str) for v in params.values()):
            return _api_error(400, "invalidParameter", "cardParamMap")
        options = body.get("cardUpdateOptions")
        by_key = isinstance(options, dict) and options.get("updateCardDataByKey") is True
        with state.lock:
            if not by_key:
                card.params.clear()  # without updateCardDataByKey the whole map is replaced
            card.params.update(params)
        return web.json_response({"success": True, "result": True})

    app = web.Application()
    app.router.add_post("/v1.0/card/instances/createAndDeliver", create_and_deliver)
    app.router.add_put("/v1.0/card/streaming", streaming)
    app.router.add_put("/v1.0/card/instances", update_instance)
    app.router.add_post("/v1.0/robot/messageFiles/download", message_file)
    app.router.add_get("/media/{code}", media_file)
    app.router.add_post(SESSION_PATH, session_webhook)
    app.router.add_post("/v1.0/oauth2/accessToken", access_token)
    app.router.add_post("/v1.0/robot/oToMessages/batchSend", oto)
    app.router.add_post("/v1.0/robot/groupMessages/send", group)
    return app
