"""DingTalk Stream mode: a WebSocket instead of a public URL (docs/protocols/dingtalk.md).

`open_connection` asks the gateway for an endpoint and a one-time ticket; `StreamClient` connects to
``{endpoint}?ticket=…``, answers every frame with an ACK, hands robot messages (CALLBACK topic
``/v1.0/im/bot/messages/get``, whose ``data`` is the
docs/protocols/dingtalk.md#robot-messages-over-http robot body) to a callback, hands EVENT frames to
the same callback as events to record (`adapters.dingtalk.events.stream_event`), and
reconnects with capped exponential backoff and a liveness watchdog. Replies go out through
`DingTalkAdapter.send` (sessionWebhook, else OpenAPI), as in HTTP mode. Source:
open-dingtalk/dingtalk-stream-sdk-python `stream.py`, `frames.py`.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from adapters.dingtalk import events as dingtalk_events
from adapters.http import post_read
from adapters.reconnect import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CLOSED_TYPES,
    LongConnection,
    StreamState,
)
from bot.domain import InboundMessage, Platform
from bot.errors import PayloadError, PlatformRejectedError, PlatformUnavailableError

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
OPEN_PATH = "/v1.0/gateway/connections/open"
BOT_MESSAGE_TOPIC = "/v1.0/im/bot/messages/get"
SUBSCRIPTIONS = (
    {"type": "CALLBACK", "topic": BOT_MESSAGE_TOPIC},
    {"type": "EVENT", "topic": "*"},
)
USER_AGENT = "cs-bot-dingtalk-stream/1"

ParseRobotMessage = Callable[[Mapping[str, Any]], InboundMessage | None]
OnMessage = Callable[[InboundMessage], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Frame:
    """One downstream frame: ``type`` SYSTEM|EVENT|CALLBACK, its headers, ``data`` (a string)."""

    type: str
    headers: dict[str, str]
    data: str

    @property
    def message_id(self) -> str:
        return self.headers.get("messageId", "")

    @property
    def topic(self) -> str:
        return self.headers.get("topic", "")


def parse_frame(raw: str | bytes) -> Frame:
    """Decode one frame; PayloadError when it is not a frame we can ACK."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise PayloadError("stream frame is not JSON", PLATFORM) from exc
    if not isinstance(obj, dict):
        raise PayloadError("stream frame is not a JSON object", PLATFORM)
    headers = obj.get("headers")
    if not isinstance(headers, dict):
        raise PayloadError("stream frame has no headers", PLATFORM)
    frame_type = obj.get("type")
    data = obj.get("data", "")
    if not isinstance(frame_type, str) or not isinstance(data, str):
        raise PayloadError("stream frame has no type or a non-string data", PLATFORM)
    clean = {str(k): str(v) for k, v in headers.items() if v is not None}
    if not clean.get("messageId"):
        raise PayloadError("stream frame has no messageId", PLATFORM)
    return Frame(type=frame_type, headers=clean, data=data)


def build_ack(
    message_id: str, *, code: int = 200, message: str = "OK", data: Any = None
) -> dict[str, Any]:
    """The ACK for one frame; ``data`` is JSON-encoded into a string.

    docs/protocols/dingtalk.md#acknowledging-frames

    Callbacks answer ``{"response": null}`` (the default); codes: 200, 400, 404, 500.
    """
    payload = {"response": None} if data is None else data
    return {
        "code": code,
        "headers": {"messageId": message_id, "contentType": "application/json"},
        "message": message,
        "data": json.dumps(payload, ensure_ascii=False),
    }


async def open_connection(
    http: aiohttp.ClientSession,
    api_base: str,
    app_key: str,
    app_secret: str,
    *,
    timeout_s: float = 10,
) -> tuple[str, str]:
    """POST connections/open; return ``(endpoint, ticket)``.

    Raises PlatformRejectedError for refused credentials, PlatformUnavailableError otherwise.
    """
    payload = {
        "clientId": app_key,
        "clientSecret": app_secret,
        "subscriptions": list(SUBSCRIPTIONS),
        "ua": USER_AGENT,
        "localIp": "",
    }
    url = api_base.rstrip("/") + OPEN_PATH
    status, raw = await post_read(
        http,
        url,
        platform=PLATFORM,
        what=OPEN_PATH,
        client_timeout=aiohttp.ClientTimeout(total=timeout_s),
        json=payload,
    )
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    code = str(data.get("code", "")) if isinstance(data, dict) else ""
    if status >= 500 or status == 429:
        raise PlatformUnavailableError(f"{OPEN_PATH} answered {code}", PLATFORM, status=status)
    if status != 200:
        raise PlatformRejectedError(
            f"{OPEN_PATH} answered {code}", PLATFORM, errcode=code or None, status=status
        )
    endpoint = data.get("endpoint") if isinstance(data, dict) else None
    ticket = data.get("ticket") if isinstance(data, dict) else None
    if not isinstance(endpoint, str) or not endpoint or not isinstance(ticket, str) or not ticket:
        raise PlatformUnavailableError(f"{OPEN_PATH}: no endpoint or ticket", PLATFORM)
    return endpoint, ticket


def connect_url(endpoint: str, ticket: str) -> str:
    sep = "&" if "?" in endpoint else "?"
    return f"{endpoint}{sep}ticket={quote(ticket, safe='')}"


class StreamClient(LongConnection):
    """One app's Stream connection, kept up until `run` is cancelled or `stop()` is called."""

    name = "dingtalk stream"
    frame_types = frozenset({aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY})
    pause_after_frames = False

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        api_base: str,
        app_key: str,
        app_secret: str,
        parse: ParseRobotMessage,
        on_message: OnMessage,
        app: str = "default",
        liveness_s: float = 180.0,
        heartbeat_s: float | None = 30.0,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        on_state: Callable[[StreamState], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(http, api_base, app, on_state, rng, backoff_base_s, backoff_cap_s)
        self._app_key = app_key
        self._app_secret = app_secret
        self._parse = parse
        self._on_message = on_message
        # Nothing received (frames, SYSTEM pings, pongs to our heartbeat) for this long: the
        # connection is dead, reconnect. The heartbeat usually notices first.
        self._liveness_s = liveness_s
        self._heartbeat_s = heartbeat_s

    @property
    def liveness_s(self) -> float:
        return self._liveness_s

    async def _connect_once(self) -> bool:
        endpoint, ticket = await open_connection(
            self._http, self._api_base, self._app_key, self._app_secret
        )
        async with self._http.ws_connect(
            # autoping off: pongs to our heartbeat pings reach `_serve` and count as signs of
            # life, so an idle but healthy connection is not replaced.
            connect_url(endpoint, ticket),
            heartbeat=self._heartbeat_s,
            autoping=False,
        ) as ws:
            log.info("dingtalk stream %s connected", self.app)
            return await self._serve(ws)

    async def _control(self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> bool:
        if msg.type is aiohttp.WSMsgType.PING:
            await ws.pong(msg.data)
        elif msg.type in CLOSED_TYPES:
            log.warning("dingtalk stream %s: connection closed", self.app)
            return False
        return True

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, data: Any) -> bool:
        """ACK one frame; False when the server asked us to reconnect."""
        try:
            frame = parse_frame(data)
        except PayloadError as exc:
            log.warning("dingtalk stream %s: unreadable frame (%s)", self.app, exc)
            return True
        if frame.type == "SYSTEM":
            if frame.topic == "disconnect":
                await ws.send_json(build_ack(frame.message_id, data={}))
                log.info("dingtalk stream %s: server asked to reconnect", self.app)
                await ws.close()
                return False
            # ping (and anything else): echo its data back, as the SDK does.
            await ws.send_json(
                {
                    "code": 200,
                    "headers": {"messageId": frame.message_id, "contentType": "application/json"},
                    "message": "OK",
                    "data": frame.data,
                }
            )
            return True
        if frame.type == "CALLBACK" and frame.topic == BOT_MESSAGE_TOPIC:
            await ws.send_json(await self._robot_message(frame))
            return True
        if frame.type == "EVENT":
            await ws.send_json(await self._event(frame))
            return True
        await ws.send_json(build_ack(frame.message_id, code=404, message="not implemented"))
        return True

    async def _event(self, frame: Frame) -> dict[str, Any]:
        """Queue an event to be recorded, not answered (bot/pipeline/events.py), as HTTP mode does.

        The SDK acks events with ``{"status": "SUCCESS"}``, or ``LATER`` to have the gateway
        push the event again; LATER is what a failure to queue gets.
        """
        message = dingtalk_events.stream_event(
            frame.headers, frame.data, app=self.app, now=time.time()
        )
        try:
            await self._on_message(message)
        except Exception:
            log.exception(
                "dingtalk stream %s event %s: could not queue", self.app, message.event_id
            )
            return build_ack(frame.message_id, data={"status": "LATER", "message": "retry"})
        log.info(
            "dingtalk stream %s event %s %s queued",
            self.app,
            message.event,
            message.event_id,
        )
        return build_ack(frame.message_id, data={"status": "SUCCESS", "message": "success"})

    async def _robot_message(self, frame: Frame) -> dict[str, Any]:
        try:
            body = json.loads(frame.data)
            if not isinstance(body, dict):
                raise PayloadError("robot message is not a JSON object", PLATFORM)
            message = self._parse(body)
        except (ValueError, RecursionError, PayloadError) as exc:
            log.warning("dingtalk stream %s: bad robot message %s", self.app, exc)
            return build_ack(frame.message_id, code=400, message="bad request")
        if message is not None:
            try:
                await self._on_message(message)
            except Exception:
                # Not queued: answer 500 so the gateway delivers it again.
                log.exception("dingtalk stream %s %s: could not queue", self.app, message.event_id)
                return build_ack(frame.message_id, code=500, message="internal error")
        return build_ack(frame.message_id)
