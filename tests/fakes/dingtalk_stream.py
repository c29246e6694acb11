"""A fake DingTalk Stream gateway: ``connections/open`` plus the WebSocket it hands out.

``POST /v1.0/gateway/connections/open`` checks clientId/clientSecret and the subscriptions,
and answers ``{"endpoint": "ws://127.0.0.1:<port>/gateway", "ticket": …}``. The WebSocket
endpoint accepts each ticket once. The test pushes CALLBACK, SYSTEM ping and SYSTEM disconnect
frames (thread-safe: the fake runs in its own thread and loop), reads the ACKs the client sent,
and can drop every connection without a close handshake. Add it to the fake DingTalk API app
with `add_gateway_routes`, so one base URL serves both, as api.dingtalk.com does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from adapters.dingtalk.stream import BOT_MESSAGE_TOPIC, OPEN_PATH
from tests.fakes.base import FakeState, record


@dataclass
class GatewayState(FakeState):
    """Credentials, issued tickets, open sockets and every ACK received, in order."""

    client_id: str = "ding-fake-app"
    client_secret: str = "fake-dingtalk-secret"
    tickets: set[str] = field(default_factory=set)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    transports: dict[int, asyncio.BaseTransport] = field(default_factory=dict)
    accepted: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None

    # --- test side (any thread) ------------------------------------------------------------

    def live(self) -> int:
        with self.lock:
            return sum(1 for ws in self.sockets if not ws.closed)

    def acks_for(self, message_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.acks if a.get("headers", {}).get("messageId") == message_id]

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None, "no client has connected yet"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)

    def push(self, frame: dict[str, Any]) -> int:
        """Send `frame` on every open socket; return how many got it."""

        async def send() -> int:
            sent = 0
            for ws in list(self.sockets):
                if not ws.closed:
                    await ws.send_str(json.dumps(frame, ensure_ascii=False))
                    sent += 1
            return sent

        return int(self._run(send()))

    def push_robot_message(self, body: dict[str, Any], *, message_id: str | None = None) -> str:
        """Push a CALLBACK robot message whose data is `body`; return the frame's messageId."""
        message_id = message_id or f"frame-{secrets.token_hex(6)}"
        self.push(
            {
                "specVersion": "1.0",
                "type": "CALLBACK",
                "headers": {
                    "appId": self.client_id,
                    "connectionId": "fake-connection",
                    "contentType": "application/json",
                    "messageId": message_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": BOT_MESSAGE_TOPIC,
                },
                "data": json.dumps(body, ensure_ascii=False),
            }
        )
        return message_id

    def push_event(self, event_type: str, data: dict[str, Any], *, event_id: str = "") -> str:
        """Push an EVENT frame (e.g. ``chat_add_member``); return the frame's messageId."""
        message_id = f"evt-{secrets.token_hex(6)}"
        self.push(
            {
                "specVersion": "1.0",
                "type": "EVENT",
                "headers": {
                    "appId": self.client_id,
                    "connectionId": "fake-connection",
                    "contentType": "application/json",
                    "messageId": message_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": event_type,
                    "eventType": event_type,
                    "eventId": event_id or secrets.token_hex(8),
                    "eventCorpId": "ding-fake-corp",
                    "eventBornTime": str(int(time.time() * 1000)),
                },
                "data": json.dumps(data, ensure_ascii=False),
            }
        )
        return message_id

    def push_system(self, topic: str, data: str = "{}") -> str:
        """A SYSTEM frame: topic ``ping`` or ``disconnect``."""
        message_id = f"sys-{secrets.token_hex(6)}"
        self.push(
            {
                "specVersion": "1.0",
                "type": "SYSTEM",
                "headers": {
                    "contentType": "application/json",
                    "messageId": message_id,
                    "time": str(int(time.time() * 1000)),
                    "topic": topic,
                },
                "data": data,
            }
        )
        return message_id

    def drop(self) -> None:
        """Cut every connection at the TCP level, with no close frame (a network failure)."""

        async def cut() -> None:
            for transport in list(self.transports.values()):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()

        self._run(cut())


async def _open(request: web.Request) -> web.Response:
    state: GatewayState = request.app[GATEWAY_STATE]
    rec = await record(state, request)
    body = rec.json if isinstance(rec.json, dict) else {}
    if body.get("clientId") != state.client_id or body.get("clientSecret") != state.client_secret:
        return web.json_response(
            {"code": "InvalidAuthentication", "message": "bad client", "requestid": "fake"},
            status=401,
        )
    topics = {(s.get("type"), s.get("topic")) for s in body.get("subscriptions", [])}
    if ("CALLBACK", BOT_MESSAGE_TOPIC) not in topics:
        return web.json_response(
            {"code": "InvalidParameter", "message": "no subscriptions", "requestid": "fake"},
            status=400,
        )
    ticket = secrets.token_urlsafe(12)
    with state.lock:
        state.tickets.add(ticket)
    endpoint = f"ws://{request.host}/gateway"
    return web.json_response({"endpoint": endpoint, "ticket": ticket})


async def _gateway(request: web.Request) -> web.StreamResponse:
    state: GatewayState = request.app[GATEWAY_STATE]
    ticket = request.query.get("ticket", "")
    with state.lock:
        valid = ticket in state.tickets
        state.tickets.discard(ticket)  # one connection per ticket
    if not valid:
        raise web.HTTPUnauthorized(text="bad ticket")
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    with state.lock:
        state.loop = asyncio.get_running_loop()
        state.sockets.append(ws)
        if request.transport is not None:
            state.transports[id(ws)] = request.transport
        state.accepted += 1
    try:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                try:
                    ack = json.loads(msg.data)
                except ValueError:
                    continue
                with state.lock:
                    state.acks.append(ack)
    finally:
        with state.lock:
            if ws in state.sockets:
                state.sockets.remove(ws)
            state.transports.pop(id(ws), None)
    return ws


GATEWAY_STATE = web.AppKey("gateway_state", GatewayState)


def add_gateway_routes(app: web.Application, state: GatewayState) -> None:
    app[GATEWAY_STATE] = state
    app.router.add_post(OPEN_PATH, _open)
    app.router.add_get("/gateway", _gateway)
