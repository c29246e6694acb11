"""A fake of WeCom's 智能机器人 response_url endpoint (`/cgi-bin/aibot/response`).

It speaks the wire format of 主动回复消息 (https://developer.work.weixin.qq.com/document/path/101138):
a POST of ``{"msgtype": "markdown", "markdown": {"content": ...}}`` to the URL a callback
carried, answered with HTTP 200 and an `errcode`. Each `response_code` is issued by `issue`,
takes one POST and expires after an hour. Which errcodes WeCom gives a used or expired URL
is not documented (docs/protocols/open-questions.md); the fake uses `USED_ERRCODE` and
`EXPIRED_ERRCODE`. `fail_next` injects 5xx, 429, slow answers or any errcode body.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.errors import DecryptError
from tests.fakes.base import FakeState, answer_failure, record

PATH = "/cgi-bin/aibot/response"
# Where the fake serves the encrypted pictures and files message callbacks name (WeCom's
# real URLs are on COS buckets; a GET answers the bytes, application/octet-stream).
MEDIA_PATH = "/aibot-media"
USED_ERRCODE = 600001  # not documented: a stand-in for "this response_url was used"
EXPIRED_ERRCODE = 600002  # not documented: a stand-in for "this response_url expired"
MAX_CONTENT_BYTES = 20480
LIFETIME_S = 3600.0


@dataclass
class AiBotFakeState(FakeState):
    """Issued response codes and the answers accepted through them."""

    base_url: str = ""
    issued: dict[str, float] = field(default_factory=dict)  # code -> issued at
    used: set[str] = field(default_factory=set)
    answers: list[dict[str, Any]] = field(default_factory=list)  # {"code", "content"}
    files: dict[str, bytes] = field(default_factory=dict)  # name -> the bytes served

    def add_file(self, name: str, sealed: bytes) -> str:
        """Serve `sealed` (a file as WeCom encrypts it) at the URL returned."""
        with self.lock:
            self.files[name] = sealed
        return f"{self.base_url}{MEDIA_PATH}/{name}"

    def issue(self, *, age_s: float = 0.0) -> str:
        """A fresh response_url, as a message callback would carry it (`age_s` old)."""
        code = secrets.token_urlsafe(12)
        with self.lock:
            self.issued[code] = time.time() - age_s
        return f"{self.base_url}{PATH}?response_code={code}"


STATE = web.AppKey("aibot_state", AiBotFakeState)


def _answer(errcode: int, errmsg: str) -> web.Response:
    return web.json_response({"errcode": errcode, "errmsg": errmsg})


async def _respond(request: web.Request) -> web.Response:
    state = request.app[STATE]
    rec = await record(state, request)
    failed = await answer_failure(state, state.take_failure())
    if failed is not None:
        return failed
    code = request.query.get("response_code", "")
    body = rec.json if isinstance(rec.json, dict) else {}
    markdown = body.get("markdown")
    content = markdown.get("content") if isinstance(markdown, dict) else None
    if body.get("msgtype") != "markdown" or not isinstance(content, str):
        return _answer(40008, "invalid message type")
    if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        return _answer(40058, "content exceed max length")
    with state.lock:
        issued = state.issued.get(code)
        if issued is None:
            return _answer(EXPIRED_ERRCODE, "invalid response_code")
        if time.time() - issued > LIFETIME_S:
            return _answer(EXPIRED_ERRCODE, "response_code expired")
        if code in state.used:
            return _answer(USED_ERRCODE, "response_code already used")
        state.used.add(code)
        state.answers.append({"code": code, "content": content})
    return _answer(0, "ok")


async def _file(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    await record(state, request)
    failed = await answer_failure(state, state.take_failure())
    if failed is not None:
        return failed
    with state.lock:
        sealed = state.files.get(request.match_info["name"])
    if sealed is None:
        return web.Response(status=404, text="no such file")
    return web.Response(body=sealed, content_type="application/octet-stream")


def make_aibot_app(state: AiBotFakeState) -> web.Application:
    app = web.Application()
    app[STATE] = state
    app.router.add_post(PATH, _respond)
    app.router.add_get(MEDIA_PATH + "/{name}", _file)
    return app


def another_key(decrypt: Callable[[bytes], object], *, opens: bool) -> bytes:
    """The first of a fixed series of 32-byte keys for which `decrypt(key)` passes the padding
    check (`opens`: the file comes out as noise) or raises DecryptError. A random wrong key
    does either by chance (about one in 256 passes), so a test that means one chooses it."""
    for n in range(100_000):
        key = hashlib.sha256(b"another-key-%d" % n).digest()
        try:
            decrypt(key)
            opened = True
        except DecryptError:
            opened = False
        if opened == opens:
            return key
    raise AssertionError("no such key among 100,000")
