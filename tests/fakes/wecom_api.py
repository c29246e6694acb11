"""A fake WeCom API (gettoken, message/send) speaking the real wire format.

Tokens are ``tok-1``, ``tok-2``… valid for 7200 s. A test can expire or invalidate the current
token (the next send answers 42001 / 40014) and fail the next N calls with `fail_next`, or
every call for a while with `fail_from_now`; a failure with `after` delivers the message first
(a lost answer), so a resend shows whether `enable_duplicate_check` drops it.

Trusted IPs: with `untrusted_ip` set, every call but gettoken answers 60020 naming that
address in the errmsg ("… from ip: x.x.x.x, more info at …"), as WeCom does for a host
outside the app's 企业可信IP. `agent/get` answers the app's profile (40056 for another agent).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import (
    FakeState,
    RecordedRequest,
    answer_failure,
    injected_failure,
    record,
)
from tests.fakes.openai_server import pause


@dataclass
class WeComFakeState(FakeState):
    """Configured credentials, issued tokens and the messages delivered, in order."""

    corp_id: str = "ww-fake-corp"
    secret: str = "fake-secret"
    agent_id: int = 1000002
    # Every token is dead on arrival: the client must give up after one refresh.
    issue_expired: bool = False
    issued: list[str] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)
    # (touser, content) -> (when, msgid) of the last delivery, for enable_duplicate_check.
    recent: dict[tuple[str, str], tuple[float, str]] = field(default_factory=dict)
    suppressed: int = 0
    # media_id -> (bytes, content type) served by media/get (see `add_media`).
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    # media_id -> the Content-Disposition media/get sends with it (see `add_media`).
    media_names: dict[str, str] = field(default_factory=dict)
    media_delay_s: float = 0.0  # media/get waits this long first: a slow download
    # Calls come "from" this address and it is not a trusted IP: 60020 (gettoken still works).
    untrusted_ip: str = ""
    agent_name: str = "客服助手"

    def ip_refusal(self) -> web.Response | None:
        if not self.untrusted_ip:
            return None
        return _error(
            60020,
            f"not allow to access from your ip, hint: [{int(time.time())}-fake], from ip: "
            f"{self.untrusted_ip}, more info at https://open.work.weixin.qq.com/devtool/query?e=60020",
        )

    def add_media(
        self,
        media_id: str,
        data: bytes,
        content_type: str = "image/jpeg",
        *,
        name: str = "media.jpg",
        disposition: str = "",
    ) -> None:
        """Serve `data` as `media_id`, named as WeCom does: `name` in quotes as raw UTF-8
        (``attachment; filename="合同.pdf"``), or `disposition`, the whole header, as given."""
        with self.lock:
            self.media[media_id] = (data, content_type)
            self.media_names[media_id] = disposition or f'attachment; filename="{name}"'

    def issue(self) -> str:
        with self.lock:
            token = f"tok-{len(self.issued) + 1}"
            self.issued.append(token)
            if self.issue_expired:
                self.expired.add(token)
            return token

    def expire_current(self) -> None:
        """The latest token now answers 42001 (expired)."""
        with self.lock:
            self.expired.add(self.issued[-1])

    def revoke_current(self) -> None:
        """The latest token now answers 40014 (invalid), as when WeCom drops it early."""
        with self.lock:
            self.revoked.add(self.issued[-1])

    def token_errcode(self, token: str) -> int:
        with self.lock:
            if not token:
                return 41001
            if token in self.expired:
                return 42001
            if token in self.revoked or token not in self.issued:
                return 40014
            return 0

    def deliver(self, message: dict[str, Any]) -> str:
        with self.lock:
            msg_id = f"msg-{len(self.sent) + 1}"
            self.sent.append({**message, "msgid": msg_id})
            return msg_id


def _error(errcode: int, errmsg: str) -> web.Response:
    # WeCom answers API errors with HTTP 200 and an errcode.
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


def _message_error(body: Any, agent_id: int) -> tuple[int, str] | None:
    if not isinstance(body, dict):
        return 40058, "invalid json body"
    if not isinstance(body.get("touser"), str) or not body["touser"]:
        return 40058, "touser required"
    if body.get("msgtype") != "text":
        return 40008, "invalid message type"
    if body.get("agentid") != agent_id:
        return 40056, "invalid agentid"
    text = body.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    if not isinstance(content, str) or not content:
        return 44004, "empty content"
    # Real WeCom truncates past 2048 bytes silently; the fake refuses so tests notice.
    if len(content.encode("utf-8")) > 2048:
        return 45002, "content size out of limit"
    return None


def make_wecom_app(state: WeComFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def gettoken(request: web.Request) -> web.Response:
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        if request.query.get("corpid") != state.corp_id:
            return _error(40013, "invalid corpid")
        if request.query.get("corpsecret") != state.secret:
            return _error(40001, "invalid credential")
        token = state.issue()
        return web.json_response(
            {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200}
        )

    async def message_send(request: web.Request) -> web.Response:
        rec = await record(state, request)
        failure = state.take_failure()
        if failure is not None and failure.after:
            answer = _send(request, rec)  # delivered, but the caller sees the failure instead
            return await answer_failure(state, failure) or answer
        if (injected := await answer_failure(state, failure)) is not None:
            return injected
        return _send(request, rec)

    def _send(request: web.Request, rec: RecordedRequest) -> web.Response:
        errcode = state.token_errcode(request.query.get("access_token", ""))
        if errcode:
            return _error(errcode, "access_token invalid, missing or expired")
        if (refused := state.ip_refusal()) is not None:
            return refused
        problem = _message_error(rec.json, state.agent_id)
        if problem is not None:
            return _error(*problem)
        body, now = rec.json, time.monotonic()
        # enable_duplicate_check: the same content to the same user within the interval is
        # answered ok (with the first msgid) and not delivered again.
        seen = (body["touser"], body["text"]["content"])
        earlier = state.recent.get(seen)
        window = int(body.get("duplicate_check_interval") or 1800)
        if body.get("enable_duplicate_check") == 1 and earlier and now - earlier[0] < window:
            state.suppressed += 1
            msg_id = earlier[1]
        else:
            msg_id = state.deliver(
                {
                    "touser": body["touser"],
                    "content": body["text"]["content"],
                    "token": request.query["access_token"],
                }
            )
            state.recent[seen] = (now, msg_id)
        return web.Response(
            text=json.dumps({"errcode": 0, "errmsg": "ok", "invaliduser": "", "msgid": msg_id}),
            # Not application/json on purpose: the client must read JSON whatever the label.
            content_type="text/plain",
        )

    async def media_get(request: web.Request) -> web.StreamResponse:
        # 获取临时素材: the file itself, or an errcode as JSON (text/plain, like WeCom).
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        await pause(request, state.media_delay_s)
        errcode = state.token_errcode(request.query.get("access_token", ""))
        if errcode:
            return _error(errcode, "access_token invalid, missing or expired")
        if (refused := state.ip_refusal()) is not None:
            return refused
        media_id = request.query.get("media_id", "")
        found = state.media.get(media_id)
        if found is None:
            return _error(40007, "invalid media_id")
        data, content_type = found
        named = state.media_names.get(media_id, 'attachment; filename="media.jpg"')
        return web.Response(
            body=data, content_type=content_type, headers={"Content-Disposition": named}
        )

    async def agent_get(request: web.Request) -> web.Response:
        # 获取指定的应用详情: the app's profile; changes nothing.
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        errcode = state.token_errcode(request.query.get("access_token", ""))
        if errcode:
            return _error(errcode, "access_token invalid, missing or expired")
        if (refused := state.ip_refusal()) is not None:
            return refused
        if request.query.get("agentid") != str(state.agent_id):
            return _error(40056, "invalid agentid")
        profile = {
            "errcode": 0,
            "errmsg": "ok",
            "agentid": state.agent_id,
            "name": state.agent_name,
            "square_logo_url": "https://example.invalid/logo.png",
            "description": "",
            "allow_userinfos": {"user": []},
            "allow_partys": {"partyid": [1]},
            "allow_tags": {"tagid": []},
            "close": 0,
            "redirect_domain": "",
            "report_location_flag": 0,
            "isreportenter": 0,
            "home_url": "",
        }
        return web.json_response(profile)

    app = web.Application()
    app.router.add_get("/cgi-bin/agent/get", agent_get)
    app.router.add_get("/cgi-bin/media/get", media_get)
    app.router.add_get("/cgi-bin/gettoken", gettoken)
    app.router.add_post("/cgi-bin/message/send", message_send)
    return app
