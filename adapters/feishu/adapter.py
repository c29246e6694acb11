"""Feishu / Lark (飞书) webhook mode: verify, decrypt and parse events, reply through the IM API.

Protocol notes: docs/protocols/feishu.md. Official pages: 事件订阅 (schema 2.0)
https://open.feishu.cn/document/server-docs/event-subscription-guide/overview, 回复消息
https://open.feishu.cn/document/server-docs/im-v1/message/reply. Parsing lives in
`adapters.feishu.events`, the API client in `adapters.feishu.client`, crypto in
`adapters.feishu.crypto`, reply bodies in `adapters.feishu.post`; the long connection
(WebSocket) in `adapters.feishu.ws.client`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import redis.asyncio as aioredis

from adapters.base import WebhookRequest, WebhookResult
from adapters.client import require
from adapters.feishu import crypto as feishu_crypto
from adapters.feishu import post as feishu_post
from adapters.feishu.client import FeishuClient, raise_for_feishu
from adapters.feishu.events import EventParser, json_object, post_to_text, quoted
from adapters.media import Fetched
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from bot import keys
from bot.domain import DEFAULT_APP, Attachment, Content, InboundMessage, Platform, Reply
from bot.errors import BotError, PayloadError, SignatureError

__all__ = ["FeishuAdapter", "post_to_text", "raise_for_feishu", "reply_uuid"]

log = logging.getLogger(__name__)

PLATFORM = Platform.FEISHU
MAX_SKEW_S = 300
# Text bodies may reach 150 KB (230025 above that, docs/protocols/feishu.md#sending-and-replying);
# content is JSON inside JSON, so escaping can multiply the size: stay well below, and keep parts
# readable.
MAX_TEXT_BYTES = 30_000
# post bodies are limited to 30 KB (230025) and carry JSON structure per line: stay far below.
MAX_POST_BYTES = 12_000
# The bot's open_id never changes for an app; a week in Redis, then asked again.
BOT_INFO_PATH = "/open-apis/bot/v3/info"
# After a failed bot/v3/info, ask again at most this often (group messages wait meanwhile).
BOT_INFO_RETRY_S = 30.0
# The webhook must answer within 3 s: the fetch gets at most this long per request.
BOT_INFO_BUDGET_S = 2.0
# Feishu keeps a reply's uuid for 1 h and posts nothing for a repeat; at most 50 chars.
_UUID_CHARS = 50
_JSON = "application/json"
_SIGNATURE_HEADERS = ("x-lark-signature", "x-lark-request-timestamp", "x-lark-request-nonce")


def reply_uuid(in_reply_to: str, text: str) -> str:
    """The idempotency key of one reply part: the same part of the same answer, the same key."""
    digest = hashlib.sha256(f"{in_reply_to}\n{text}".encode()).hexdigest()
    return digest[:_UUID_CHARS]


class FeishuAdapter(FeishuClient):
    """One Feishu / Lark app in webhook mode: its event URL and its message reply API."""

    def __init__(
        self,
        *,
        app_id: str,
        app_secret: str,
        verification_token: str,
        encrypt_key: str,
        api_base: str,
        tokens: TokenCache | None,
        app: str = DEFAULT_APP,
        bot_open_id: str = "",
        http_timeout_s: float = 10,
        bot_info_retry_s: float = BOT_INFO_RETRY_S,
        media_max_bytes: int = 0,
        media_timeout_s: float = 30.0,
    ) -> None:
        require(
            "Feishu",
            app,
            app_id=app_id,
            app_secret=app_secret,
            verification_token=verification_token,
            api_base=api_base,
        )
        super().__init__(
            app, api_base, tokens, http_timeout_s, client_id=app_id, client_secret=app_secret
        )
        self._verification_token = verification_token
        # Empty: no signatures and plaintext bodies; the token alone authenticates
        # (docs/protocols/feishu.md#request-signature).
        self._encrypt_key = encrypt_key
        self._events = EventParser(app, bot_open_id)
        self._retry_info_at = 0.0
        self._bot_info_retry_s = bot_info_retry_s
        # What users send is fetched through the message's resources (bot/pipeline/media.py).
        self.media_max_bytes = media_max_bytes
        self.media_timeout_s = media_timeout_s

    @property
    def bot_open_id_key(self) -> str:
        """The Redis key caching this app's bot open_id (from bot/v3/info)."""
        return keys.feishu_bot_open_id(self.app)

    @property
    def bot_open_id(self) -> str:
        """The bot's own open_id ("" while unknown)."""
        return self._events.bot_open_id

    # --- the bot's identity --------------------------------------------------------------

    async def fetch_bot_open_id(self, http: aiohttp.ClientSession) -> str:
        """Ask ``GET /open-apis/bot/v3/info`` for the bot's open_id (no cache)."""
        data = await self.get(http, BOT_INFO_PATH)
        bot = data.get("bot")
        open_id = bot.get("open_id") if isinstance(bot, dict) else None
        if not isinstance(open_id, str) or not open_id:
            raise PayloadError("bot/v3/info answered no bot.open_id", PLATFORM)
        return open_id

    async def prepare(self, http: aiohttp.ClientSession | None = None) -> None:
        """Learn the bot's open_id before `handle` needs it: Redis first, else bot/v3/info.

        Call it before `handle` (the web process does, per request; the long connection
        per frame). Cheap once known. A failure is logged and retried at most every 30 s;
        meanwhile group messages that mention anyone are deferred (503, Feishu retries).
        """
        if self._events.bot_open_id or time.monotonic() < self._retry_info_at:
            return
        try:
            async with asyncio.timeout(BOT_INFO_BUDGET_S):
                if http is None:
                    async with aiohttp.ClientSession() as own:
                        open_id = await self._cached_bot_open_id(own)
                else:
                    open_id = await self._cached_bot_open_id(http)
        except (BotError, aioredis.RedisError, aiohttp.ClientError, TimeoutError) as exc:
            self._retry_info_at = time.monotonic() + self._bot_info_retry_s
            log.warning(
                "feishu %s: cannot learn the bot open_id from bot/v3/info (%s); group messages "
                "that mention anyone are deferred until it answers (set FEISHU_BOT_OPEN_ID to "
                "skip the lookup)",
                self.app,
                exc,
            )
            return
        self._events.bot_open_id = open_id
        log.info("feishu %s: bot open_id is %s", self.app, open_id)

    async def _cached_bot_open_id(self, http: aiohttp.ClientSession) -> str:
        async def fetch() -> tuple[str, float]:
            return await self.fetch_bot_open_id(http), float(keys.FEISHU_BOT_OPEN_ID_TTL_S)

        if self._tokens is None:
            return (await fetch())[0]
        return await self._tokens.get(self.bot_open_id_key, fetch)

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer the URL challenge or accept one event (POST JSON, maybe encrypted); no I/O."""
        if request.method != "POST":
            raise PayloadError(f"method {request.method} not allowed", PLATFORM)
        outer = json_object(request.body, "body")
        signed = self._check_signature(request, now=now)
        payload = self._decrypted(outer, "decrypted body")
        if payload.get("type") == "url_verification":
            # The SDK verifies no signature here, and Feishu may send none
            # (docs/protocols/feishu.md#request-signature).
            self._check_token(payload.get("token"))
            challenge = payload.get("challenge")
            body = json.dumps({"challenge": challenge if isinstance(challenge, str) else ""})
            return WebhookResult(status=200, body=body.encode(), content_type=_JSON)
        if self._encrypt_key and not signed:
            raise SignatureError("missing X-Lark-Signature headers", PLATFORM)
        if payload.get("schema") == "2.0":
            header = payload.get("header")
            header = header if isinstance(header, dict) else {}
            self._check_token(header.get("token"))
            message = self._events.v2(header, _object(payload.get("event")))
        elif payload.get("type") == "event_callback":
            self._check_token(payload.get("token"))
            message = self._events.v1(payload, _object(payload.get("event")))
        else:
            raise PayloadError("neither a schema 2.0 nor a 1.0 event", PLATFORM)
        # Answer every accepted event at once with {} (3 s deadline,
        # docs/protocols/feishu.md#deadline-retries-and-dedupe).
        return WebhookResult(status=200, body=b"{}", content_type=_JSON, message=message)

    def parse_event(self, payload: bytes) -> InboundMessage | None:
        """One event from the long connection: schema 2.0 JSON (encrypted when a key is set).

        The connection itself is authenticated with the app secret: no signature, no token
        (the SDK checks neither there). No I/O; call `prepare` first, as for `handle`.
        """
        outer = self._decrypted(json_object(payload, "event payload"), "decrypted event")
        if outer.get("schema") != "2.0":
            raise PayloadError("long-connection event is not schema 2.0", PLATFORM)
        return self._events.v2(_object(outer.get("header")), _object(outer.get("event")))

    def _decrypted(self, outer: dict[str, Any], what: str) -> dict[str, Any]:
        """The event inside an ``{"encrypt": …}`` envelope; any other body as it is."""
        if "encrypt" not in outer:
            return outer
        if not self._encrypt_key:
            raise PayloadError("encrypted event but no Encrypt Key configured", PLATFORM)
        encrypted = outer["encrypt"] if isinstance(outer["encrypt"], str) else ""
        return json_object(feishu_crypto.decrypt(encrypted, self._encrypt_key), what)

    def _check_signature(self, request: WebhookRequest, *, now: float) -> bool:
        """Verify the signature headers when an Encrypt Key is set; False if they are absent."""
        if not self._encrypt_key:
            return False
        sig, timestamp, nonce = (request.headers.get(name, "") for name in _SIGNATURE_HEADERS)
        if not (sig or timestamp or nonce):
            return False
        if not (sig and timestamp):  # the nonce may be empty; the others may not
            raise SignatureError("incomplete X-Lark-Signature headers", PLATFORM)
        # Over the raw body bytes, before any parsing
        # (docs/protocols/pitfalls.md#pitfall-8-feishu-signature-mistakes).
        feishu_crypto.verify(
            sig,
            timestamp=timestamp,
            nonce=nonce,
            encrypt_key=self._encrypt_key,
            body=request.body,
            now=now,
            max_skew_s=MAX_SKEW_S,
        )
        return True

    def _check_token(self, token: Any) -> None:
        given = (token if isinstance(token, str) else "").encode("utf-8")
        if not hmac.compare_digest(given, self._verification_token.encode("utf-8")):
            raise SignatureError("verification token mismatch", PLATFORM)

    # --- outbound ------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """Cut into parts: Markdown-like answers keep their marks (sent as post), ≤ 12 000 bytes
        each; plain answers are flattened and cut at 30 000 bytes."""
        if feishu_post.looks_like_markdown(text):
            return split_text(text, MAX_POST_BYTES)
        return split_text(markdown_to_plain(text), MAX_TEXT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Reply to the inbound message (or post into the chat for events); return message_id.

        Markdown-like parts go as `post`, others as `text`; in groups the asker is @-mentioned.
        """
        msg_type, content = feishu_post.render(
            reply.text, at_open_id=reply.recipient_id if reply.is_group else ""
        )
        body: dict[str, Any] = {
            "msg_type": msg_type,
            # A JSON string, not an object
            # (docs/protocols/pitfalls.md#pitfall-9-feishu-content-encoding-and-size).
            "content": content,
            "uuid": reply_uuid(reply.in_reply_to, reply.text),
        }
        message_id = reply.route.get("message_id", "")
        params: dict[str, str] | None = None
        if message_id:
            path = f"/open-apis/im/v1/messages/{message_id}/reply"
        else:
            # Events (bot added, chat entered) have no message to reply to.
            path, params = "/open-apis/im/v1/messages", {"receive_id_type": "chat_id"}
            body["receive_id"] = reply.route.get("chat_id") or reply.conversation_id
        data = await self.post(http, path, body, params)
        sent_id = _object(data.get("data")).get("message_id")
        sent_id = sent_id if isinstance(sent_id, str) else ""
        log.info("feishu %s sent reply to %s message_id=%s", self.app, reply.in_reply_to, sent_id)
        return sent_id

    async def fetch_media(
        self,
        http: aiohttp.ClientSession,
        message: InboundMessage,
        attachment: Attachment,
        dest: Path,
    ) -> Fetched:
        """Save one picture or file of the message (its image_key / file_key)."""
        kind = "image" if attachment.kind is Content.IMAGE else "file"
        return await self.download_resource(
            http,
            message.route.get("message_id", ""),
            attachment.ref,
            dest,
            kind=kind,
            max_bytes=self.media_max_bytes,
            timeout_s=self.media_timeout_s,
        )

    async def quoted_text(self, http: aiohttp.ClientSession, message: InboundMessage) -> str:
        """The text of the message a reply quotes (获取指定消息的内容,
        https://open.feishu.cn/document/server-docs/im-v1/message/get); "" for no quote."""
        parent_id = message.route.get("parent_id", "")
        if not parent_id:
            return ""
        data = await self.get(http, f"/open-apis/im/v1/messages/{quote(parent_id, safe='')}")
        items = _object(data.get("data")).get("items")
        first = _object(items[0]) if isinstance(items, list) and items else {}
        content = _object(first.get("body")).get("content")
        return quoted(str(first.get("msg_type") or ""), content if isinstance(content, str) else "")


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
