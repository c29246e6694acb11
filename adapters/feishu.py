"""Feishu / Lark (飞书) webhook mode: verify, decrypt and parse events, reply through the IM API.

Protocol notes: shared/protocols/README.md §5. Official pages: 事件订阅 (schema 2.0)
https://open.feishu.cn/document/server-docs/event-subscription-guide/overview, 回复消息
https://open.feishu.cn/document/server-docs/im-v1/message/reply. Parsing lives in
`adapters.feishu_events`, the API client in `adapters.feishu_client`, crypto in
`adapters.feishu_crypto`. The long-connection (WebSocket) mode is not implemented.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any

import aiohttp

from adapters import feishu_crypto
from adapters.base import WebhookRequest, WebhookResult
from adapters.feishu_client import FeishuClient, raise_for_feishu
from adapters.feishu_events import EventParser, json_object, post_to_text
from adapters.text import markdown_to_plain, split_text
from adapters.tokens import TokenCache
from bot.domain import DEFAULT_APP, Platform, Reply
from bot.errors import ConfigError, PayloadError, SignatureError

__all__ = ["FeishuAdapter", "post_to_text", "raise_for_feishu", "reply_uuid"]

log = logging.getLogger(__name__)

PLATFORM = Platform.FEISHU
MAX_SKEW_S = 300
# Text bodies may reach 150 KB (230025 above that, README §5.6); content is JSON inside
# JSON, so escaping can multiply the size: stay well below, and keep parts readable.
MAX_TEXT_BYTES = 30_000
# Feishu keeps a reply's uuid for 1 h and posts nothing for a repeat; at most 50 chars.
_UUID_CHARS = 50
_JSON = "application/json"
_SIGNATURE_HEADERS = ("x-lark-signature", "x-lark-request-timestamp", "x-lark-request-nonce")


def reply_uuid(in_reply_to: str, text: str) -> str:
    """The idempotency key of one reply part: the same part of the same answer, the same key."""
    digest = hashlib.sha256(f"{in_reply_to}\n{text}".encode()).hexdigest()
    return digest[:_UUID_CHARS]


class FeishuAdapter:
    """One Feishu / Lark app in webhook mode: its event URL and its message reply API."""

    platform = PLATFORM

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
    ) -> None:
        missing = [
            name
            for name, value in (
                ("app_id", app_id),
                ("app_secret", app_secret),
                ("verification_token", verification_token),
                ("api_base", api_base),
            )
            if not value
        ]
        if missing:
            raise ConfigError(f"Feishu app {app!r} is missing {', '.join(missing)}")
        self.app = app
        self._verification_token = verification_token
        # Empty: no signatures and plaintext bodies; the token alone authenticates (§5.2).
        self._encrypt_key = encrypt_key
        self._events = EventParser(app, bot_open_id)
        self._client = FeishuClient(
            app_id=app_id,
            app_secret=app_secret,
            api_base=api_base,
            tokens=tokens,
            app=app,
            http_timeout_s=http_timeout_s,
        )

    @property
    def token_key(self) -> str:
        """The Redis key of this app's tenant access token."""
        return self._client.token_key

    # --- inbound -------------------------------------------------------------------------

    def handle(self, request: WebhookRequest, *, now: float) -> WebhookResult:
        """Answer the URL challenge or accept one event (POST JSON, maybe encrypted); no I/O."""
        if request.method != "POST":
            raise PayloadError(f"method {request.method} not allowed", PLATFORM)
        outer = json_object(request.body, "body")
        signed = self._check_signature(request, now=now)
        if "encrypt" in outer:
            if not self._encrypt_key:
                raise PayloadError("encrypted event but no Encrypt Key configured", PLATFORM)
            encrypted = outer["encrypt"] if isinstance(outer["encrypt"], str) else ""
            payload = json_object(
                feishu_crypto.decrypt(encrypted, self._encrypt_key), "decrypted body"
            )
        else:
            payload = outer
        if payload.get("type") == "url_verification":
            # The SDK verifies no signature here, and Feishu may send none (README §5.2).
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
        # Answer every accepted event at once with {} (3 s deadline, README §5.5).
        return WebhookResult(status=200, body=b"{}", content_type=_JSON, message=message)

    def _check_signature(self, request: WebhookRequest, *, now: float) -> bool:
        """Verify the signature headers when an Encrypt Key is set; False if they are absent."""
        if not self._encrypt_key:
            return False
        sig, timestamp, nonce = (request.headers.get(name, "") for name in _SIGNATURE_HEADERS)
        if not (sig or timestamp or nonce):
            return False
        if not (sig and timestamp):  # the nonce may be empty; the others may not
            raise SignatureError("incomplete X-Lark-Signature headers", PLATFORM)
        # Over the raw body bytes, before any parsing (README §8 pitfall 8).
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
        """Flatten Markdown (text messages show it raw) and cut into parts of ≤ 30 000 bytes."""
        return split_text(markdown_to_plain(text), MAX_TEXT_BYTES)

    async def send(self, reply: Reply, http: aiohttp.ClientSession) -> str:
        """Reply to the inbound message (or post into the chat for events); return message_id."""
        body: dict[str, Any] = {
            "msg_type": "text",
            # A JSON string, not an object (README §8 pitfall 9).
            "content": json.dumps({"text": reply.text}, ensure_ascii=False),
            "uuid": reply_uuid(reply.in_reply_to, reply.text),
        }
        message_id = reply.meta.get("message_id", "")
        params: dict[str, str] | None = None
        if message_id:
            path = f"/open-apis/im/v1/messages/{message_id}/reply"
        else:
            # Events (bot added, chat entered) have no message to reply to.
            path, params = "/open-apis/im/v1/messages", {"receive_id_type": "chat_id"}
            body["receive_id"] = reply.meta.get("chat_id") or reply.conversation_id
        data = await self._client.post(http, path, body, params)
        sent_id = _object(data.get("data")).get("message_id")
        sent_id = sent_id if isinstance(sent_id, str) else ""
        log.info("feishu %s sent reply to %s message_id=%s", self.app, reply.in_reply_to, sent_id)
        return sent_id


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
