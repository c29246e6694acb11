"""WeChat Official Account (微信公众号): verify and parse callbacks, send customer-service messages.

Protocol notes: docs/protocols/wechat-mp.md. Three modes share one URL: plaintext (3-field
``signature``), compatible and safe (``encrypt_type=aes``: ``msg_signature`` over ``Encrypt``,
WXBizMsgCrypt of docs/protocols/wechat-crypto.md with receive id = AppID). Official pages: 接入概述
https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html,
接收普通消息 https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html,
客服消息 https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Service_Center_messages.html,
稳定版 access_token https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/getStableAccessToken.html.

With ``passive_wait_s > 0`` (BOT_MP_PASSIVE_WAIT_S, 4.5 s by default) the web process holds
each message POST, WeChat's retries of the same MsgId included, for the worker's answer and
returns it as the passive reply (`render_passive`: plain XML, or the encrypted envelope in
compatible/safe mode); see bot/pipeline/passive.py. Otherwise, or when the answer is not ready by
WeChat's last try, the POST is answered ``success`` (no retry, nothing shown to the user) and
the answer goes out through ``message/custom/send``. What that API will refuse is tracked in
Redis (wechat_mp_limits.py): without permission (48001, or ``custom_api=False``) the answer
is kept and bot/pipeline/passive.py puts it in front of the passive reply to the follower's next
message; a closed 48 h window or a used quota (45015 / 45047) is counted and never retried.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from adapters import media as media_names
from adapters.base import WebhookRequest, WebhookResult
from adapters.client import require
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat import fields as wechat_fields
from adapters.wechat.callback import WeChatCallback
from adapters.wechat_mp import limits as wechat_mp_limits
from adapters.wechat_mp.client import WeChatMPClient
from adapters.xml import build_xml, parse_xml
from bot.domain import (
    DEFAULT_APP,
    Attachment,
    Content,
    InboundMessage,
    MessageKind,
    Platform,
    Reply,
)
from bot.errors import (
    ConfigError,
    PayloadError,
    SignatureError,
    StaleRequestError,
)

log = logging.getLogger(__name__)

PLATFORM = Platform.WECHAT_MP
# Text longer than about 2048 bytes is cut by WeChat
# (docs/protocols/wechat-mp.md#passive-text-reply, observed, not documented).
MAX_TEXT_BYTES = 2048
MAX_SKEW_S = 300
SUCCESS = b"success"
# The other message types a follower can send (接收普通消息,
# https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Receiving_standard_messages.html).
_OTHER_TYPES = {
    "video": Content.VIDEO,
    "shortvideo": Content.VIDEO,
    "location": Content.LOCATION,
    "link": Content.LINK,
    "file": Content.FILE,
}
IMAGE_TEXT = "[图片]"
VOICE_TEXT = "[语音]"
_MAX_TIMESTAMP_DIGITS = 11
QUESTION_CHARS = wechat_mp_limits.QUESTION_CHARS


def _require(fields: Mapping[str, str], *names: str) -> list[str]:
    return wechat_fields.require(PLATFORM, fields, *names)


def _sent_at(create_time: str) -> datetime:
    return wechat_fields.sent_at(PLATFORM, create_time)


def verify_plain_signature(
    expected: str, *, token: str, timestamp: str, nonce: str, now: float, max_skew_s: int
) -> None:
    """Check MP's 3-field ``signature`` and the timestamp window (URL check, plaintext mode)."""
    computed = wechat_crypto.plain_signature(token, timestamp, nonce)
    if not hmac.compare_digest(computed.encode(), expected.encode("utf-8", "replace")):
        raise SignatureError("signature mismatch", PLATFORM)
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > _MAX_TIMESTAMP_DIGITS:
        raise StaleRequestError("timestamp is not a number", PLATFORM)
    if abs(now - int(timestamp)) > max_skew_s:
        raise StaleRequestError("timestamp outside the accepted window", PLATFORM)


def passive_text(to_user: str, from_user: str, content: str, create_time: int) -> bytes:
    """The passive text reply (to_user: the openid; from_user: the gh_ id).

    docs/protocols/wechat-mp.md#passive-text-reply
    """
    return build_xml(
        {
            "ToUserName": to_user,
            "FromUserName": from_user,
            "CreateTime": create_time,
            "MsgType": "text",
            "Content": content,
        }
    )


def encrypt_reply(
    xml: bytes,
    *,
    token: str,
    aes_key: bytes,
    app_id: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> bytes:
    """Seal a passive reply in the safe-mode envelope: Encrypt + MsgSignature.

    docs/protocols/wechat-mp.md#encryption-modes
    """
    encrypted = wechat_crypto.encrypt(
        xml, aes_key=aes_key, receiver_id=app_id, random_prefix=random_prefix
    )
    if not (timestamp.isascii() and timestamp.isdigit()):
        raise ValueError("timestamp must be decimal seconds")
    return build_xml(
        {
            "Encrypt": encrypted,
            "MsgSignature": wechat_crypto.signature(token, timestamp, nonce, encrypted),
            "TimeStamp": int(timestamp),
            "Nonce": nonce,
        }
    )


class WeChatMPAdapter(WeChatMPClient, media_names.FetchesByMediaId):
    """One Official Account: its server URL and its customer-service message API."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        token: str,
        aes_key: str,
        api_base: str,
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        passive_wait_s: float = 0.0,
        redis: aioredis.Redis | None = None,
        custom_api: bool = True,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
    ) -> None:
        require(
            "WeChat MP", app, app_id=app_id, app_secret=app_secret, token=token, api_base=api_base
        )
        if not custom_api and passive_wait_s <= 0:
            # Without both, an answer would have no way at all to reach the follower.
            raise ConfigError(
                "WECHAT_MP_CUSTOM_API=false needs passive replies (BOT_MP_PASSIVE_WAIT_S > 0)"
            )
        super().__init__(
            app, api_base, tokens, http_timeout_s, client_id=app_id, client_secret=app_secret
        )
        self._token = token
        # No key: plaintext mode. Otherwise compatible/safe mode, WXBizMsgCrypt with receive
        # id = AppID; the key is decoded once, so a bad key fails at startup.
        self._sealed = (
            WeChatCallback(PLATFORM, token=token, aes_key=aes_key, receive_id=app_id)
            if aes_key
            else None
        )
        # Passive replies (bot/pipeline/passive.py): how long a POST waits for the answer, and how
        # many tries WeChat makes of one message (the first and two retries,
        # docs/protocols/wechat-mp.md#deadline-retries-and-dedupe).
        self.passive_wait_s = passive_wait_s
        self.passive_tries = 3
        # Pictures followers send are fetched through media/get (bot/pipeline/media.py).
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s
        # Refusals of message/custom/send learned and predicted (wechat_mp_limits.py);
        # custom_api=False: the account has no permission, answers wait for the next message.
        self._limits = wechat_mp_limits.CustomSendLimits(redis, app) if redis is not None else None
        self._custom_api = custom_api

    @property
    def encrypted(self) -> bool:
        """True in compatible/safe mode (an EncodingAESKey is configured)."""
        return self._sealed is not None

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer URL verification (GET) or accept one message POST; no I/O."""
        if request.method == "GET":
            return self._verify_url(request, now=now)
        if request.method == "POST":
            return self._accept(request, now=now)
        raise PayloadError(f"method {request.method} not allowed", PLATFORM)

    def _check_plain(self, query: Mapping[str, str], *, now: float) -> None:
        signature, timestamp, nonce = _require(query, "signature", "timestamp", "nonce")
        verify_plain_signature(
            signature,
            token=self._token,
            timestamp=timestamp,
            nonce=nonce,
            now=now,
            max_skew_s=MAX_SKEW_S,
        )

    def _verify_url(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        (echostr,) = _require(request.query, "echostr")
        self._check_plain(request.query, now=now)
        # MP's echostr is plaintext in every mode: echo it verbatim
        # (docs/protocols/wechat-mp.md#url-verification).
        return WebhookResult(status=200, body=echostr.encode("utf-8"), content_type="text/plain")

    def _accept(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        if request.query.get("encrypt_type", "raw") == "aes":
            fields = self._open(request, now=now)
        elif self._sealed is not None:
            # With a key configured WeChat always encrypts; a plaintext POST would be a
            # downgrade whose body no signature covers.
            raise PayloadError("plaintext POST while an EncodingAESKey is configured", PLATFORM)
        else:
            # Plaintext mode: the 3-field signature covers only timestamp and nonce.
            self._check_plain(request.query, now=now)
            fields = parse_xml(request.body)
        return WebhookResult(
            status=200, body=SUCCESS, content_type="text/plain", message=self._message(fields)
        )

    def _open(self, request: WebhookRequest, *, now: float) -> dict[str, str]:
        if self._sealed is None:
            raise PayloadError("encrypted POST but no EncodingAESKey is configured", PLATFORM)
        # Compat mode also carries plaintext fields: only Encrypt is read from the outer XML, and
        # `signature` is never trusted for the body (docs/protocols/wechat-mp.md#encryption-modes,
        # docs/protocols/pitfalls.md#pitfall-2-signature-vs-msg_signature).
        return self._sealed.open_post(request, now=now)

    def _message(self, fields: Mapping[str, str]) -> InboundMessage | None:
        msg_type = fields.get("MsgType", "")
        sender, create_time = _require(fields, "FromUserName", "CreateTime")
        sent_at = _sent_at(create_time)
        # create_time: when the 客服消息 window opened (wechat_mp_limits.py).
        route = {"to_user": fields.get("ToUserName", ""), "create_time": create_time}

        def message(event_id: str, text: str, **typed: Any) -> InboundMessage:
            event = typed.get("event", "")
            question = "" if typed.get("placeholder") or event else text.strip()
            return InboundMessage(
                platform=PLATFORM,
                app=self.app,
                event_id=event_id,
                # An Official Account chat is 1:1 with the follower (openid).
                conversation_id=sender,
                sender_id=sender,
                text=text,
                sent_at=sent_at,
                # Quoted by the notice of an answer delivered on the next message.
                route={
                    **route,
                    "question": question[:QUESTION_CHARS],
                    # What opened the 客服消息 window: a message or an event (limits.py).
                    "via": "event" if event else "message",
                },
                **typed,
            )

        if msg_type in ("text", "image", "voice"):
            (msg_id,) = _require(fields, "MsgId")
            if msg_type == "text":
                return message(msg_id, fields.get("Content", ""))
            media = (Attachment(Content.IMAGE, fields.get("MediaId", "")),)
            if msg_type == "image":
                # A placeholder like the others: the polite answer, not a model guessing at it.
                return message(
                    msg_id, IMAGE_TEXT, content=Content.IMAGE, placeholder=True, attachments=media
                )
            recognition = fields.get("Recognition", "").strip()
            if recognition:
                return message(msg_id, recognition, content=Content.VOICE)
            # No speech recognition on this account: the placeholder, flagged, with the
            # recording (AMR or Speex) to fetch. The bot's own speech recognition transcribes
            # it when configured (bot/pipeline/voice.py); else the polite answer says the bot
            # cannot listen yet.
            voice_id = fields.get("MediaId", "")
            voice = (Attachment(Content.VOICE, voice_id),) if voice_id else ()
            return message(
                msg_id, VOICE_TEXT, content=Content.VOICE, placeholder=True, attachments=voice
            )
        if msg_type and msg_type != "event":
            # Video, location, link, a type added later: a placeholder answered politely.
            (msg_id,) = _require(fields, "MsgId")
            kind = _OTHER_TYPES.get(msg_type, Content.OTHER)
            detail = fields.get("Label" if kind is Content.LOCATION else "Title", "")
            placeholder_text = media_names.placeholder(kind, detail)
            return message(msg_id, placeholder_text, content=kind, placeholder=True)
        event = fields.get("Event", "")
        # Events carry no MsgId: dedupe on FromUserName + CreateTime (+ Event),
        # docs/protocols/wechat-mp.md#deadline-retries-and-dedupe.
        event_id = f"{sender}:{create_time}:{event}"
        key = fields.get("EventKey", "")
        if msg_type == "event" and event == "subscribe":
            scene = key.removeprefix("qrscene_") if key.startswith("qrscene_") else ""
            return message(event_id, "", kind=MessageKind.EVENT, event=event, event_key=scene)
        if msg_type == "event" and event == "SCAN":
            return message(event_id, "", kind=MessageKind.EVENT, event=event, event_key=key)
        if msg_type == "event" and event == "CLICK" and key:
            # The menu key is a question for the agent unless a rule or the menu answers it.
            return message(event_id, key, event=event, event_key=key)
        # unsubscribe (nothing can reach the user any more), VIEW, LOCATION, other types.
        log.info(
            "wechat_mp %s from %s ignored MsgType=%s Event=%s", self.app, sender, msg_type, event
        )
        return None

    def render_passive(self, message: InboundMessage, text: str, request: WebhookRequest) -> bytes:
        """The passive reply carrying `text` (the only part of `split`) for `message`'s POST.

        Encrypted, with the request's timestamp and nonce, when the POST was
        (docs/protocols/wechat-mp.md#encryption-modes).
        """
        xml = passive_text(
            message.sender_id, message.route.get("to_user", ""), text, int(time.time())
        )
        if request.query.get("encrypt_type", "raw") != "aes" or self._sealed is None:
            return xml
        return encrypt_reply(
            xml,
            token=self._token,
            aes_key=self._sealed.aes_key,
            app_id=self._sealed.receive_id,
            timestamp=request.query.get("timestamp") or str(int(time.time())),
            nonce=request.query.get("nonce") or os.urandom(8).hex(),
            random_prefix=os.urandom(16),
        )

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Flatten Markdown (WeChat shows it raw) and cut into parts of ≤ 2048 bytes."""
        return split_text(markdown_to_plain(text), MAX_TEXT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Send one text part through message/custom/send; returns "" (WeChat gives no id).

        Within what the API allows (wechat_mp_limits.py): without customer-service
        permission (configured, or learned from 48001) the part is kept for the follower's
        next message and ``deferred`` is returned; 45015 / 45047, answered or predicted,
        raise PlatformRejectedError (recorded, never retried).
        """

        async def send_text() -> None:
            await self.send_text(reply, http)

        if self._limits is None:
            await send_text()
            return ""
        return await self._limits.send(reply, send_text, custom_api=self._custom_api)
