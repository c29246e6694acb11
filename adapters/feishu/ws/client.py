"""Feishu / Lark long connection (长连接): events over a WebSocket instead of a public URL.

Read from lark-oapi ``lark_oapi/ws/client.py``, ``const.py``, ``model.py``, ``enum.py``:

* ``POST {api_base}/callback/ws/endpoint`` with ``{"AppID", "AppSecret"}`` answers a
  ``wss://`` URL whose query carries ``device_id`` and ``service_id``, and a ClientConfig
  (`adapters.feishu.ws.endpoint`).
* Binary frames are ``pbbp2.Frame`` (`adapters.feishu.ws.frame`). ``method`` 0 is control
  (header ``type`` ping/pong; a pong may carry a new ClientConfig as JSON), 1 is data (headers
  ``type`` event/card, ``message_id``, ``sum``, ``seq``, ``trace_id``). A payload split into
  ``sum`` parts is joined in ``seq`` order.
* Each data frame is answered by sending the frame back with a ``biz_rt`` header (handling
  time, ms) and the payload ``{"code": 200}``; 500 asks for a later redelivery.
* The client pings every ``PingInterval`` (a control frame with ``service`` = service_id).

We add a liveness watchdog (nothing received for 3 ping intervals: reconnect) and our own
jittered backoff (1 s doubling to 60 s); the SDK sleeps ``ReconnectInterval`` (2 min).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from adapters.feishu.ws.endpoint import (
    ENDPOINT_PATH,
    ClientConfig,
    fetch_endpoint,
    handshake_error,
    query_value,
)
from adapters.feishu.ws.frame import METHOD_CONTROL, METHOD_DATA, Frame, decode, encode
from adapters.reconnect import LongConnection, StreamState
from bot.domain import Platform
from bot.errors import PayloadError, PlatformUnavailableError, WebhookError

__all__ = ["ENDPOINT_PATH", "ClientConfig", "FeishuWsClient", "StreamState", "fetch_endpoint"]

log = logging.getLogger(__name__)

PLATFORM = Platform.FEISHU
# Parts of a split payload wait this long for their siblings (the SDK: 5 s).
PARTS_TTL_S = 10.0
MAX_PARTIAL = 64
CONNECT_TIMEOUT_S = 10.0
MAX_PARTS = 64

OnEvent = Callable[[bytes], Awaitable[object]]


def ping_frame(service_id: int) -> Frame:
    """The client's ping (a control frame naming the service)."""
    return Frame(service=service_id, method=METHOD_CONTROL, headers=[("type", "ping")])


def ack_frame(frame: Frame, code: int, biz_rt_ms: int) -> Frame:
    """The answer to one data frame: the frame itself, with biz_rt and ``{"code": …}``."""
    return Frame(
        seq_id=frame.seq_id,
        log_id=frame.log_id,
        service=frame.service,
        method=frame.method,
        headers=[*frame.headers, ("biz_rt", str(biz_rt_ms))],
        payload_encoding=frame.payload_encoding,
        payload_type=frame.payload_type,
        payload=json.dumps({"code": code}).encode(),
        log_id_new=frame.log_id_new,
    )


class _Parts:
    """Split payloads being joined by message_id; dropped PARTS_TTL_S after their last part."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[float, list[bytes | None]]] = {}

    def add(self, message_id: str, total: int, seq: int, chunk: bytes) -> bytes | None:
        now = time.monotonic()
        for key in [k for k, (at, _) in self._open.items() if now - at > PARTS_TTL_S]:
            log.warning("feishu ws: dropped an incomplete split payload %s", key)
            del self._open[key]
        if not (1 < total <= MAX_PARTS and 0 <= seq < total):
            raise PayloadError(f"bad split sum={total} seq={seq}", PLATFORM)
        _, parts = self._open.get(message_id, (now, [None] * total))
        if len(parts) != total:
            raise PayloadError("split payload changed its part count", PLATFORM)
        parts[seq] = chunk
        if any(part is None for part in parts):
            if message_id not in self._open and len(self._open) >= MAX_PARTIAL:
                raise PayloadError("too many incomplete split payloads", PLATFORM)
            self._open[message_id] = (now, parts)
            return None
        self._open.pop(message_id, None)
        return b"".join(p for p in parts if p is not None)


class FeishuWsClient(LongConnection):
    """One app's long connection, kept up until `run` is cancelled or `stop()` is called.

    `on_event(payload)` gets each event's JSON bytes; it returns once the event is safely
    queued (ACK 200), raises a WebhookError for a bad or deferred event (ACK 400, or 500
    for 5xx statuses so Feishu delivers it again), anything else: ACK 500.
    """

    name = "feishu ws"
    frame_types = frozenset({aiohttp.WSMsgType.BINARY})
    pause_after_frames = True

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_base: str,
        app_id: str,
        app_secret: str,
        on_event: OnEvent,
        app: str = "default",
        liveness_s: float | None = None,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 60.0,
        on_state: Callable[[StreamState], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(http, api_base, app, on_state, rng, backoff_base_s, backoff_cap_s)
        self._app_id = app_id
        self._app_secret = app_secret
        self._on_event = on_event
        # None: three ping intervals (the server answers every ping with a pong).
        self._liveness_s = liveness_s
        self.config = ClientConfig()
        self._send_lock = asyncio.Lock()
        self._parts = _Parts()

    @property
    def liveness_s(self) -> float:
        return self._liveness_s or max(10.0, 3 * self.config.ping_interval_s)

    async def _connect_once(self) -> bool:
        url, self.config = await fetch_endpoint(
            self._http, self._api_base, self._app_id, self._app_secret
        )
        try:
            service_id = int(query_value(url, "service_id"))
        except ValueError as exc:
            raise PlatformUnavailableError("endpoint URL without service_id", PLATFORM) from exc
        device_id = query_value(url, "device_id")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                ws = await self._http.ws_connect(url, autoping=True)
        except aiohttp.WSServerHandshakeError as exc:
            raise handshake_error(exc) from exc
        # Split payloads do not outlive their connection.
        self._parts = _Parts()
        pinger = asyncio.create_task(self._ping_loop(ws, service_id))
        try:
            log.info("feishu ws %s connected (device_id=%s)", self.app, device_id)
            return await self._serve(ws)
        finally:
            pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pinger
            await ws.close()

    async def _control(self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> bool:
        del ws  # nothing to answer: aiohttp's autoping answers pings
        if msg.type in (aiohttp.WSMsgType.PING, aiohttp.WSMsgType.PONG):
            return True
        if msg.type is aiohttp.WSMsgType.TEXT:
            log.warning("feishu ws %s: unexpected text frame ignored", self.app)
            return True
        log.warning("feishu ws %s: connection closed (%s)", self.app, msg.type.name)
        return False

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, data: Any) -> bool:
        await self._handle(ws, data)
        return True  # Feishu has no frame that asks for a reconnect

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, frame: Frame) -> None:
        async with self._send_lock:
            await ws.send_bytes(encode(frame))

    async def _ping_loop(self, ws: aiohttp.ClientWebSocketResponse, service_id: int) -> None:
        while not ws.closed:
            try:
                await self._send(ws, ping_frame(service_id))
            except (aiohttp.ClientError, ConnectionError) as exc:
                log.warning("feishu ws %s: ping failed (%s)", self.app, exc)
            # Re-read each time: a pong may have changed the interval.
            await asyncio.sleep(self.config.ping_interval_s)

    async def _handle(self, ws: aiohttp.ClientWebSocketResponse, raw: bytes) -> None:
        """Answer one frame (data frames get an ACK; control frames need none)."""
        try:
            frame = decode(raw)
        except PayloadError as exc:
            log.warning("feishu ws %s: unreadable frame (%s)", self.app, exc)
            return
        kind = frame.header("type")
        if frame.method == METHOD_CONTROL:
            if kind == "pong" and frame.payload:
                with contextlib.suppress(ValueError):
                    self.config = ClientConfig.from_json(json.loads(frame.payload), self.config)
            return
        if frame.method != METHOD_DATA:
            log.warning("feishu ws %s: frame method %s ignored", self.app, frame.method)
            return
        started = time.perf_counter()
        message_id = frame.header("message_id")
        payload: bytes | None = frame.payload
        try:
            total, seq = int(frame.header("sum", "1")), int(frame.header("seq", "0"))
            if total > 1:
                payload = self._parts.add(message_id, total, seq, frame.payload)
        except (ValueError, PayloadError) as exc:
            log.warning("feishu ws %s %s: bad split (%s)", self.app, message_id, exc)
            await self._ack(ws, frame, 400, started)
            return
        if payload is None:
            return  # more parts to come; the last one is answered
        if kind != "event":
            # Cards (and anything newer) are not ours to answer; the SDK sends nothing back.
            log.info("feishu ws %s %s: %s frame ignored", self.app, message_id, kind or "untyped")
            return
        await self._ack(ws, frame, await self._deliver(message_id, payload), started)

    async def _deliver(self, message_id: str, payload: bytes) -> int:
        try:
            await self._on_event(payload)
        except WebhookError as exc:
            log.warning("feishu ws %s %s: %s", self.app, message_id, exc)
            return 500 if exc.status >= 500 else 400
        except Exception:
            # Not queued: 500, so Feishu delivers it again.
            log.exception("feishu ws %s %s: could not queue", self.app, message_id)
            return 500
        return 200

    async def _ack(
        self, ws: aiohttp.ClientWebSocketResponse, frame: Frame, code: int, started: float
    ) -> None:
        biz_rt = int((time.perf_counter() - started) * 1000)
        try:
            await self._send(ws, ack_frame(frame, code, biz_rt))
        except (aiohttp.ClientError, ConnectionError) as exc:
            log.warning("feishu ws %s: could not answer a frame (%s)", self.app, exc)
