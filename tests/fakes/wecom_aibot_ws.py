"""A fake WeCom 智能机器人 long-connection gateway (wss://openws.work.weixin.qq.com).

Speaks the JSON frames of docs/protocols/wecom-aibot.md#long-connection-mode: the first frame
must be ``aibot_subscribe`` with the right bot id and secret (else errcode 853000 and the
socket closes); every ``ping`` is answered with errcode 0 under its req_id, unless
`answer_pings` is off (a gateway gone quiet); ``aibot_respond_msg`` frames are recorded and
acknowledged; a req_id the gateway never issued is refused (errcode 846605 here, the real
code is unconfirmed), as is one past its life (`expire` a callback's req_id, or
`req_id_life_s`: errcode 846608 here, unconfirmed). ``aibot_send_msg`` frames (a message to
a chat outside any callback) are recorded in `sent` when they name a chatid, a chat_type of
0, 1 or 2 and a markdown body; plain text there is refused with 40008, as one implementation
reports. A second subscription for the same bot sends the first socket a
``disconnected_event``, as the real gateway does. The test pushes callbacks (`callback`),
drops sockets (`drop`) and reads what came back. Runs in the test's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestServer

BAD_CREDENTIALS = 853000
UNKNOWN_REQ_ID = 846605
EXPIRED_REQ_ID = 846608
BAD_MSGTYPE = 40008


@dataclass
class AiBotGateway:
    bot_id: str = "aibot-fake"
    secret: str = "fake-secret"
    answer_pings: bool = True
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    subscribes: int = 0
    refused: int = 0
    pings: int = 0
    responses: list[dict[str, Any]] = field(default_factory=list)
    welcomes: list[dict[str, Any]] = field(default_factory=list)
    issued: set[str] = field(default_factory=set)
    issued_at: dict[str, float] = field(default_factory=dict)
    req_id_life_s: float = 300.0
    sent: list[dict[str, Any]] = field(default_factory=list)
    refusals: list[dict[str, Any]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._ws)
        return app

    async def callback(self, body: dict[str, Any]) -> str:
        """Deliver one message callback on the live socket; returns its req_id."""
        req_id = f"cb_{secrets.token_hex(6)}"
        self.issued.add(req_id)
        self.issued_at[req_id] = time.monotonic()
        await self.sockets[-1].send_json(
            {"cmd": "aibot_msg_callback", "headers": {"req_id": req_id}, "body": body}
        )
        return req_id

    async def event(self, eventtype: str, **detail: Any) -> str:
        """Deliver one event callback (``enter_chat``…) on the live socket; returns its req_id."""
        req_id = f"ev_{secrets.token_hex(6)}"
        self.issued.add(req_id)
        body = {
            "msgid": secrets.token_hex(8),
            "aibotid": self.bot_id,
            "chattype": "single",
            "from": {"userid": "zhangsan"},
            "msgtype": "event",
            "event": {"eventtype": eventtype, **({eventtype: detail} if detail else {})},
        }
        await self.sockets[-1].send_json(
            {"cmd": "aibot_event_callback", "headers": {"req_id": req_id}, "body": body}
        )
        return req_id

    def expire(self, req_id: str) -> None:
        """The req_id's life is over: answers under it are refused from now on."""
        self.issued_at[req_id] = float("-inf")

    def _req_id_problem(self, req_id: Any) -> tuple[int, str] | None:
        if req_id not in self.issued:
            return UNKNOWN_REQ_ID, "invalid req_id"
        if time.monotonic() - self.issued_at.get(req_id, 0.0) > self.req_id_life_s:
            return EXPIRED_REQ_ID, "req_id expired"
        return None

    @staticmethod
    def _send_problem(body: Any) -> tuple[int, str] | None:
        if not isinstance(body, dict) or not body.get("chatid"):
            return 40058, "chatid missing"
        if body.get("chat_type", 0) not in (0, 1, 2):
            return 40058, "invalid chat_type"
        markdown = body.get("markdown")
        if body.get("msgtype") != "markdown" or not isinstance(markdown, dict):
            return BAD_MSGTYPE, "invalid message type"
        if not isinstance(markdown.get("content"), str) or not markdown["content"]:
            return 40058, "content missing"
        return None

    async def drop(self) -> None:
        """Close every live socket from the server side."""
        for ws in list(self.sockets):
            await ws.close()

    async def wait_for(self, predicate: Any, within_s: float = 5.0) -> None:
        async with asyncio.timeout(within_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    def _note(self) -> None:
        self.changed.set()

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        first = await ws.receive(timeout=10)
        frame = json.loads(first.data) if first.type is WSMsgType.TEXT else {}
        headers = frame.get("headers") or {}
        body = frame.get("body") or {}
        if (
            frame.get("cmd") != "aibot_subscribe"
            or body.get("bot_id") != self.bot_id
            or body.get("secret") != self.secret
        ):
            self.refused += 1
            await ws.send_json(
                {
                    "headers": headers,
                    "errcode": BAD_CREDENTIALS,
                    "errmsg": "invalid bot_id or secret",
                }
            )
            await ws.close()
            self._note()
            return ws
        for old in list(self.sockets):
            await old.send_json(
                {
                    "cmd": "aibot_event_callback",
                    "headers": {"req_id": f"ev_{secrets.token_hex(4)}"},
                    "body": {"msgtype": "event", "event": {"eventtype": "disconnected_event"}},
                }
            )
            await old.close()
        self.subscribes += 1
        self.sockets.append(ws)
        await ws.send_json({"headers": headers, "errcode": 0, "errmsg": "ok"})
        self._note()
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                headers = frame.get("headers") or {}
                if frame.get("cmd") == "ping":
                    self.pings += 1
                    if self.answer_pings:
                        await ws.send_json({"headers": headers, "errcode": 0, "errmsg": "ok"})
                elif frame.get("cmd") == "aibot_respond_welcome_msg":
                    self.welcomes.append(frame)
                    await ws.send_json({"headers": headers, "errcode": 0, "errmsg": "ok"})
                elif frame.get("cmd") in ("aibot_respond_msg", "aibot_send_msg"):
                    if frame["cmd"] == "aibot_respond_msg":
                        problem = self._req_id_problem(headers.get("req_id"))
                        kept = self.responses
                    else:
                        problem = self._send_problem(frame.get("body"))
                        kept = self.sent
                    if problem is not None:
                        self.refusals.append(frame)
                        code, why = problem
                        await ws.send_json({"headers": headers, "errcode": code, "errmsg": why})
                    else:
                        kept.append(frame)
                        await ws.send_json({"headers": headers, "errcode": 0, "errmsg": "ok"})
                self._note()
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
            self._note()
        return ws


@contextlib.asynccontextmanager
async def serving() -> AsyncIterator[tuple[AiBotGateway, str]]:
    """A fresh fake gateway on loopback and its ws:// URL, stopped on the way out."""
    fake = AiBotGateway()
    server = TestServer(fake.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield fake, str(server.make_url("/")).replace("http://", "ws://")
    finally:
        await server.close()
