"""WeCom 智能机器人 in long-connection mode: a WebSocket instead of a callback URL.

The client connects to the gateway, subscribes with the bot id and secret
(``aibot_subscribe``), sends a ``ping`` every `heartbeat_s`, and hands each message callback
(``aibot_msg_callback``, the same JSON as webhook mode, unencrypted) to `on_message` as the
same InboundMessage as webhook mode, its ``req_id`` kept in the route; a picture or file
names its own ``aeskey`` here, which its attachment carries to the worker (media.py).
Replies do not go out over HTTP: the worker pushes ``aibot_respond_msg`` frames to a Redis
list per bot (adapters/wecom_aibot/outbox.py), and the replica holding the connection sends
them. Reconnects use the shared jittered backoff (adapters/reconnect.py). Protocol notes:
docs/protocols/wecom-aibot.md#long-connection-mode.

A req_id takes answers for about 5 minutes only, and a worker that died leaves its stream
"正在生成" on the member's screen. So the holder also watches the app's open streams: one
still open at its deadline (the callback's time plus the req_id's life, less a margin) gets a
last frame under its req_id, `finish` with the text so far and word that the answer follows;
a turn that answers later sends it as ``aibot_send_msg`` (adapter.send), one that never does
gets the sweeper's note the same way (sweep.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters.reconnect import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    CLOSED_TYPES,
    LongConnection,
    StreamState,
)
from adapters.wecom_aibot import media as aibot_media
from adapters.wecom_aibot import outbox, parse
from adapters.wecom_aibot.adapter import (
    FEEDBACK_EVENT,
    REFRESH_MARGIN_S,
    clip,
    feedback_notice,
    stream_id_of,
    stream_message,
)
from adapters.wecom_aibot.outbox import REQ_ID_WINDOW_S, outbox_key
from adapters.wecom_aibot.state import StreamStore, overdue
from bot.domain import InboundMessage, Platform
from bot.errors import PayloadError, PlatformRejectedError, PlatformUnavailableError

# How long a cancelled BLPOP (1 s on the server) is given to end and hand its frame back.
POP_SETTLE_S = 3.0
log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM_AIBOT
WS_URL = "wss://openws.work.weixin.qq.com"
SUBSCRIBE = "aibot_subscribe"
PING = "ping"
MSG_CALLBACK = "aibot_msg_callback"
EVENT_CALLBACK = "aibot_event_callback"
DISCONNECTED_EVENT = "disconnected_event"
ENTER_CHAT = "enter_chat"
RESPOND_WELCOME = "aibot_respond_welcome_msg"

# The last frame of a stream whose req_id runs out before its answer is done.
FOLLOWS_NOTE = "（回答仍在生成，完整答复稍后单独发送。）"
FOLLOWS_NOTHING = "正在为您处理，完整答复稍后单独发送。"
# How long past its deadline a stream is still worth closing (its req_id lives 15 s more).
CLOSE_WITHIN_S = 60.0

OnMessage = Callable[[InboundMessage], Awaitable[object]]


def follows_text(so_far: str) -> str:
    """What a stream shows when its req_id runs out before the answer is done."""
    so_far = so_far.strip()
    return clip(f"{so_far}\n\n{FOLLOWS_NOTE}") if so_far else FOLLOWS_NOTHING


def request_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def message_of(app: str, req_id: str, body: Mapping[str, Any], *, now: float) -> InboundMessage:
    """A message callback's body as webhook mode's InboundMessage (a type the bot cannot read
    is answered politely, as there)."""
    env = parse.envelope(body)
    asked = parse.question(body, env)
    route = {
        "req_id": req_id,
        "stream_id": stream_id_of(app, env.msgid),
        "deadline": f"{now + REQ_ID_WINDOW_S - REFRESH_MARGIN_S:.0f}",
    }
    # Pictures and files name their own key here (no EncodingAESKey in this mode).
    media = aibot_media.attachments(body, env.msgtype, keyed=True)
    return parse.inbound(app, env, asked, now=now, route=route, attachments=media)


class AiBotWsClient(LongConnection):
    """One bot's long connection, kept up until `run` is cancelled or `stop()` is called."""

    name = "wecom_aibot ws"
    frame_types = frozenset({aiohttp.WSMsgType.TEXT})
    pause_after_frames = True

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession,
        redis: aioredis.Redis,
        bot_id: str,
        secret: str,
        on_message: OnMessage,
        ws_url: str = WS_URL,
        app: str = "default",
        welcome_text: str = "",
        heartbeat_s: float = 30.0,
        window_check_s: float = 1.0,
        liveness_s: float | None = None,
        subscribe_timeout_s: float = 10.0,
        backoff_base_s: float = BACKOFF_BASE_S,
        backoff_cap_s: float = BACKOFF_CAP_S,
        on_state: Callable[[StreamState], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(http, ws_url, app, on_state, rng, backoff_base_s, backoff_cap_s)
        self._redis = redis
        self._bot_id = bot_id
        self._secret = secret
        self._on_message = on_message
        self._welcome = welcome_text
        self._heartbeat_s = heartbeat_s
        self._window_check_s = window_check_s
        # Every ping is answered: two missed answers and a bit mean the connection is dead.
        self._liveness_s = liveness_s if liveness_s is not None else 2.5 * heartbeat_s
        self._subscribe_timeout_s = subscribe_timeout_s
        self._clock = clock or (lambda: datetime.now(UTC).timestamp())

    @property
    def liveness_s(self) -> float:
        return self._liveness_s

    async def _connect_once(self) -> bool:
        async with self._http.ws_connect(
            self._api_base, timeout=aiohttp.ClientWSTimeout(ws_close=5), autoping=True
        ) as ws:
            await self._subscribe(ws)
            log.info("wecom_aibot ws %s subscribed", self.app)
            # Set before the cancel as well: on 3.11 a cancel that lands as a Redis read
            # times out comes back as a timeout, and the drain went on popping for ever
            # (a CI run saw a replica still stopping 10 s after stop).
            over = asyncio.Event()
            tasks = [
                asyncio.create_task(self._heartbeat(ws)),
                asyncio.create_task(self._drain_outbox(ws, over)),
            ]
            try:
                return await self._serve(ws)
            finally:
                over.set()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        req_id = request_id(SUBSCRIBE)
        await ws.send_json(
            {
                "cmd": SUBSCRIBE,
                "headers": {"req_id": req_id},
                "body": {"bot_id": self._bot_id, "secret": self._secret},
            }
        )
        try:
            async with asyncio.timeout(self._subscribe_timeout_s):
                while True:
                    msg = await ws.receive()
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        raise PlatformUnavailableError(
                            "connection closed before the subscription was answered", PLATFORM
                        )
                    ack = _json(msg.data)
                    if ack is not None and _req_id(ack) == req_id:
                        break
        except TimeoutError as exc:
            raise PlatformUnavailableError("aibot_subscribe was not answered", PLATFORM) from exc
        errcode = ack.get("errcode", 0)
        if errcode not in (0, None):
            raise PlatformRejectedError(
                f"aibot_subscribe answered {errcode} {str(ack.get('errmsg', ''))[:120]}",
                PLATFORM,
                errcode=str(errcode),
            )

    async def _heartbeat(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await asyncio.sleep(self._heartbeat_s)
            await ws.send_json({"cmd": PING, "headers": {"req_id": request_id(PING)}})

    async def _drain_outbox(self, ws: aiohttp.ClientWebSocketResponse, over: asyncio.Event) -> None:
        """Send what the workers queued (a frame the socket refused goes back to the head),
        and close the streams whose req_id runs out (`close_expiring`), until `over` is set."""
        key = outbox_key(self.app)
        checked = float("-inf")
        while not ws.closed and not over.is_set():
            if self._clock() - checked >= self._window_check_s:
                # Between two waits for frames, not beside them: one Redis user at a time.
                checked = self._clock()
                try:
                    await self.close_expiring()
                except aioredis.RedisError as exc:  # the next round tries again
                    log.warning("wecom_aibot ws %s: deadlines not checked: %s", self.app, exc)
            popped = await self._pop(key)
            if popped is None:
                continue
            raw = popped[1]
            try:
                await ws.send_str(raw.decode() if isinstance(raw, bytes) else raw)
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                await self._redis.lpush(key, raw)
                raise

    async def _pop(self, key: str) -> Any:
        """The next frame (BLPOP, up to 1 s), never cut off mid-command: cancelled (the lease
        lost, the process stopping) while Redis may already have popped a frame, the pop ends
        on its own and the frame goes back to the head for the next holder. Cancelling redis-py
        inside BLPOP lost that frame, and its disconnect could hold the stop for seconds."""
        pop = asyncio.ensure_future(self._redis.blpop([key], timeout=1))
        try:
            return await asyncio.shield(pop)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(POP_SETTLE_S):
                    popped = await pop
                    if popped is not None:
                        await self._redis.lpush(key, popped[1])
            raise

    async def close_expiring(self) -> int:
        """One round: each open stream of this bot past its deadline gets its last frame
        (the text so far, `finish`, word that the answer follows), once; how many."""
        closed = 0
        store = StreamStore(self._redis, self.app)
        now = self._clock()
        # Only those whose deadline just passed: a minute later their req_id is gone too.
        for app, sid in await overdue(self._redis, now, limit=1000, after=now - CLOSE_WITHIN_S):
            if app != self.app:
                continue
            snap = await store.snapshot(sid)
            if snap.finished or snap.window_closed or not snap.req_id:
                continue  # answered, closed already, or a webhook-mode stream
            if not await store.claim_window_close(sid):
                continue
            body = stream_message(sid, follows_text(snap.text), finish=True)
            await outbox.push(self._redis, self.app, snap.req_id, body)
            log.info("wecom_aibot ws %s: stream %s closed as its req_id runs out", self.app, sid)
            closed += 1
        return closed

    async def _control(self, ws: aiohttp.ClientWebSocketResponse, msg: aiohttp.WSMessage) -> bool:  # noqa: ARG002
        if msg.type in CLOSED_TYPES:
            log.warning("wecom_aibot ws %s: connection closed", self.app)
            return False
        return True

    async def _frame(self, ws: aiohttp.ClientWebSocketResponse, data: Any) -> bool:
        frame = _json(data)
        if frame is None:
            log.warning("wecom_aibot ws %s: unreadable frame", self.app)
            return True
        cmd = frame.get("cmd")
        body = frame.get("body")
        if cmd == MSG_CALLBACK and isinstance(body, dict):
            await self._message(_req_id(frame), body)
        elif cmd == EVENT_CALLBACK and isinstance(body, dict):
            event = body.get("event")
            kind = event.get("eventtype") if isinstance(event, dict) else None
            if kind == DISCONNECTED_EVENT:
                # Another connection subscribed with this bot: only one is served.
                log.warning("wecom_aibot ws %s: replaced by another connection", self.app)
                await ws.close()
                return False
            if kind == ENTER_CHAT and self._welcome:
                # As webhook mode's passive answer: a text under the event's req_id.
                await ws.send_json(
                    {
                        "cmd": RESPOND_WELCOME,
                        "headers": {"req_id": _req_id(frame)},
                        "body": {"msgtype": "text", "text": {"content": clip(self._welcome)}},
                    }
                )
                return True
            if kind == FEEDBACK_EVENT:
                await self._feedback(body)
                return True
            log.info("wecom_aibot ws %s: event %s not handled", self.app, str(kind)[:64])
        elif cmd is None and frame.get("errcode") not in (0, None):
            # An answer to one of our frames (ping, respond) that failed.
            log.warning(
                "wecom_aibot ws %s: %s refused: %s %s",
                self.app,
                _req_id(frame)[:64],
                frame.get("errcode"),
                str(frame.get("errmsg", ""))[:120],
            )
        return True

    async def _feedback(self, body: Mapping[str, Any]) -> None:
        """A 👍/👎: queued as a notice, as webhook mode does (stored with the rated turn)."""
        try:
            env = parse.envelope(body)
            notice = feedback_notice(self.app, parse.obj(body, "event"), env, now=self._clock())
        except PayloadError as exc:
            log.warning("wecom_aibot ws %s: bad feedback event (%s)", self.app, exc)
            return
        try:
            await self._on_message(notice)
        except Exception:
            log.exception("wecom_aibot ws %s %s: could not queue", self.app, notice.event_id)

    async def _message(self, req_id: str, body: Mapping[str, Any]) -> None:
        if not req_id:
            log.warning("wecom_aibot ws %s: callback without req_id", self.app)
            return
        try:
            message = message_of(self.app, req_id, body, now=self._clock())
        except PayloadError as exc:
            log.warning("wecom_aibot ws %s: bad callback (%s)", self.app, exc)
            return
        try:
            await self._on_message(message)
        except Exception:
            # The gateway does not redeliver: the member sees no answer to this one.
            log.exception("wecom_aibot ws %s %s: could not queue", self.app, message.event_id)


def _json(data: Any) -> dict[str, Any] | None:
    try:
        obj = json.loads(data)
    except (ValueError, TypeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _req_id(frame: Mapping[str, Any]) -> str:
    headers = frame.get("headers")
    value = headers.get("req_id") if isinstance(headers, dict) else None
    return value if isinstance(value, str) else ""
