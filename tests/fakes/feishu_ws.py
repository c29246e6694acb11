"""A fake Feishu long-connection gateway: ``callback/ws/endpoint`` plus its WebSocket.

``POST /callback/ws/endpoint`` checks AppID/AppSecret and answers the wss URL (here ws://…,
with ``device_id``, ``service_id`` and a one-time ticket) and a ClientConfig. The WebSocket
speaks protobuf ``pbbp2.Frame``: it answers every ping with a pong carrying the ClientConfig,
and the test pushes event frames (optionally split into ``sum`` parts), reads the client's
answers (``{"code": …}`` plus ``biz_rt``), fails the endpoint (`fail_next`), closes connections
from the server side or cuts them without a close. Thread-safe: the fake runs in its own
thread and loop. Add it to the fake Feishu API app with `add_ws_routes`, so one base URL
serves both, as open.feishu.cn does.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from adapters.feishu.ws.client import ENDPOINT_PATH
from adapters.feishu.ws.frame import METHOD_CONTROL, METHOD_DATA, Frame, decode, encode
from tests.fakes.base import FakeState, record

SERVICE_ID = 33554678


@dataclass
class WsGatewayState(FakeState):
    """Credentials, tickets, open sockets and every frame the clients sent, in order."""

    app_id: str = "cli_fake_app"
    app_secret: str = "fake-app-secret"
    ping_interval_s: float = 120.0
    tickets: set[str] = field(default_factory=set)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    transports: dict[int, asyncio.BaseTransport] = field(default_factory=dict)
    accepted: int = 0
    received: list[Frame] = field(default_factory=list)
    loop: asyncio.AbstractEventLoop | None = None
    # Set: the WebSocket upgrade is refused with these handshake-* headers (HTTP 200, no 101).
    refuse_with: dict[str, str] | None = None
    _seq: int = 0

    # --- test side (any thread) ------------------------------------------------------------

    def live(self) -> int:
        with self.lock:
            return sum(1 for ws in self.sockets if not ws.closed)

    def pings(self) -> list[Frame]:
        with self.lock:
            return [f for f in self.received if f.header("type") == "ping"]

    def acks_for(self, message_id: str) -> list[dict[str, Any]]:
        """The client's answers to `message_id`: ``{"code", "biz_rt", "frame"}`` each."""
        with self.lock:
            frames = [
                f
                for f in self.received
                if f.method == METHOD_DATA and f.header("message_id") == message_id
            ]
        return [
            {"code": json.loads(f.payload)["code"], "biz_rt": f.header("biz_rt"), "frame": f}
            for f in frames
        ]

    def _run(self, coro: Any) -> Any:
        assert self.loop is not None, "no client has connected yet"
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=5)

    def push_frames(self, frames: list[Frame]) -> int:
        """Send `frames` in order on every open socket; return how many sockets got them."""

        async def send() -> int:
            sent = 0
            for ws in list(self.sockets):
                if not ws.closed:
                    for frame in frames:
                        await ws.send_bytes(encode(frame))
                    sent += 1
            return sent

        return int(self._run(send()))

    def push_raw(self, data: bytes) -> int:
        """Send bytes that need not be a frame at all (a corrupt message)."""

        async def send() -> int:
            live = [ws for ws in list(self.sockets) if not ws.closed]
            for ws in live:
                await ws.send_bytes(data)
            return len(live)

        return int(self._run(send()))

    def push_event(
        self, envelope: dict[str, Any], *, message_id: str | None = None, parts: int = 1
    ) -> str:
        """Push a schema 2.0 event as data frame(s) of type ``event``; return its message_id."""
        message_id = message_id or f"msg-{secrets.token_hex(6)}"
        payload = json.dumps(envelope, ensure_ascii=False).encode()
        size = -(-len(payload) // parts)
        chunks = [payload[i * size : (i + 1) * size] for i in range(parts)]
        with self.lock:
            self._seq += 1
            seq_id = self._seq
        frames = [
            Frame(
                seq_id=seq_id,
                log_id=seq_id,
                service=SERVICE_ID,
                method=METHOD_DATA,
                headers=[
                    ("type", "event"),
                    ("message_id", message_id),
                    ("sum", str(parts)),
                    ("seq", str(i)),
                    ("trace_id", f"trace-{seq_id}"),
                ],
                payload=chunk,
            )
            for i, chunk in enumerate(chunks)
        ]
        # Parts may arrive out of order: send the last one first when split.
        if parts > 1:
            frames = [frames[-1], *frames[:-1]]
        self.push_frames(frames)
        return message_id

    def close_all(self) -> None:
        """Close every connection from the server side (a close frame: a planned restart)."""

        async def close() -> None:
            for ws in list(self.sockets):
                await ws.close(code=1001, message=b"server restart")

        self._run(close())

    def drop(self) -> None:
        """Cut every connection at the TCP level, with no close frame (a network failure)."""

        async def cut() -> None:
            for transport in list(self.transports.values()):
                if isinstance(transport, asyncio.Transport):
                    transport.abort()

        self._run(cut())

    def client_config(self) -> dict[str, Any]:
        return {
            "PingInterval": self.ping_interval_s,
            "ReconnectCount": -1,
            "ReconnectInterval": 120,
            "ReconnectNonce": 30,
        }


async def _endpoint(request: web.Request) -> web.Response:
    state: WsGatewayState = request.app[WS_STATE]
    rec = await record(state, request)
    failure = state.take_failure()
    if failure is not None:
        if failure.body is None:
            return web.Response(status=failure.status, text="injected failure")
        return web.json_response(failure.body, status=failure.status)
    body = rec.json if isinstance(rec.json, dict) else {}
    if body.get("AppID") != state.app_id or body.get("AppSecret") != state.app_secret:
        # [?] the code for wrong credentials is not documented; any non-busy code is final.
        return web.json_response({"code": 403, "msg": "app_id or app_secret invalid"})
    ticket = secrets.token_urlsafe(12)
    with state.lock:
        state.tickets.add(ticket)
        device = f"dev-{len(state.tickets)}-{secrets.token_hex(3)}"
    url = f"ws://{request.host}/feishu-ws?device_id={device}&service_id={SERVICE_ID}&t={ticket}"
    return web.json_response(
        {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": state.client_config()}}
    )


async def _socket(request: web.Request) -> web.StreamResponse:
    state: WsGatewayState = request.app[WS_STATE]
    if state.refuse_with is not None:
        return web.Response(status=200, headers=state.refuse_with, text="refused")
    ticket = request.query.get("t", "")
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
            if msg.type != WSMsgType.BINARY:
                continue
            frame = decode(msg.data)
            with state.lock:
                state.received.append(frame)
            if frame.method == METHOD_CONTROL and frame.header("type") == "ping":
                pong = Frame(
                    service=frame.service,
                    method=METHOD_CONTROL,
                    headers=[("type", "pong")],
                    payload=json.dumps(state.client_config()).encode(),
                )
                await ws.send_bytes(encode(pong))
    finally:
        with state.lock:
            if ws in state.sockets:
                state.sockets.remove(ws)
            state.transports.pop(id(ws), None)
    return ws


WS_STATE = web.AppKey("feishu_ws_state", WsGatewayState)


def add_ws_routes(app: web.Application, state: WsGatewayState) -> None:
    app[WS_STATE] = state
    app.router.add_post(ENDPOINT_PATH, _endpoint)
    app.router.add_get("/feishu-ws", _socket)
