"""DingTalk (钉钉) enterprise-internal robot, HTTP mode: receive messages, reply actively.

Two kinds of POST reach the webhook (docs/protocols/dingtalk.md):
- robot messages (docs/protocols/dingtalk.md#robot-messages-over-http): headers
  ``timestamp`` (ms) + ``sign`` (HMAC, `dingtalk_sign`) and a JSON body with ``msgtype``;
  https://open.dingtalk.com/document/isvapp/receive-message
- encrypted event subscription (docs/protocols/dingtalk.md#event-subscription-over-http):
  query ``msg_signature``/``timeStamp``/``nonce`` and a body ``{"encrypt": …}`` sealed with the
  WXBizMsgCrypt scheme (docs/protocols/wechat-crypto.md), receive id = AppKey;
  https://open.dingtalk.com/document/orgapp/configure-event-subcription
Replies go out through the message's ``sessionWebhook`` while it lives, else through the robot
OpenAPI (docs/protocols/dingtalk.md#robot-openapi-and-access-token,
docs/protocols/pitfalls.md#pitfall-6-dingtalk-sessionwebhook-expiry). Stream mode
(docs/protocols/dingtalk.md#stream-mode) lives in `adapters.dingtalk.stream`, which feeds
its frames through `DingTalkAdapter.parse_robot_message`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from adapters import media as media_names
from adapters.base import WebhookRequest, WebhookResult
from adapters.client import require
from adapters.dingtalk import events as dingtalk_events
from adapters.dingtalk import media as dingtalk_media
from adapters.dingtalk import parse
from adapters.dingtalk import sign as dingtalk_sign
from adapters.dingtalk.client import DingTalkClient, SessionGoneError
from adapters.text import split_text
from adapters.tokens import TokenCache
from adapters.wechat import crypto as wechat_crypto
from adapters.wechat.callback import WeChatCallback
from bot.domain import DEFAULT_APP, Attachment, Content, InboundMessage, Platform, Reply
from bot.errors import (
    ConfigError,
    PayloadError,
    SignatureError,
)

log = logging.getLogger(__name__)

PLATFORM = Platform.DINGTALK
# Robot text/markdown content is capped at 20000 bytes; keep room for the "@staffId " mention.
MAX_TEXT_BYTES = 20000
_SPLIT_BYTES = MAX_TEXT_BYTES - 200
# Event callbacks: the robot's documented 1 h window; retries of failed pushes come later.
EVENT_MAX_SKEW_S = 3600
# Treat a sessionWebhook as gone this long before its stated expiry
# (docs/protocols/pitfalls.md#pitfall-6-dingtalk-sessionwebhook-expiry).
WEBHOOK_MARGIN_S = 60
_OK_BODY = b"{}"
_JSON = "application/json"


def encrypted_answer(
    plaintext: str,
    *,
    token: str,
    aes_key: bytes,
    receive_id: str,
    timestamp: str,
    nonce: str,
    random_prefix: bytes,
) -> dict[str, str]:
    """Seal the answer to an event callback: ``{"msg_signature","timeStamp","nonce","encrypt"}``.

    Pure: the glue passes a fresh ``os.urandom(16)`` prefix, timestamp and nonce
    (docs/protocols/dingtalk.md#event-subscription-over-http).
    """
    encrypted = wechat_crypto.encrypt(
        plaintext.encode("utf-8"),
        aes_key=aes_key,
        receiver_id=receive_id,
        random_prefix=random_prefix,
    )
    return {
        "msg_signature": wechat_crypto.signature(token, timestamp, nonce, encrypted),
        "timeStamp": timestamp,
        "nonce": nonce,
        "encrypt": encrypted,
    }


class DingTalkAdapter(DingTalkClient):
    """One DingTalk app's robot: its HTTP message URL, event subscription and send APIs."""

    def __init__(
        self,
        *,
        app_key: str,
        app_secret: str,
        robot_code: str = "",
        token: str = "",
        aes_key: str = "",
        api_base: str,
        oapi_base: str = "https://oapi.dingtalk.com",
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        http_timeout_s: float = 10,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
        group_welcome_text: str = "",
    ) -> None:
        require("DingTalk", app, app_key=app_key, app_secret=app_secret, api_base=api_base)
        if bool(token) != bool(aes_key):
            raise ConfigError(f"DingTalk app {app!r}: event subscription needs token and aes_key")
        super().__init__(
            app, api_base, tokens, http_timeout_s, client_id=app_key, client_secret=app_secret
        )
        self._robot_code = robot_code
        # Event subscription (none without a token): WXBizMsgCrypt with receive id = AppKey,
        # timestamps in ms within the robot's window
        # (docs/protocols/dingtalk.md#event-subscription-over-http).
        self._events = (
            WeChatCallback(
                PLATFORM,
                token=token,
                aes_key=aes_key,
                receive_id=app_key,
                max_skew_s=EVENT_MAX_SKEW_S,
                timestamp_ms=True,
            )
            if token
            else None
        )
        self._oapi_base = oapi_base.rstrip("/")
        # Pictures/files/videos users send are fetched by the worker; 0: not fetched.
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s
        self._group_welcome_text = group_welcome_text

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Accept a signed robot message or an encrypted event callback; no network I/O."""
        if request.method != "POST":
            raise PayloadError(f"method {request.method} not allowed", PLATFORM)
        # Robot POSTs carry the sign headers; event POSTs carry the signature in the query.
        if "sign" in request.headers or "timestamp" in request.headers:
            return self._robot_message(request, now=now)
        if any(name in request.query for name in ("msg_signature", "signature")):
            return self._event(request, now=now)
        raise SignatureError("missing sign/timestamp headers", PLATFORM)

    def _trusted_webhook(self, url: str) -> str:
        """The sessionWebhook if it points at DingTalk's own host, else "" (use the OpenAPI).

        The robot `sign` covers only the timestamp, not the body: a replayed header pair with
        a forged body must not make us post replies to a host of the sender's choosing.
        """
        if not url:
            return ""
        got, want = urlsplit(url), urlsplit(self._oapi_base)
        if (got.scheme, got.hostname) == (want.scheme, want.hostname):
            return url
        log.warning("dingtalk %s: ignoring a sessionWebhook on an unexpected host", self.app)
        return ""

    def _robot_message(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        signature = request.headers.get("sign", "")
        timestamp = request.headers.get("timestamp", "")
        if not signature or not timestamp:
            raise SignatureError("missing sign or timestamp header", PLATFORM)
        # Checked before the body is parsed: nothing unsigned is looked at.
        dingtalk_sign.verify(signature, timestamp, app_secret=self._client_secret, now=now)
        body = parse.json_object(request.body, "body")
        message = self.parse_robot_message(body, now=now)
        # Answer at once with an empty object: the reply goes out actively, later. The sign
        # covers only the timestamp, so the pair may carry this one message only.
        return WebhookResult(
            status=200,
            body=_OK_BODY,
            content_type=_JSON,
            message=message,
            single_use_signature=f"{timestamp}:{signature}",
        )

    def parse_robot_message(self, body: Mapping[str, Any], *, now: float) -> InboundMessage | None:
        """A robot message body (also a Stream CALLBACK's `data`) as a message.

        Layouts: docs/protocols/dingtalk.md#robot-messages-over-http and #stream-mode.

        None for what the robot does not answer: other msgtypes, empty text, and group
        messages that do not @-mention it. Raises PayloadError for a malformed body.
        """
        msg_id = parse.string(body, "msgId")
        if not msg_id:
            raise PayloadError("missing msgId", PLATFORM)
        msg_type = parse.string(body, "msgtype")
        text = parse.content_text(body)
        media = parse.media(body)
        typed: dict[str, Any] = {}
        if media is not None:
            typed["attachments"] = media.attachments
            if not (text or "").strip():
                # A picture/file/video, or a richText of images only: a placeholder answered
                # politely. Text with images: the text is answered, the images only fetched.
                text = media.text
                typed.update(content=media.content, placeholder=True)
        elif msg_type == "audio":
            typed["content"] = Content.VOICE
            # DingTalk's own transcript is the text; without one, the placeholder, with the
            # recording's downloadCode for the bot's own speech recognition.
            typed["placeholder"] = text == parse.VOICE_TEXT
            code = parse.voice_code(body)
            if typed["placeholder"] and code:
                typed["attachments"] = (Attachment(Content.VOICE, code),)
        if text is None and msg_type:
            # A type this robot cannot read (a card, one added later): answered politely.
            text = media_names.placeholder(Content.OTHER)
            typed.update(content=Content.OTHER, placeholder=True)
        if text is None:
            log.info("dingtalk %s %s ignored msgtype=%s", self.app, msg_id, msg_type)
            return None
        is_group = parse.string(body, "conversationType") == "2"
        # In groups the robot answers only when @-mentioned
        # (docs/protocols/dingtalk.md#mentions-and-message-types).
        if is_group and body.get("isInAtList") is not True:
            log.info("dingtalk %s %s ignored: group message without @robot", self.app, msg_id)
            return None
        # The @robot name is already cut out, leaving whitespace: strip
        # (docs/protocols/dingtalk.md#robot-messages-over-http).
        text = text.strip()
        if not text:
            log.info("dingtalk %s %s ignored: empty %s", self.app, msg_id, msg_type)
            return None
        conversation_id = parse.string(body, "conversationId")
        staff_id = parse.string(body, "senderStaffId")
        sender_id = staff_id or parse.string(body, "senderId")
        if not conversation_id or not sender_id:
            raise PayloadError("missing conversationId or sender", PLATFORM)
        route = {
            "sessionWebhook": self._trusted_webhook(parse.string(body, "sessionWebhook")),
            "sessionWebhookExpiredTime": parse.string(body, "sessionWebhookExpiredTime"),
            "conversationType": parse.string(body, "conversationType") or "1",
            "conversationId": conversation_id,
            "senderStaffId": staff_id,
            "robotCode": parse.string(body, "robotCode") or self.robot_code,
        }
        nick = parse.string(body, "senderNick")
        if nick:
            route["senderNick"] = nick[:64]  # the name an AI card's @-mention shows
        return InboundMessage(
            platform=PLATFORM,
            app=self.app,
            event_id=msg_id,
            conversation_id=conversation_id,
            sender_id=sender_id,
            text=text,
            is_group=is_group,
            sent_at=parse.sent_at(parse.string(body, "createAt"), now),
            route=route,
            **typed,
        )

    def _event(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        if self._events is None:
            raise PayloadError("event subscription is not configured", PLATFORM)
        query = request.query
        # Newer consoles send msg_signature/timeStamp, older ones signature/timestamp
        # (docs/protocols/dingtalk.md#event-subscription-over-http).
        signature = query.get("msg_signature") or query.get("signature") or ""
        timestamp = query.get("timeStamp") or query.get("timestamp") or ""
        nonce = query.get("nonce", "")
        if not (signature and timestamp and nonce):
            raise PayloadError("missing msg_signature, timeStamp or nonce", PLATFORM)
        body = parse.json_object(request.body, "body")
        encrypted = body.get("encrypt")
        if not isinstance(encrypted, str) or not encrypted:
            raise PayloadError("missing encrypt", PLATFORM)
        # Signature over the raw encrypt text, before decrypting.
        plain = self._events.open_signed(
            signature, timestamp=timestamp, nonce=nonce, encrypted=encrypted, now=now
        )
        event = parse.json_object(plain, "event")
        event_type = parse.string(event, "EventType")
        # Every event is queued to be recorded (bot/pipeline/events.py); none gets an answer.
        message = dingtalk_events.event_message(event, plain=plain, app=self.app, now=now)
        log.info("dingtalk %s event %s %s received", self.app, event_type, message.event_id)
        answer = encrypted_answer(
            "success",
            token=self._events.token,
            aes_key=self._events.aes_key,
            receive_id=self._events.receive_id,
            timestamp=str(int(now * 1000)),
            nonce=os.urandom(6).hex(),
            random_prefix=os.urandom(wechat_crypto.RANDOM_BYTES),
        )
        return WebhookResult(
            status=200, body=json.dumps(answer).encode(), content_type=_JSON, message=message
        )

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Keep Markdown (DingTalk renders it) and cut into parts under the 20000-byte cap."""
        return split_text(text, _SPLIT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Send one markdown part; return OpenAPI's processQueryKey, or "" via sessionWebhook."""
        webhook = reply.route.get("sessionWebhook", "")
        expires = reply.route.get("sessionWebhookExpiredTime", "")
        live = (
            bool(webhook)
            and expires.isdigit()
            and int(expires) / 1000 - WEBHOOK_MARGIN_S > time.time()
        )
        if live:
            try:
                await self.send_webhook(http, webhook, reply)
            except SessionGoneError:
                log.info(
                    "dingtalk %s reply %s: session gone, using the OpenAPI",
                    self.app,
                    reply.in_reply_to,
                )
            else:
                log.info("dingtalk %s sent reply to %s via session", self.app, reply.in_reply_to)
                return ""
        key = await self.send_openapi(http, reply)
        log.info(
            "dingtalk %s sent reply to %s processQueryKey=%s", self.app, reply.in_reply_to, key
        )
        return key

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> media_names.Fetched:
        """Save one attachment: its downloadCode → a temporary URL → the bytes (capped)."""
        url = await self.download_url(http, attachment.ref, message.route.get("robotCode", ""))
        return await dingtalk_media.download(
            http,
            url,
            dest,
            api_base=self.api_base,
            max_bytes=self.media_max_bytes,
            timeout_s=self.media_timeout_s,
        )

    def follow_up(self, notice: InboundMessage) -> InboundMessage | None:
        """The group's welcome turn after the robot joined it (DINGTALK_GROUP_WELCOME_TEXT)."""
        if not self._group_welcome_text:
            return None
        return dingtalk_events.group_welcome(notice)
