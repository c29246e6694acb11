"""A fake Feishu open API (tenant_access_token, bot/v3/info, message reply/create), real format.

Tokens are ``t-1``, ``t-2``… valid for 7200 s. A test can expire the current token (the next
call answers 99991663) and fail the next N calls with `fail_next` (429, 5xx, a code body), or
every call for a while with `fail_from_now`; a failure with `after` posts the message first (a
lost answer).
Like Feishu, a repeated ``uuid`` within the hour returns the first message_id, posts nothing.
Each delivered message records ``text`` (a post flattened, ``<at>`` tags removed) and
``mentions`` (the open_ids @-mentioned); `bot_info_fail` makes bot/v3/info answer 500.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from adapters.feishu.events import post_to_text
from tests.fakes.base import (
    FakeState,
    RecordedRequest,
    answer_failure,
    injected_failure,
    record,
)

_POST_TAGS = frozenset({"text", "a", "at", "img", "media", "emotion", "md", "code_block", "hr"})
_AT_TAG = re.compile(r'<at user_id="([^"]*)">[^<]*</at>\s?')


@dataclass
class FeishuFakeState(FakeState):
    """Configured credentials, issued tokens and the messages posted, in order."""

    app_id: str = "cli_fake_app"
    app_secret: str = "fake-app-secret"
    # Every token is dead on arrival: the client must give up after one refresh.
    issue_expired: bool = False
    issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    by_uuid: dict[str, str] = field(default_factory=dict)
    repeats: int = 0  # posts not made again: their uuid was seen within the hour
    bot_open_id: str = "ou_fake_bot"
    bot_info_fail: bool = False
    # (message_id, file_key) -> (bytes, content type), served as the message's resources.
    resources: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    # message_id -> (msg_type, body.content JSON text): what GET im/v1/messages/{id} shows.
    messages: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add_resource(
        self, message_id: str, file_key: str, data: bytes, content_type: str = "image/png"
    ) -> None:
        with self.lock:
            self.resources[(message_id, file_key)] = (data, content_type)

    def issue(self) -> str:
        with self.lock:
            token = f"t-{len(self.issued) + 1}"
            self.issued.append(token)
            if self.issue_expired:
                self.expired.add(token)
            return token

    def expire_current(self) -> None:
        """The latest token now answers 99991663 (invalid tenant access token)."""
        with self.lock:
            self.expired.add(self.issued[-1])

    def token_code(self, authorization: str) -> int:
        token = authorization.removeprefix("Bearer ").strip()
        with self.lock:
            if not authorization.startswith("Bearer ") or not token:
                return 99991661
            if token in self.expired or token not in self.issued:
                return 99991663
            return 0

    def deliver(self, message: dict[str, Any]) -> str:
        with self.lock:
            uuid = message.get("uuid") or ""
            if uuid and uuid in self.by_uuid:
                self.repeats += 1
                return self.by_uuid[uuid]
            msg_id = f"om_sent_{len(self.sent) + 1}"
            self.sent.append({**message, "message_id": msg_id})
            if uuid:
                self.by_uuid[uuid] = msg_id
            return msg_id


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    # Feishu answers most API errors with HTTP 400 and a code in the body.
    return web.json_response({"code": code, "msg": msg}, status=status)


def _post_elements(post: Any) -> list[dict[str, Any]] | None:
    """Every element of a post body ({lang: {title, content}}), None when malformed."""
    if not isinstance(post, dict) or not post:
        return None
    elements: list[dict[str, Any]] = []
    for body in post.values():
        lines = body.get("content") if isinstance(body, dict) else None
        if not isinstance(lines, list) or not lines:
            return None
        for line in lines:
            if not isinstance(line, list):
                return None
            for element in line:
                if not isinstance(element, dict) or element.get("tag") not in _POST_TAGS:
                    return None
                elements.append(element)
    return elements


class ContentError(Exception):
    """A message body Feishu would refuse: ``code`` and message."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(code, msg)
        self.code = code
        self.msg = msg


def parse_content(msg_type: Any, content: Any) -> tuple[str, list[str]]:
    """``(text, mentioned open_ids)`` of a text or post body; ContentError when invalid."""
    # content must be a JSON *string* (docs/protocols/feishu.md#sending-and-replying).
    if not isinstance(content, str):
        raise ContentError(230001, "content must be a string")
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise ContentError(230001, "content is not JSON") from exc
    if msg_type == "text":
        text = data.get("text") if isinstance(data, dict) else None
        if not isinstance(text, str) or not text:
            raise ContentError(230001, "empty text")
        return _AT_TAG.sub("", text).strip(), _AT_TAG.findall(text)
    if msg_type == "post":
        elements = _post_elements(data)
        if elements is None:
            raise ContentError(230001, "invalid post content")
        mentions = [str(e.get("user_id")) for e in elements if e.get("tag") == "at"]
        return post_to_text(data, dict.fromkeys(mentions, "")).strip(), mentions
    raise ContentError(230001, "invalid msg_type")


def _content_error(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 230001, "invalid body"
    try:
        parse_content(body.get("msg_type"), body.get("content"))
    except ContentError as exc:
        return exc.code, exc.msg
    limit = 150 * 1024 if body.get("msg_type") == "text" else 30 * 1024
    if len(str(body.get("content")).encode("utf-8")) > limit:
        return 230025, "content too long"
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or len(uuid) > 50):
        return 99992402, "uuid invalid"
    return None


def make_feishu_app(state: FeishuFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def tenant_token(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        body = rec.json if isinstance(rec.json, dict) else {}
        if body.get("app_id") != state.app_id or body.get("app_secret") != state.app_secret:
            return _error(10003, "invalid param", status=200)
        token = state.issue()
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}
        )

    async def _post(request: web.Request, extra: dict[str, Any]) -> web.Response:
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and failure.after:
            answer = _deliver(request, rec, extra)  # posted, but the caller sees the failure
            return await answer_failure(state, failure) or answer
        if (injected := await answer_failure(state, failure)) is not None:
            return injected
        return _deliver(request, rec, extra)

    def _deliver(request: web.Request, rec: RecordedRequest, extra: dict[str, Any]) -> web.Response:
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        problem = _content_error(rec.json)
        if problem is not None:
            return _error(*problem)
        text, mentions = parse_content(rec.json["msg_type"], rec.json["content"])
        message = {
            "msg_type": rec.json["msg_type"],
            "text": text,
            "mentions": mentions,
            "content": rec.json["content"],
            "uuid": rec.json.get("uuid"),
            "token": request.headers["Authorization"].removeprefix("Bearer "),
            **extra,
        }
        msg_id = state.deliver(message)
        return web.json_response({"code": 0, "msg": "success", "data": {"message_id": msg_id}})

    async def reply(request: web.Request) -> web.Response:
        return await _post(request, {"reply_to": request.match_info["message_id"]})

    async def create(request: web.Request) -> web.Response:
        if request.query.get("receive_id_type") != "chat_id":
            return _error(99992402, "receive_id_type unsupported by the fake")
        body = await request.json()
        return await _post(request, {"receive_id": body.get("receive_id")})

    async def bot_info(request: web.Request) -> web.Response:
        await record(state, request)
        if state.bot_info_fail:
            return web.Response(status=500, text="injected failure")
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        bot = {
            "activate_status": 2,
            "app_name": "客服机器人",
            "avatar_url": "https://example.invalid/avatar.png",
            "ip_white_list": [],
            "open_id": state.bot_open_id,
        }
        return web.json_response({"code": 0, "msg": "ok", "bot": bot})

    async def resource(request: web.Request) -> web.StreamResponse:
        # 获取消息中的资源文件: the bytes, or a code as JSON with HTTP 400.
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        if request.query.get("type") not in ("image", "file"):
            return _error(234001, "Invalid request param.")
        key = (request.match_info["message_id"], request.match_info["file_key"])
        found = state.resources.get(key)
        if found is None:
            return _error(234003, "File not in msg.")
        data, content_type = found
        return web.Response(body=data, content_type=content_type)

    async def get_message(request: web.Request) -> web.Response:
        # 获取指定消息的内容: data.items[0] with msg_type and body.content (a JSON string).
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        message_id = request.match_info["message_id"]
        found = state.messages.get(message_id)
        if found is None:
            return _error(230001, "message not found")
        item = {"message_id": message_id, "msg_type": found[0], "body": {"content": found[1]}}
        return web.json_response({"code": 0, "msg": "success", "data": {"items": [item]}})

    app = web.Application()
    app.router.add_get("/open-apis/im/v1/messages/{message_id}", get_message)
    app.router.add_get("/open-apis/im/v1/messages/{message_id}/resources/{file_key}", resource)
    app.router.add_get("/open-apis/bot/v3/info", bot_info)
    app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", tenant_token)
    app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", reply)
    app.router.add_post("/open-apis/im/v1/messages", create)
    return app
