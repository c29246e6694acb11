"""A fake WeChat Official Account API (stable_token, message/custom/send, media/get and
media/upload), real wire format.

Tokens are ``mp-tok-1``, ``mp-tok-2``… valid for 7200 s. ``stable_token`` returns the current
token unless ``force_refresh`` is true, as the real endpoint does. A test can revoke the
current token (the next send answers 40001), queue errcodes that custom/send answers with
(`reject_sends`, e.g. 45015 / 45047 / 48001) and fail the next N calls with `fail_next`.
``refuse_custom_api = True`` plays an account without 客服消息 permission: every custom/send
answers 48001. With `untrusted_ip` set, stable_token answers 40164 naming that address,
as for a server outside the account's IP whitelist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.base import FakeState, RecordedRequest, injected_failure, record

ERRMSGS = {
    40001: "invalid credential, access_token is invalid or not latest",
    40013: "invalid appid",
    40125: "invalid appsecret",
    42001: "access_token expired",
    40007: "invalid media_id",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    48001: "api unauthorized",
}


@dataclass
class WeChatMPFakeState(FakeState):
    """Configured credentials, issued tokens, queued send errcodes and messages delivered."""

    app_id: str = "wx-fake-app"
    secret: str = "fake-secret"
    issued: list[str] = field(default_factory=list)
    revoked: set[str] = field(default_factory=set)
    send_errcodes: list[int] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    refuse_custom_api: bool = False
    untrusted_ip: str = ""  # calls come "from" this address, not in the IP whitelist
    # media_id -> (bytes, content type) served by media/get (获取临时素材).
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)

    def token(self, *, force: bool) -> str:
        with self.lock:
            if force or not self.issued or self.issued[-1] in self.revoked:
                self.issued.append(f"mp-tok-{len(self.issued) + 1}")
            return self.issued[-1]

    def revoke_current(self) -> None:
        """The latest token now answers 40001, as after a fetch elsewhere."""
        with self.lock:
            self.revoked.add(self.issued[-1])

    def reject_sends(self, *errcodes: int) -> None:
        """The next custom/send calls answer these errcodes, one each, in order."""
        with self.lock:
            self.send_errcodes.extend(errcodes)

    def take_send_errcode(self) -> int:
        with self.lock:
            return self.send_errcodes.pop(0) if self.send_errcodes else 0

    def token_errcode(self, token: str) -> int:
        with self.lock:
            if not token or token in self.revoked or token not in self.issued:
                return 40001
            return 0

    def deliver(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.sent.append(message)


def _error(errcode: int) -> web.Response:
    # WeChat answers API errors with HTTP 200 and an errcode.
    return web.json_response({"errcode": errcode, "errmsg": ERRMSGS.get(errcode, "error")})


def _content(body: Any) -> str | None:
    if not isinstance(body, dict) or body.get("msgtype") != "text":
        return None
    if not isinstance(body.get("touser"), str) or not body["touser"]:
        return None
    text = body.get("text")
    content = text.get("content") if isinstance(text, dict) else None
    return content if isinstance(content, str) and content else None


def make_wechat_mp_app(state: WeChatMPFakeState) -> web.Application:
    """The fake's aiohttp app; serve it with tests.fakes.base.serve."""

    async def stable_token(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        body = rec.json if isinstance(rec.json, dict) else {}
        if body.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if body.get("appid") != state.app_id:
            return _error(40013)
        if body.get("secret") != state.secret:
            return _error(40125)
        if state.untrusted_ip:
            ip = state.untrusted_ip
            said = f"invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist rid: 6750c1f0-fake"
            return web.json_response({"errcode": 40164, "errmsg": said})
        token = state.token(force=body.get("force_refresh") is True)
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def custom_send(request: web.Request) -> web.Response:
        rec = await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        token = request.query.get("access_token", "")
        if errcode := state.token_errcode(token):
            return _error(errcode)
        if state.refuse_custom_api:
            return _error(48001)
        if errcode := state.take_send_errcode():
            return _error(errcode)
        content = _content(rec.json)
        if content is None:
            return web.json_response({"errcode": 44002, "errmsg": "empty post data"})
        if len(content.encode("utf-8")) > 2048:
            return web.json_response({"errcode": 45002, "errmsg": "content size out of limit"})
        state.deliver({"touser": rec.json["touser"], "content": content, "token": token})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def media_get(request: web.Request) -> web.Response:
        await record(state, request)
        if (injected := await injected_failure(state)) is not None:
            return injected
        if errcode := state.token_errcode(request.query.get("access_token", "")):
            return _error(errcode)
        found = state.media.get(request.query.get("media_id", ""))
        if found is None:
            return _error(40007)
        return web.Response(body=found[0], content_type=found[1])

    async def media_upload(request: web.Request) -> web.Response:
        # 新增临时素材: multipart, the file in the field "media"; the type in the query.
        state.record(
            RecordedRequest(
                request.method, request.path, dict(request.query),
                {k.lower(): v for k, v in request.headers.items()}, b"",
            )
        )  # fmt: skip
        if (injected := await injected_failure(state)) is not None:
            return injected
        if errcode := state.token_errcode(request.query.get("access_token", "")):
            return _error(errcode)
        kind = request.query.get("type", "")
        if kind not in ("image", "voice", "video", "thumb"):
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        form = await request.post()
        field = form.get("media")
        if not isinstance(field, web.FileField):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        data = field.file.read()
        with state.lock:
            media_id = f"MP_UPLOADED_{len(state.media) + 1}"
            state.media[media_id] = (data, field.content_type)
        return web.json_response({"type": kind, "media_id": media_id, "created_at": 1700000000})

    app = web.Application()
    app.router.add_get("/cgi-bin/media/get", media_get)
    app.router.add_post("/cgi-bin/media/upload", media_upload)
    app.router.add_post("/cgi-bin/stable_token", stable_token)
    app.router.add_post("/cgi-bin/message/custom/send", custom_send)
    return app
