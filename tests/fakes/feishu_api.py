"""A fake Feishu open API (tenant_access_token, message reply/create) in the real wire format.

Tokens are ``t-1``, ``t-2``… valid for 7200 s. A test can expire the current token (the next
call answers 99991663) and fail the next N calls with `fail_next` (429, 5xx, a code body).
Like Feishu, a repeated ``uuid`` within the hour returns the first message_id, posts nothing.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, record


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
                return self.by_uuid[uuid]
            msg_id = f"om_sent_{len(self.sent) + 1}"
            self.sent.append({**message, "message_id": msg_id})
            if uuid:
                self.by_uuid[uuid] = msg_id
            return msg_id


def _error(code: int, msg: str, status: int = 400) -> web.Response:
    # Feishu answers most API errors with HTTP 400 and a code in the body.
    return web.json_response({"code": code, "msg": msg}, status=status)


async def _injected(state: FakeState) -> web.Response | None:
    failure = state.take_failure()
    if failure is None:
        if state.delay_s:
            await asyncio.sleep(state.delay_s)
        return None
    if failure.delay_s:
        await asyncio.sleep(failure.delay_s)
    if failure.body is None:
        return web.Response(status=failure.status, text="injected failure")
    return web.json_response(failure.body, status=failure.status)


def _content_error(body: Any) -> tuple[int, str] | None:
    if not isinstance(body, dict) or body.get("msg_type") != "text":
        return 230001, "invalid msg_type"
    content = body.get("content")
    # content must be a JSON *string* (README §5.6).
    if not isinstance(content, str):
        return 230001, "content must be a string"
    try:
        text = json.loads(content).get("text")
    except (ValueError, AttributeError):
        return 230001, "content is not JSON"
    if not isinstance(text, str) or not text:
        return 230001, "empty text"
    if len(content.encode("utf-8")) > 150 * 1024:
        return 230025, "content too long"
    uuid = body.get("uuid")
    if uuid is not None and (not isinstance(uuid, str) or len(uuid) > 50):
        return 99992402, "uuid invalid"
    return None


def make_feishu_app(state: FeishuFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def tenant_token(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await _injected(state)) is not None:
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
        if (injected := await _injected(state)) is not None:
            return injected
        code = state.token_code(request.headers.get("Authorization", ""))
        if code:
            return _error(code, "Invalid access token for authorization.")
        problem = _content_error(rec.json)
        if problem is not None:
            return _error(*problem)
        message = {
            "msg_type": rec.json["msg_type"],
            "text": json.loads(rec.json["content"])["text"],
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

    app = web.Application()
    app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", tenant_token)
    app.router.add_post("/open-apis/im/v1/messages/{message_id}/reply", reply)
    app.router.add_post("/open-apis/im/v1/messages", create)
    return app
