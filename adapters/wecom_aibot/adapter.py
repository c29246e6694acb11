"""WeCom 智能机器人 (AI bot) in webhook mode: JSON callbacks answered with stream replies.

A member's message is queued, and its callback is answered at once with an encrypted
`stream` reply naming a stream id (derived from the msgid, so a platform retry names the
same one). WeCom then polls with refresh callbacks (msgtype `stream`) for up to 6 minutes;
the web route answers each from Redis (adapters/wecom_aibot/state.py), whichever replica
it lands on, while the worker writes the text there as the model streams it, and finally
the whole answer with `finish: true`. An answer ready only after the window goes through
the message's one-use `response_url` (adapters/wecom_aibot/respond.py). A message the
pipeline leaves unanswered (`Finishes.finish`) has its stream closed as it stands.

Protocol notes: docs/protocols/wecom-aibot.md. Official pages: 概述
https://developer.work.weixin.qq.com/document/path/101039, 接收消息 …/100719, 接收事件
…/101027, 被动回复消息 …/101031, 主动回复消息 …/101138, 加解密 …/101033.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters import media, payload
from adapters.base import WebhookRequest, WebhookResult
from adapters.client import require
from adapters.text import split_text
from adapters.wechat import crypto
from adapters.wechat import fields as wechat_fields
from adapters.wechat.callback import WeChatCallback
from adapters.wecom_aibot import envelope, outbox, parse, respond
from adapters.wecom_aibot import media as aibot_media
from adapters.wecom_aibot.state import DONE, LATE, SWEPT, StreamStore
from bot.domain import (
    DEFAULT_APP,
    STREAM_RESTART,
    Attachment,
    InboundMessage,
    MessageKind,
    OnDelta,
    Platform,
    Reply,
)
from bot.errors import ConfigError, PayloadError, PlatformRejectedError

log = logging.getLogger(__name__)

PLATFORM = Platform.WECOM_AIBOT
# `stream.content` and a markdown answer take at most 20480 bytes of UTF-8 (doc 101031).
MAX_CONTENT_BYTES = 20480
# WeCom refreshes a stream until 6 minutes after the member's message (doc 100719); past
# this the answer goes through response_url. The margin covers a refresh already in flight.
REFRESH_WINDOW_S = 360
REFRESH_MARGIN_S = 15
ENTER_CHAT = "enter_chat"
FEEDBACK_EVENT = "feedback_event"
RATINGS = {"up": 1, "down": -1, "cancel": 0}
LONGCONN = "longconn"
# Long connection: at most this often a frame with the text so far (nothing polls there).
PUSH_EVERY_S = 0.3
# What `send` returns for an answer that went out as aibot_send_msg.
SEND_MSG = "aibot_send_msg"
JSON = "application/json"


def _deadline(reply: Reply) -> float:
    """Until when the message's stream takes the answer (epoch seconds; 0: unknown)."""
    try:
        return float(reply.route.get("deadline", "0"))
    except ValueError:
        return 0.0


def stream_id_of(app: str, msgid: str) -> str:
    """The stream id answering `msgid`: the same for every delivery of one message."""
    return hashlib.sha256(f"{app}\n{msgid}".encode()).hexdigest()[:32]


def clip(text: str, max_bytes: int = MAX_CONTENT_BYTES) -> str:
    """The longest prefix of whole characters within `max_bytes` of UTF-8."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", "ignore")


def stream_message(
    stream_id: str, content: str, *, finish: bool, feedback: str = ""
) -> dict[str, Any]:
    """The plaintext of a `stream` reply; `feedback` asks WeCom to offer 👍/👎 (first reply)."""
    stream: dict[str, Any] = {"id": stream_id, "finish": finish, "content": clip(content)}
    if feedback:
        stream["feedback"] = {"id": feedback}
    return {"msgtype": "stream", "stream": stream}


def feedback_notice(
    app: str, event: Mapping[str, Any], env: parse.Envelope, *, now: float
) -> InboundMessage:
    """A 👍/👎 (`feedback_event`) as the notice the worker stores with the rated turn."""
    rated, rating, summary = parse.feedback(event)
    return InboundMessage(
        platform=PLATFORM,
        app=app,
        event_id=env.msgid,
        # A notice lives in its own "event:" conversation (bot/pipeline/events.py).
        conversation_id=f"event:{env.conversation_id}",
        sender_id=env.userid,
        text=summary,
        is_group=env.is_group,
        sent_at=datetime.fromtimestamp(now, UTC),
        kind=MessageKind.NOTICE,
        event=FEEDBACK_EVENT,
        event_key=rating,
        route={"rated": rated, "conversation": env.conversation_id},
    )


class WeComAiBotAdapter:
    """One 智能机器人: its callback URL, its stream state and its response_url answers."""

    platform = PLATFORM

    def __init__(
        self,
        *,
        token: str = "",
        aes_key: str = "",
        bot_id: str = "",
        mode: str = "webhook",
        welcome_text: str = "",
        response_timeout_s: float = 10.0,
        media_max_bytes: int = 0,
        media_timeout_s: float = 20.0,
        media_hosts: str = aibot_media.DEFAULT_HOSTS,
        app: str = DEFAULT_APP,
        redis: aioredis.Redis | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self._token = token
        self.mode = mode
        self._webhook: WeChatCallback | None = None
        if mode != LONGCONN:
            require("WeCom AI bot", app, token=token, aes_key=aes_key)
            # Decoded once: a bad key is a ConfigError at startup.
            self._webhook = WeChatCallback(
                PLATFORM, token=token, aes_key=aes_key, receive_id=envelope.RECEIVE_ID
            )
        # Pictures and files: encrypted with the callback key in webhook mode, with a key
        # of their own (named in the message) in long-connection mode.
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s
        self._media_hosts = media.host_list(media_hosts)
        self._bot_id = bot_id
        self._welcome = welcome_text
        self._response_timeout_s = response_timeout_s
        self._redis = redis
        self._random = random_bytes
        self._clock = clock
        # Long connection: when each open stream last had its text pushed (this process).
        self._pushed_at: dict[str, float] = {}

    @property
    def _callback(self) -> WeChatCallback:
        if self._webhook is None:
            # A bot in long-connection mode has no callback URL: nothing here is its own.
            raise PayloadError("this bot receives through its long connection", PLATFORM)
        return self._webhook

    @property
    def _state(self) -> StreamStore:
        if self._redis is None:
            raise ConfigError("the WeCom AI bot adapter needs Redis for its streams")
        return StreamStore(self._redis, self.app)

    # --- inbound (pure) --------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """URL check (GET) or one encrypted JSON callback (POST); no I/O."""
        if request.method == "GET":
            return self._callback.verify_url(request, now=now)
        if request.method != "POST":
            raise self._callback.refuse_method(request.method)
        wechat_fields.require(PLATFORM, request.query, "msg_signature", "timestamp", "nonce")
        encrypted = envelope.encrypted_field(request.body)
        data = payload.json_object(
            self._callback.open(request.query, encrypted, now=now), "callback", PLATFORM
        )
        if self._bot_id and parse.string(data, "aibotid") != self._bot_id:
            raise PayloadError("callback for another bot", PLATFORM)
        if parse.string(data, "msgtype") == "stream":
            # A refresh needs only its stream id: it queues nothing, so who sent it is moot.
            return WebhookResult(status=200, refresh=parse.stream_id(data))
        env = parse.envelope(data)
        if env.msgtype == "event":
            return self._event(request, data, env, now)
        # Every other type is a member's message, one the bot cannot read answered politely.
        return self._message(request, data, env, now)

    def _message(
        self, request: WebhookRequest, data: Mapping[str, Any], env: parse.Envelope, now: float
    ) -> WebhookResult:
        asked = parse.question(data, env)
        sid = stream_id_of(self.app, env.msgid)
        attachments = aibot_media.attachments(data, env.msgtype)
        route = {
            "stream_id": sid,
            "response_url": parse.string(data, "response_url"),
            "deadline": f"{now + REFRESH_WINDOW_S - REFRESH_MARGIN_S:.0f}",
        }
        message = parse.inbound(self.app, env, asked, now=now, route=route, attachments=attachments)
        # The first answer opens the stream (empty: WeCom shows it is being written) and
        # names the feedback id a 👍/👎 on this answer will carry back: the msgid.
        body = self._seal(stream_message(sid, "", finish=False, feedback=env.msgid), request, now)
        return WebhookResult(status=200, body=body, content_type=JSON, message=message)

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> media.Fetched:
        """Save a picture or file the member sent (its encrypted URL, decrypted with the
        bot's EncodingAESKey, or in long-connection mode with the key the message named)."""
        del message  # the URL alone names the file, for a few minutes
        if self._webhook is None:
            key = aibot_media.message_key(attachment.key)  # PayloadError: refused, answered
        else:
            key = self._webhook.aes_key
        return await aibot_media.fetch(
            http,
            attachment.ref,
            dest,
            aes_key=key,
            hosts=self._media_hosts,
            max_bytes=self.media_max_bytes,
            timeout_s=self.media_timeout_s,
        )

    def _event(
        self, request: WebhookRequest, data: Mapping[str, Any], env: parse.Envelope, now: float
    ) -> WebhookResult:
        event = parse.obj(data, "event")
        kind = parse.string(event, "eventtype")
        if kind == ENTER_CHAT:
            # Only a passive text answers enter_chat (doc 101031); nothing is queued.
            if not self._welcome:
                return WebhookResult(status=200)
            welcome = {"msgtype": "text", "text": {"content": clip(self._welcome)}}
            return WebhookResult(
                status=200, body=self._seal(welcome, request, now), content_type=JSON
            )
        if kind == FEEDBACK_EVENT:
            notice = feedback_notice(self.app, event, env, now=now)
            return WebhookResult(status=200, message=notice)
        # template_card_event: the bot sends no cards, so no click can be its own.
        log.info("wecom_aibot %s %s ignored event %s", self.app, env.msgid, kind[:64])
        return WebhookResult(status=200)

    def _seal(self, message: dict[str, Any], request: WebhookRequest, now: float) -> bytes:
        return envelope.seal_reply(
            message,
            token=self._token,
            aes_key=self._callback.aes_key,
            timestamp=str(int(now)),
            nonce=request.query.get("nonce", "") or self._random(8).hex(),
            random_prefix=self._random(crypto.RANDOM_BYTES),
        )

    # --- refresh (web process, reads Redis) ------------------------------------------------

    async def refresh(self, request: WebhookRequest, result: WebhookResult) -> WebhookResult:
        """Answer a refresh callback with the text so far; `finish` once the answer is done."""
        sid = result.refresh
        snap = await self._state.snapshot(sid)
        message = stream_message(sid, snap.content, finish=snap.finished)
        body = self._seal(message, request, self._clock())
        return WebhookResult(status=200, body=body, content_type=JSON)

    # --- outbound (worker) -----------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """At most two parts of ≤ 20480 bytes: the stream holds one, response_url one more."""
        parts = split_text(text, MAX_CONTENT_BYTES) or [""]
        if len(parts) <= 2:
            return parts
        rest = "\n".join(parts[1:])
        log.warning("wecom_aibot %s answer over two parts: the end is cut", self.app)
        return [parts[0], clip(rest, MAX_CONTENT_BYTES - 3) + "…"]

    def delta_sink(self, reply: Reply) -> OnDelta:
        """Streamed model output goes into the stream's text, where refreshes read it."""
        sid = reply.route.get("stream_id", "")
        opened = False

        async def sink(piece: str) -> None:
            nonlocal opened
            if not sid:
                return
            if not opened:
                await self._open(sid, reply)
                # A new attempt at the answer (a task redelivered after a worker died
                # mid-stream) starts from nothing, not after the dead attempt's half text.
                await self._state.reset(sid)
                opened = True
            if piece == STREAM_RESTART:
                await self._state.reset(sid)
            else:
                await self._state.append(sid, piece)
            await self._push_so_far(reply, sid)

        return sink

    async def _push_so_far(self, reply: Reply, sid: str) -> None:
        """Long connection: send the text so far, at most every PUSH_EVERY_S per message."""
        req_id = reply.route.get("req_id", "")
        if not req_id or self._redis is None:
            return
        now = self._clock()
        first = sid not in self._pushed_at
        if now - self._pushed_at.get(sid, 0.0) < PUSH_EVERY_S or now >= _deadline(reply):
            return  # too soon; or the req_id's life is over (the holder closed the stream)
        self._pushed_at[sid] = now
        snap = await self._state.snapshot(sid)
        # The first frame names the feedback id a 👍/👎 will carry back, as in webhook mode.
        feedback = reply.in_reply_to if first else ""
        body = stream_message(sid, snap.text, finish=False, feedback=feedback)
        await outbox.push(self._redis, self.app, req_id, body)

    async def _push_final(self, reply: Reply, sid: str, text: str) -> None:
        """Long connection: the whole answer with `finish` (webhook mode: refreshes read it)."""
        first = self._pushed_at.pop(sid, None) is None
        req_id = reply.route.get("req_id", "")
        if req_id and self._redis is not None and self._clock() < _deadline(reply):
            feedback = reply.in_reply_to if first else ""
            body = stream_message(sid, text, finish=True, feedback=feedback)
            await outbox.push(self._redis, self.app, req_id, body)

    async def _open(self, sid: str, reply: Reply) -> None:
        deadline = _deadline(reply)
        await self._state.open(
            sid,
            event_id=reply.in_reply_to,
            deadline=deadline,
            response_url=reply.route.get("response_url", ""),
            req_id=reply.route.get("req_id", ""),
            chatid=reply.conversation_id,
            is_group=reply.is_group,
        )

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Finish the stream with this part, or POST it to response_url (see the module)."""
        sid = reply.route.get("stream_id", "")
        if not sid:
            raise PlatformRejectedError("reply without a stream id", PLATFORM)
        await self._open(sid, reply)
        snap = await self._state.snapshot(sid)
        if not snap.finished and not snap.window_closed and self._clock() < snap.deadline:
            await self._state.finalize(sid, reply.text, DONE)
            await self._push_final(reply, sid, reply.text)
            log.info("wecom_aibot %s stream of %s finished", self.app, reply.in_reply_to)
            return f"stream:{sid}"
        if snap.finished and snap.final == reply.text:
            return f"stream:{sid}"  # a resend of the part the stream already finished with
        if reply.route.get("req_id"):
            # Long connection: past the req_id's life, or a second part.
            if snap.status == SWEPT:
                # The sweeper ended this dead-seeming turn with a note already: one ending.
                log.warning(
                    "wecom_aibot %s stream of %s was closed by the sweeper: answer not sent",
                    self.app,
                    reply.in_reply_to,
                )
                return f"stream:{sid}"
            await self._send_late(reply)
            if not snap.finished:
                await self._state.finalize(sid, reply.text, LATE)
            return SEND_MSG
        # Past the refresh window, or a second part: the message's one-use response_url.
        await self._respond(http, sid, snap.response_url, snap.responded, reply)
        if not snap.finished:
            await self._state.finalize(sid, reply.text, LATE)
        return "response_url"

    async def finish(self, reply: Reply) -> None:
        """Close the stream of a message that gets no answer of its own (joined into a burst,
        over the rate limit), with what it shows; after a delivered answer, nothing changes."""
        sid = reply.route.get("stream_id", "")
        if not sid:
            return
        snap = await self._state.snapshot(sid)
        if not snap.finished:
            await self._state.finalize(sid, snap.text, DONE)
            await self._push_final(reply, sid, snap.text)
            log.info("wecom_aibot %s stream of %s closed unanswered", self.app, reply.in_reply_to)

    async def _send_late(self, reply: Reply) -> None:
        """Long connection: an answer past its req_id goes to the chat as aibot_send_msg."""
        if self._redis is None:
            raise ConfigError("the WeCom AI bot adapter needs Redis for its streams")
        await outbox.push_send(
            self._redis,
            self.app,
            reply.conversation_id,
            is_group=reply.is_group,
            text=clip(reply.text),
        )
        log.info("wecom_aibot %s answered %s with aibot_send_msg", self.app, reply.in_reply_to)

    async def _respond(
        self, http: aiohttp.ClientSession, sid: str, url: str, used: bool, reply: Reply
    ) -> None:
        if not url:
            raise PlatformRejectedError("no response_url for a late answer", PLATFORM)
        if used:
            raise PlatformRejectedError("response_url already used (one POST each)", PLATFORM)
        await respond.post(http, url, reply.text, timeout_s=self._response_timeout_s)
        await self._state.mark_responded(sid)
        log.info("wecom_aibot %s answered %s through response_url", self.app, reply.in_reply_to)

    # --- ratings (worker) ------------------------------------------------------------------

    def rating(self, notice: InboundMessage) -> tuple[str, str, int] | None:
        """A feedback_event's (conversation, rated msgid, 1 / -1 / 0)."""
        if notice.event != FEEDBACK_EVENT or notice.event_key not in RATINGS:
            return None
        rated, conversation = notice.route.get("rated", ""), notice.route.get("conversation", "")
        if not rated or not conversation:
            return None
        return conversation, rated, RATINGS[notice.event_key]
